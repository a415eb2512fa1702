"""Keys and cryptography: master key, key wrapping, API token hashing and passwords.

The master key never leaves the key provider: everything below it (agency key-encryption keys,
dataset data keys, the audit signing key) is stored wrapped. ``LocalKeyProvider`` keeps the
master key in a file; a KMS-backed provider implements the same ``KeyProvider`` protocol.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from civicshare.errors import ConfigurationError, Invalid

KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_PREFIX = "cs_"
MASTER_KEY_HEADER = "civicshare-master-key-v1"

# argon2id with the RFC 9106 "second recommended" parameters (64 MiB, t=3, p=4).
_PASSWORDS = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4)


class KeyProvider(Protocol):
    """Wraps and unwraps keys under a root key the hub never sees in the clear (KMS) or a file.

    Everything the hub asks of its master key is here, so a KMS-backed provider written to this
    protocol is enough (``derive`` maps to a KMS MAC, e.g. AWS KMS ``GenerateMac``).
    """

    key_id: str

    def wrap(self, key: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes: ...

    def derive(self, label: bytes) -> bytes:
        """A 32-byte secret for one named purpose (keyed hashes, signed URLs, CSRF tokens)."""
        ...


def aead_encrypt(key: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """AES-256-GCM with a random nonce; ``context`` is bound as associated data."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def aead_decrypt(key: bytes, sealed: bytes, *, context: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    if len(sealed) < NONCE_BYTES + 16:
        raise Invalid("ciphertext is truncated", code="decryption_failed")
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
    except InvalidTag as exc:
        raise Invalid(
            "ciphertext failed authentication (wrong key or altered data)",
            code="decryption_failed",
        ) from exc


class LocalKeyProvider:
    """Master key kept in a local file (embedded mode)."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ConfigurationError("the master key must be 32 bytes")
        self._key = master_key
        self.key_id = "local:" + hashlib.sha256(b"key-id" + master_key).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: Path) -> LocalKeyProvider:
        return cls(read_master_key(path))

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        return aead_encrypt(self._key, key, context=b"wrap:" + context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        return aead_decrypt(self._key, wrapped, context=b"wrap:" + context)

    def derive(self, label: bytes) -> bytes:
        """A 32-byte secret for one named purpose (e.g. keyed hashes), never the key itself."""
        return hmac.new(self._key, b"civicshare-derive:" + label, hashlib.sha256).digest()


def create_master_key(path: Path) -> bool:
    """Write a new random master key (mode 0600). Returns False if one already exists."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{MASTER_KEY_HEADER}\n{encoded}\n")
    return True


def read_master_key(path: Path) -> bytes:
    try:
        lines = path.read_text().split()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the master key file {path}: {exc.strerror}; "
            "create one with `civicshare init`"
        ) from exc
    if len(lines) != 2 or lines[0] != MASTER_KEY_HEADER:
        raise ConfigurationError(f"{path} is not a civicshare master key file")
    try:
        key = base64.b64decode(lines[1], validate=True)
    except ValueError as exc:
        raise ConfigurationError(f"{path} holds a malformed master key") from exc
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"{path} holds a master key of the wrong length")
    return key


def new_api_token() -> str:
    """A 256-bit random bearer token, URL-safe, recognisable by its prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_token(token: str) -> str:
    """The only form in which a token is stored. Tokens are 256-bit random, so no salt is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def verify_password(password: str, stored_hash: str) -> bool:
    try:
        return _PASSWORDS.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_password_hash() -> str:
    return _PASSWORDS.hash(secrets.token_urlsafe(16))


def burn_password_check(password: str) -> None:
    """Spend the time of a real check, so unknown emails cannot be told apart by timing."""
    verify_password(password, _dummy_password_hash())


# ---------------------------------------------------------------------------- segment encryption
#
# A segment file is a header followed by fixed-size chunks, each sealed with AES-256-GCM under the
# dataset's data key: ``nonce(12) ‖ ciphertext ‖ tag(16)``. Every chunk authenticates, as
# associated data, the segment id, its own index, the chunk size and whether it is the last chunk,
# so chunks cannot be reordered, swapped between segments, or dropped from the end unnoticed.
# Chunk ``i`` starts at ``header + i * (chunk_size + 28)``, which gives random access by chunk.

SEGMENT_MAGIC = b"CSSEG\x00v1"
CHUNK_OVERHEAD = NONCE_BYTES + 16
DEFAULT_CHUNK_BYTES = 1 << 20


def new_data_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def segment_header(segment_id: str, chunk_size: int) -> bytes:
    encoded = segment_id.encode("ascii")
    return SEGMENT_MAGIC + chunk_size.to_bytes(4, "big") + len(encoded).to_bytes(2, "big") + encoded


def parse_segment_header(head: bytes) -> tuple[str, int, int]:
    """(segment id, chunk size, header length) of a segment, from its first bytes."""
    fixed = len(SEGMENT_MAGIC) + 6
    if len(head) < fixed or not head.startswith(SEGMENT_MAGIC):
        raise Invalid("not a civicshare segment (bad header)", code="segment_tampered")
    chunk_size = int.from_bytes(head[len(SEGMENT_MAGIC) : len(SEGMENT_MAGIC) + 4], "big")
    id_length = int.from_bytes(head[len(SEGMENT_MAGIC) + 4 : fixed], "big")
    if chunk_size == 0 or len(head) < fixed + id_length:
        raise Invalid("not a civicshare segment (bad header)", code="segment_tampered")
    return head[fixed : fixed + id_length].decode("ascii", "replace"), chunk_size, fixed + id_length


class ChunkCipher:
    """Seals and opens the chunks of one segment under one data key."""

    def __init__(self, key: bytes, *, segment_id: str, chunk_size: int) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigurationError("data keys must be 32 bytes")
        self._aead = AESGCM(key)
        self._prefix = (
            b"civicshare-segment-v1\x00"
            + segment_id.encode("ascii")
            + b"\x00"
            + chunk_size.to_bytes(4, "big")
        )
        self.segment_id = segment_id
        self.chunk_size = chunk_size

    def _context(self, index: int, final: bool) -> bytes:
        return self._prefix + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")

    def seal(self, index: int, plaintext: bytes, *, final: bool) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, self._context(index, final))

    def open(self, index: int, sealed: bytes, *, final: bool) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._context(index, final)
            )
        except (InvalidTag, ValueError) as exc:
            raise Invalid(
                f"segment {self.segment_id} chunk {index} failed authentication "
                "(altered, reordered, truncated or swapped data, or the wrong key)",
                code="segment_tampered",
                details={"segment": self.segment_id, "chunk": index},
            ) from exc
