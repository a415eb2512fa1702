"""Encrypted Parquet segments on a ``pyarrow.fs`` filesystem (local folder or S3).

Parquet is written straight into an encrypting sink and read through a decrypting source that
opens only the chunks a read touches: plaintext exists only in memory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import tempfile
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from civicshare import crypto
from civicshare.errors import ConfigurationError, Invalid, NotFound

SEGMENT_SUFFIX = ".cseg"
# Row groups of about this many rows keep Parquet efficient whatever the caller's batch size.
ROW_GROUP_ROWS = 128 * 1024
ROW_GROUP_BYTES = 64 * 1024 * 1024
# A new segment starts once this much (compressed) Parquet has been written to the current one.
SEGMENT_BYTES = 256 * 1024 * 1024
_CACHED_CHUNKS = 8


@dataclass(frozen=True)
class StoredFile:
    path: str
    size: int
    modified: dt.datetime | None


@dataclass(frozen=True)
class WrittenSegment:
    id: str
    path: str
    row_count: int
    size_bytes: int
    chunk_size: int


class SegmentStore:
    """Where segment files live, addressed by paths relative to the storage root."""

    def __init__(self, url: str) -> None:
        try:
            filesystem, root = pafs.FileSystem.from_uri(url)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ConfigurationError(f"cannot use storage URL {url!r}: {exc}") from exc
        self.url = url
        self.fs: pafs.FileSystem = filesystem
        self.root = root.rstrip("/")
        if isinstance(filesystem, pafs.LocalFileSystem):
            filesystem.create_dir(self.root, recursive=True)

    def full_path(self, path: str) -> str:
        return f"{self.root}/{path}"

    def open_output(self, path: str) -> pa.NativeFile:
        parent = self.full_path(path).rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        return self.fs.open_output_stream(self.full_path(path))

    def open_input(self, path: str) -> pa.NativeFile:
        try:
            return self.fs.open_input_file(self.full_path(path))
        except FileNotFoundError as exc:
            raise NotFound(f"segment file {path} is missing", code="segment_missing") from exc

    def list_files(self, prefix: str) -> list[StoredFile]:
        selector = pafs.FileSelector(self.full_path(prefix), recursive=True, allow_not_found=True)
        files = []
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.File:
                relative = info.path[len(self.root) + 1 :]
                modified = info.mtime
                if modified is not None and modified.tzinfo is None:
                    modified = modified.replace(tzinfo=dt.UTC)
                files.append(StoredFile(relative, info.size or 0, modified))
        return sorted(files, key=lambda f: f.path)

    def delete(self, path: str) -> None:
        self.fs.delete_file(self.full_path(path))


def segment_path(dataset_id: int, segment_id: str) -> str:
    return f"datasets/{dataset_id}/{segment_id}{SEGMENT_SUFFIX}"


# ---------------------------------------------------------------------------- writing


class _EncryptingSink:
    """A write-only file object that seals fixed-size chunks as Parquet writes through it."""

    def __init__(self, out: pa.NativeFile, cipher: crypto.ChunkCipher) -> None:
        self._out = out
        self._cipher = cipher
        self._buffer = bytearray()
        self._position = 0
        self._index = 0
        self.closed = False
        self.size = 0
        out.write(crypto.segment_header(cipher.segment_id, cipher.chunk_size))
        self.size = out.tell()

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._position += len(view)
        size = self._cipher.chunk_size
        # Keep at least one byte back: the last chunk is only known as last at ``finish``.
        while len(self._buffer) > size:
            self._emit(bytes(self._buffer[:size]), final=False)
            del self._buffer[:size]
        return len(view)

    def _emit(self, plaintext: bytes, *, final: bool) -> None:
        sealed = self._cipher.seal(self._index, plaintext, final=final)
        self._out.write(sealed)
        self._index += 1

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        """Parquet closes its sink; the segment is only finished by ``finish``."""

    def finish(self) -> int:
        self._emit(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._out.close()
        self.closed = True
        return self._position


def write_segments(
    store: SegmentStore,
    *,
    dataset_id: int,
    key: bytes,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    chunk_size: int = crypto.DEFAULT_CHUNK_BYTES,
    segment_bytes: int = SEGMENT_BYTES,
) -> list[WrittenSegment]:
    """Write the batches as zstd Parquet in encrypted segments; returns what was written."""
    written: list[WrittenSegment] = []
    current: _OpenSegment | None = None
    try:
        pending: list[pa.RecordBatch] = []
        pending_rows = pending_bytes = 0
        for batch in batches:
            batch = conform_batch(batch, schema)
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            pending_rows += batch.num_rows
            pending_bytes += batch.nbytes
            if pending_rows >= ROW_GROUP_ROWS or pending_bytes >= ROW_GROUP_BYTES:
                current = current or _OpenSegment(store, dataset_id, key, schema, chunk_size)
                current.write(pending)
                pending, pending_rows, pending_bytes = [], 0, 0
                if current.sink.tell() >= segment_bytes:
                    written.append(current.finish())
                    current = None
        if pending:
            current = current or _OpenSegment(store, dataset_id, key, schema, chunk_size)
            current.write(pending)
        if current is not None:
            written.append(current.finish())
            current = None
    except BaseException:
        # Tidy up what this write produced; anything left behind (a crash) is an orphan for gc.
        if current is not None:
            current.abort()
        discard_segments(store, written)
        if current is not None:
            _delete_quietly(store, current.path)
        raise
    return written


def discard_segments(store: SegmentStore, segments: Iterable[WrittenSegment]) -> None:
    """Delete segments no version will reference (what is left is an orphan for gc)."""
    for segment in segments:
        _delete_quietly(store, segment.path)


def _delete_quietly(store: SegmentStore, path: str) -> None:
    with contextlib.suppress(OSError):
        store.delete(path)


class _OpenSegment:
    def __init__(
        self, store: SegmentStore, dataset_id: int, key: bytes, schema: pa.Schema, chunk_size: int
    ) -> None:
        self.id = uuid.uuid4().hex
        self.path = segment_path(dataset_id, self.id)
        self.chunk_size = chunk_size
        self.rows = 0
        cipher = crypto.ChunkCipher(key, segment_id=self.id, chunk_size=chunk_size)
        self.sink = _EncryptingSink(store.open_output(self.path), cipher)
        self.writer = pq.ParquetWriter(
            pa.PythonFile(self.sink, mode="w"),
            schema,
            compression="zstd",
            # Dictionary pages pay off for repeated text; for numbers and dates they are mostly
            # built, overflow and get thrown away, which doubled the writer's CPU time.
            use_dictionary=[f.name for f in schema if _dictionary_worthy(f.type)],
        )

    def write(self, batches: list[pa.RecordBatch]) -> None:
        table = pa.Table.from_batches(batches)
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.rows += table.num_rows
        pa.default_memory_pool().release_unused()  # keeps RSS flat over long writes

    def abort(self) -> None:
        """Release the file after a failure (its content no longer matters)."""
        with contextlib.suppress(Exception):
            self.writer.close()
        with contextlib.suppress(Exception):
            self.sink.finish()

    def finish(self) -> WrittenSegment:
        self.writer.close()
        self.sink.finish()
        size = self.sink.size + _sealed_length(self.sink.tell(), self.chunk_size)
        return WrittenSegment(self.id, self.path, self.rows, size, self.chunk_size)


def _dictionary_worthy(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _sealed_length(plaintext: int, chunk_size: int) -> int:
    chunks = max(1, -(-plaintext // chunk_size))
    return plaintext + chunks * crypto.CHUNK_OVERHEAD


def conform_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """The batch with exactly the stored schema's columns and types (nulls for missing ones)."""
    if batch.schema.equals(schema, check_metadata=True):
        return batch
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise Invalid(
                    f"column '{field.name}' has type {column.type}, expected {field.type}",
                    code="schema_mismatch",
                ) from exc
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


