"""Audit log storage: records (the leaves), the tree's interior nodes, counters, checkpoints, key.

Every record is a canonical JSON object (RFC 8785) whose bytes are the leaf of the Merkle tree;
the other columns of ``audit_entry`` are copies kept only for filtering and are not trusted by
verifiers. Tree nodes are stored once, when their subtree completes (``audit_node``): the leaf
hashes and every complete subtree, so proofs never depend on the records' table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from pydantic import BaseModel
from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from civicshare.db import Base, UTCDateTime, utcnow

# SQLite makes an INTEGER PRIMARY KEY the rowid (the fastest lookup it has); elsewhere 64 bits.
RowId = BigInteger().with_variant(Integer(), "sqlite")
# A node's id packs its level above its index: 2**40 leaves is far beyond any hub's log.
NODE_LEVEL_SHIFT = 40


def node_id(level: int, index: int) -> int:
    return (level << NODE_LEVEL_SHIFT) | index


class AuditEntry(Base):
    __tablename__ = "audit_entry"

    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    record: Mapped[bytes] = mapped_column(LargeBinary)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor_email: Mapped[str | None] = mapped_column(String(320), index=True, nullable=True)
    agency: Mapped[str | None] = mapped_column(String(63), index=True, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # A query's resource lists every dataset it names, comma-separated: no length bound fits.
    resource: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditNode(Base):
    """A complete subtree: ``id = node_id(level, index)``; level 0 are the leaf hashes."""

    __tablename__ = "audit_node"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCounter(Base):
    """``size``: records appended (its row lock orders appenders); ``integrated``: in the tree."""

    __tablename__ = "audit_counter"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class AuditCheckpoint(Base):
    """Every checkpoint the hub signed; the largest is the latest, served to verifiers."""

    __tablename__ = "audit_checkpoint"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    key_id: Mapped[int] = mapped_column(Integer)
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditSigningKey(Base):
    """The Ed25519 checkpoint key; its private half is stored only wrapped by the master key."""

    __tablename__ = "audit_signing_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    wrapped_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---------------------------------------------------------------------------- schemas


class RecordRead(BaseModel):
    """One record as the filtered listing shows it (the canonical JSON, parsed)."""

    index: int
    record: dict[str, Any]

    @classmethod
    def of(cls, entry: AuditEntry) -> RecordRead:
        return cls(index=entry.index, record=json.loads(entry.record))


class RecordPage(BaseModel):
    records: list[RecordRead]
    next_before: int | None


class EntryRead(BaseModel):
    index: int
    leaf_input: str  # base64 of the record bytes


class EntriesPage(BaseModel):
    entries: list[EntryRead]
    # False when the caller may read only some records (theirs, their agency's): the gaps are
    # records hidden from them, not records missing from the log.
    complete: bool = True


class InclusionProof(BaseModel):
    leaf_index: int
    tree_size: int
    audit_path: list[str]


class ConsistencyProof(BaseModel):
    first: int
    second: int
    consistency: list[str]