# ---------------------------------------------------------------------------- reading


class _DecryptingSource:
    """A read-only, seekable file object over an encrypted segment; decrypts chunks on demand."""

    def __init__(self, raw: pa.NativeFile, key: bytes, *, segment_id: str) -> None:
        self._raw = raw
        total = int(raw.size())
        head = raw.read_at(min(total, 512), 0)
        stored_id, chunk_size, header = crypto.parse_segment_header(head)
        if stored_id != segment_id:
            # The AEAD would refuse it too; this gives the clearer message.
            raise Invalid(
                f"segment file for {segment_id} holds segment {stored_id}",
                code="segment_tampered",
                details={"segment": segment_id},
            )
        self._cipher = crypto.ChunkCipher(key, segment_id=segment_id, chunk_size=chunk_size)
        self._header = header
        self._chunk = chunk_size
        sealed = chunk_size + crypto.CHUNK_OVERHEAD
        body = total - header
        self._chunks = -(-body // sealed)
        last = body - (self._chunks - 1) * sealed - crypto.CHUNK_OVERHEAD
        if self._chunks == 0 or last < 0:
            raise Invalid(f"segment {segment_id} is truncated", code="segment_tampered")
        self._size = (self._chunks - 1) * chunk_size + last
        self._position = 0
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self.closed = False
        # The last chunk (Parquet's footer, read first anyway) authenticates the file's end: a
        # file cut to look like one empty chunk would otherwise reach Parquet undecrypted.
        self._plain_chunk(self._chunks - 1)

    def _plain_chunk(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        sealed_size = self._chunk + crypto.CHUNK_OVERHEAD
        offset = self._header + index * sealed_size
        sealed = self._raw.read_at(sealed_size, offset)
        plain = self._cipher.open(index, sealed, final=index == self._chunks - 1)
        self._cache[index] = plain
        if len(self._cache) > _CACHED_CHUNKS:
            self._cache.popitem(last=False)
        return plain

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._position + size)
        parts = []
        while self._position < end:
            index, within = divmod(self._position, self._chunk)
            chunk = self._plain_chunk(index)
            piece = chunk[within : within + (end - self._position)]
            if not piece:
                raise Invalid(
                    "segment chunk is shorter than its header says", code="segment_tampered"
                )
            parts.append(piece)
            self._position += len(piece)
        return b"".join(parts)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._cache.clear()
        self._raw.close()
        self.closed = True


def open_segment(store: SegmentStore, path: str, key: bytes, *, segment_id: str) -> pq.ParquetFile:
    source = _DecryptingSource(store.open_input(path), key, segment_id=segment_id)
    return pq.ParquetFile(pa.PythonFile(source, mode="r"))


def read_segments(
    store: SegmentStore,
    segments: list[tuple[str, str]],
    key: bytes,
    schema: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """Batches of the (id, path) segments, in order, conformed to ``schema``."""
    for segment_id, path in segments:
        parquet = open_segment(store, path, key, segment_id=segment_id)
        present = [name for name in schema.names if name in parquet.schema_arrow.names]
        try:
            for batch in parquet.iter_batches(columns=present, use_threads=False):
                yield conform_batch(batch, schema)
        finally:
            parquet.close()


# ---------------------------------------------------------------------------- scratch files

SPOOL_CHUNK_BYTES = 1024 * 1024


class SealedSpool(io.RawIOBase):
    """An unnamed temporary file whose bytes are sealed under a key held only in this object.

    For uploads: written once as the request's bytes arrive, then read back (seekable) by the
    ingest. What reaches the disk is AES-256-GCM chunks, like a segment's; the key is never
    stored, so the file is unreadable once the object is gone, even if the process is killed
    before the file is unlinked (it has no name to begin with).
    """

    def __init__(self, folder: str | None = None) -> None:
        super().__init__()
        # Open as long as the spool is (closed in ``close``), so no context manager.
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115
        self._key = crypto.new_data_key()
        self._id = f"spool-{uuid.uuid4().hex}"
        cipher = crypto.ChunkCipher(self._key, segment_id=self._id, chunk_size=SPOOL_CHUNK_BYTES)
        self._sink: _EncryptingSink | None = _EncryptingSink(self._handle("wb"), cipher)
        self._source: _DecryptingSource | None = None

    def _handle(self, mode: str) -> pa.NativeFile:
        # A handle of its own (the sink and the source close theirs), on the same unnamed file.
        return pa.PythonFile(os.fdopen(os.dup(self._file.fileno()), mode), mode=mode[0])

    def _reader(self) -> _DecryptingSource:
        """The first read, seek or tell after writing seals the last chunk."""
        if self._source is None:
            if self._sink is not None:
                self._sink.finish()
                self._sink = None
            self._source = _DecryptingSource(self._handle("rb"), self._key, segment_id=self._id)
        return self._source

    def writable(self) -> bool:
        return self._source is None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._sink is None:
            raise io.UnsupportedOperation("a spool is written once, before it is read")
        return self._sink.write(data)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._reader().read(len(view))
        view[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._reader().seek(offset, whence)

    def tell(self) -> int:
        if self._sink is not None:
            return self._sink.tell()
        return self._reader().tell()

    def close(self) -> None:
        if not self.closed:
            if self._source is not None:
                self._source.close()
            elif self._sink is not None:
                self._sink.finish()
            self._file.close()
            self._key = b""
        super().close()
