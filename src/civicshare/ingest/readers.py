"""Readers: any supported file as a stream of Arrow record batches of text columns.

Every reader yields batches whose columns are all ``string`` (null where a value is absent), named
by the file's own headers. Types are decided later, by validation against the Table Schema, so a
bad value is reported instead of silently guessed. Memory stays bounded by the batch size,
whatever the size of the file: CSV goes through Arrow's streaming CSV reader, JSON is decoded one
record at a time, Parquet by row group, Excel through openpyxl's read-only mode.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from civicshare.errors import Invalid, UnsupportedMediaType

Format = Literal["csv", "json", "ndjson", "parquet", "xlsx"]
FORMATS: tuple[str, ...] = ("csv", "json", "ndjson", "parquet", "xlsx")

BATCH_ROWS = 131_072
SAMPLE_BYTES = 1 << 20  # enough to sniff encoding, delimiter and header
# Arrow's CSV reader makes one batch per block. Everything in flight between reading and writing
# (read-ahead, parsing, validation, the queue to the writer) is a few blocks, so the block size
# sets the plateau of memory and how far it swings: 4 MB measured ~60 MB lower and steadier
# than 8 MB at the same CPU time; 2 MB lower still but +15 % CPU (per-batch overhead).
CSV_BLOCK_BYTES = 4 << 20
# Arrow needs block n + 1 (to complete block n's last line) before it yields batch n, so this is
# the least read-ahead that never waits for ``Backpressure.patience``; more only buffers more.
CSV_READ_AHEAD_BLOCKS = 2
DELIMITERS = (",", ";", "\t", "|")
QUOTES = ('"', "'")
_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".json": "json",
    ".geojson": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclass
class Dialect:
    """What sniffing found out about a text file."""

    encoding: str
    delimiter: str = ","
    quotechar: str = '"'
    header: list[str] = field(default_factory=list)
    # The whole file was sampled and holds no row after the header (Arrow refuses a header that
    # ends the file without a line break: such a file is an empty table, not a malformed one).
    header_only: bool = False


@dataclass
class ByteCounter:
    """Bytes consumed from the source so far (for progress in MB/s), and their SHA-256."""

    value: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class Backpressure:
    """Holds a background reader back until the consumer has caught up.

    Arrow's streaming CSV reader reads ahead on its I/O thread with no bound we can set, so on a
    large file it buffers hundreds of megabytes before the first batch is even used. The reader
    thread waits here while it is more than ``ahead`` bytes in front of what was consumed. The
    wait gives up after ``patience`` seconds without progress, so a row longer than ``ahead``
    costs time, never a deadlock.
    """

    def __init__(self, ahead: int, patience: float = 10.0) -> None:
        self.ahead = ahead
        self.patience = patience
        self.consumed = 0
        self.gave_up = 0  # waits that ran out of patience: ``ahead`` was too small to progress
        self._changed = threading.Condition()

    def wait_for_room(self, read_so_far: int) -> None:
        with self._changed:
            deadline = time.monotonic() + self.patience
            while read_so_far - self.consumed > self.ahead:
                if time.monotonic() >= deadline:
                    self.gave_up += 1
                    return
                self._changed.wait(0.5)

    def advance(self, size: int) -> None:
        with self._changed:
            self.consumed += size
            self._changed.notify_all()

    def release(self) -> None:
        """No more holding back (the consumer is done or gone)."""
        self.advance(1 << 62)


class _CountingReader(io.RawIOBase):
    """A read-only stream that counts what passes through it (optionally with backpressure)."""

    def __init__(
        self, inner: BinaryIO, counter: ByteCounter, backpressure: Backpressure | None = None
    ) -> None:
        self._inner = inner
        self._counter = counter
        self._backpressure = backpressure

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._backpressure is not None:
            self._backpressure.wait_for_room(self._counter.value)
        data = self._inner.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self._counter.value += size
        self._counter.digest.update(data)
        return size


class Source:
    """A file to read, by path or as an open seekable binary stream (e.g. an unnamed temp file).

    ``open`` gives a handle positioned at the start; a stream is rewound and never closed here.
    """

    def __init__(self, source: Path | BinaryIO, name: str | None = None) -> None:
        self._path = source if isinstance(source, Path) else None
        self._stream = None if isinstance(source, Path) else source
        self.name = name or (self._path.name if self._path else "upload")
        if self._path is not None:
            if not self._path.is_file():
                raise Invalid(f"{self.name} is not a readable file", code="file_unreadable")
            self.size = self._path.stat().st_size
        else:
            assert self._stream is not None
            self.size = self._stream.seek(0, io.SEEK_END)
            self._stream.seek(0)

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self._path is not None:
            with self._path.open("rb") as handle:
                yield handle
        else:
            assert self._stream is not None
            self._stream.seek(0)
            yield self._stream

    def target(self) -> Path | BinaryIO:
        """What libraries that open files themselves (openpyxl) should be given."""
        if self._path is not None:
            return self._path
        assert self._stream is not None
        self._stream.seek(0)
        return self._stream

    def head(self, size: int) -> tuple[bytes, bool]:
        """The first ``size`` bytes and whether they are the whole file."""
        with self.open() as handle:
            sample = handle.read(size)
        return sample, len(sample) >= self.size


def _text(handle: BinaryIO, encoding: str, counter: ByteCounter | None = None) -> io.TextIOWrapper:
    """Decoded text over ``handle``; closing it leaves ``handle`` open."""
    raw = io.BufferedReader(_CountingReader(handle, counter or ByteCounter()), buffer_size=1 << 20)
    return io.TextIOWrapper(raw, encoding=encoding, newline="")


@dataclass
class TableSource:
    """An opened file: its format, columns (as headers in the file) and a batch stream."""

    format: Format
    columns: list[str]
    batches: Iterator[pa.RecordBatch]
    bytes_read: ByteCounter
    size: int | None
    dialect: Dialect | None = None
    # Columns that were typed dates, timestamps or times in the file, given as ISO 8601 text:
    # a field's text ``format`` (``%m/%d/%Y``) does not describe them.
    iso_columns: frozenset[str] = frozenset()
    # Columns where some cells may be typed dates or times given as ISO 8601 text, among cells
    # of text (a spreadsheet types each cell): read in the field's ``format``, else as ISO.
    iso_cells: frozenset[str] = frozenset()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.batches

    def sha256(self) -> str | None:
        """The file's SHA-256 if the stream read it whole exactly once, else None."""
        streamed = self.format in ("csv", "json", "ndjson")  # others count progress only
        if streamed and self.size is not None and self.bytes_read.value == self.size:
            return str(self.bytes_read.digest.hexdigest())
        return None


def detect_format(source: Source) -> Format:
    """By extension first, then by content (Parquet and xlsx have magic numbers)."""
    name = source.name.lower()
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return _json_kind(source) if fmt == "json" else fmt
    head, _complete = source.head(4096)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:4] == b"PK\x03\x04":
        return "xlsx"
    text = head.lstrip(codecs.BOM_UTF8).lstrip()
    if text[:1] == b"[":
        return "json"
    if text[:1] == b"{":
        return "ndjson"
    if head:
        return "csv"
    raise Invalid(f"{name} is empty", code="empty_file")


def _json_kind(source: Source) -> Format:
    """A ``.json`` file of one object per line (as Spark and BigQuery export) is NDJSON."""
    head, _complete = source.head(4096)
    utf16 = head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    text = head.decode("utf-16" if utf16 else "utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    return "ndjson" if text[:1] == "{" else "json"


def open_table(
    path: Path | BinaryIO,
    *,
    filename: str | None = None,
    format: Format | None = None,
    encoding: str | None = None,
    batch_rows: int = BATCH_ROWS,
    sheet: str | None = None,
) -> TableSource:
    """Open a file for streaming as text columns; raises ``Invalid`` on unreadable files."""
    source = Source(path, filename)
    if source.size == 0:
        raise Invalid(f"{source.name} is empty", code="empty_file")
    fmt = format or detect_format(source)
    if fmt not in FORMATS:
        raise UnsupportedMediaType(f"unsupported format {fmt!r}", code="unsupported_format")
    size = source.size
    if fmt == "csv":
        return _open_csv(source, size, encoding, batch_rows)
    if fmt in ("json", "ndjson"):
        return _open_json(source, size, fmt, encoding, batch_rows)
    if fmt == "parquet":
        return _open_parquet(source, size, batch_rows)
    return _open_xlsx(source, size, batch_rows, sheet)


# ---------------------------------------------------------------------------- encodings


def detect_encoding(sample: bytes, *, complete: bool) -> str:
    """UTF-8 (with or without BOM) when it decodes as such, else charset-normalizer's best guess.

    ``complete`` says the sample is the whole file, so a multi-byte sequence cut at its end is an
    error rather than an artefact of sampling.
    """
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
        return "utf-8"
    except UnicodeDecodeError as exc:
        if _mostly_utf8(sample):
            # A guess would read every accented letter of the file wrongly, without an error.
            raise Invalid(
                f"the file is UTF-8 but not valid near byte {exc.start}", code="bad_encoding"
            ) from exc
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise Invalid("cannot determine the text encoding of the file", code="unknown_encoding")
    guessed = codecs.lookup(best.encoding).name
    # Western single-byte guesses are all read as Windows-1252, its superset in practice:
    # 0x80-0x9F are printable there (en dash, curly quotes), control codes in Latin-1.
    if guessed in {"latin-1", "iso8859-1", "iso8859-15", "cp1250", "mac-roman"}:
        return "cp1252"
    return guessed


_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)


def _mostly_utf8(sample: bytes) -> bool:
    """Whether the non-ASCII bytes are mostly well-formed UTF-8 sequences (a damaged UTF-8 file).

    In single-byte text a letter is rarely followed by the exact continuation bytes UTF-8 needs.
    """
    valid = len(_UTF8_MULTIBYTE.findall(sample))
    invalid = len(_UTF8_MULTIBYTE.sub(b"", sample).translate(None, bytes(range(128))))
    return valid > 0 and valid >= invalid


def _decode_sample(sample: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        text = decoder.decode(sample, final=False)
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"the file is not valid {encoding} near byte {exc.start}", code="bad_encoding"
        ) from exc
    return text.lstrip("\ufeff")


# ---------------------------------------------------------------------------- CSV


def sniff_dialect(text: str) -> tuple[str, str]:
    """The delimiter and quote character that split the sample's lines most consistently."""
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # a sample cut mid-line would skew the counts
    sample = "".join(lines[:200])
    best: tuple[float, str, str] = (-1.0, ",", '"')
    for quote in QUOTES:
        for delimiter in DELIMITERS:
            try:
                widths = [len(row) for row in _csv_rows(sample, delimiter, quote) if row]
            except csv.Error:
                continue  # e.g. a field too long for the csv module: not this dialect's strength
            if not widths:
                continue
            mode = max(set(widths), key=widths.count)
            if mode < 2:
                continue
            consistency = widths.count(mode) / len(widths)
            # Prefer consistency, then more columns, then the usual quote character.
            score = consistency * 1000 + min(mode, 999) / 1000 + (0.0001 if quote == '"' else 0)
            if score > best[0]:
                best = (score, delimiter, quote)
    return best[1], best[2]


def _csv_rows(text: str, delimiter: str, quote: str) -> Iterator[list[str]]:
    """The csv module's rows of ``text``; lines may end in CR alone (old Mac exports), as Arrow
    reads them too."""
    # Its default limit (128 KiB a field) would refuse a long cell of the sample (a geometry as
    # text): raised, never lowered, to the sample's size.
    if csv.field_size_limit() < SAMPLE_BYTES:
        csv.field_size_limit(SAMPLE_BYTES)
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote)


def unique_headers(raw: list[str]) -> list[str]:
    """Headers as in the file, with blanks named ``column_N`` and repeats suffixed ``_2``…

    A made-up name never takes one the file itself uses (``a, a, a_2`` → ``a, a_3, a_2``):
    two columns of one name would leave one of them unreachable.
    """
    written = {name for name in raw if name.strip()}
    used: set[str] = set()
    result = []
    for index, name in enumerate(raw, start=1):
        label = name if name.strip() else f"column_{index}"
        candidate, suffix = label, 1
        while candidate in used or (candidate != name and candidate in written):
            suffix += 1
            candidate = f"{label}_{suffix}"
        used.add(candidate)
        result.append(candidate)
    return result


def sniff_csv(source: Source, encoding: str | None = None) -> Dialect:
    sample, complete = source.head(SAMPLE_BYTES)
    chosen = encoding or detect_encoding(sample, complete=complete)
    text = _decode_sample(sample, chosen)
    delimiter, quote = sniff_dialect(text)
    rows = _csv_rows(text, delimiter, quote)
    try:
        first = next(rows, None)
    except csv.Error as exc:
        raise Invalid("the CSV header could not be parsed", code="malformed_csv") from exc
    if not first:
        raise Invalid("the CSV file has no header row", code="no_header")
    header_only = complete and not _any_row(rows)
    return Dialect(chosen, delimiter, quote, unique_headers(first), header_only)


def _any_row(rows: Iterator[list[str]]) -> bool:
    try:
        return any(row for row in rows)
    except csv.Error:
        return True  # something is there: Arrow's reader gives the error its code


def _open_csv(source: Source, size: int, encoding: str | None, batch_rows: int) -> TableSource:
    dialect = sniff_csv(source, encoding)
    counter = ByteCounter()
    batches = (
        iter(()) if dialect.header_only else _csv_batches(source, dialect, counter, batch_rows)
    )
    return TableSource("csv", dialect.header, batches, counter, size, dialect)


def _csv_batches(
    source: Source, dialect: Dialect, counter: ByteCounter, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    columns = dialect.header
    arrow_encoding = "utf8" if dialect.encoding in ("utf-8", "utf_8") else dialect.encoding
    # The header is skipped as a parsed row, not as a line: a quoted header name may hold a
    # line break (``skip_rows`` would count it and read the header's tail as a data row).
    read_options = pacsv.ReadOptions(
        column_names=columns,
        skip_rows_after_names=1,
        block_size=CSV_BLOCK_BYTES,
        encoding=arrow_encoding,
    )
    parse_options = pacsv.ParseOptions(
        delimiter=dialect.delimiter,
        quote_char=dialect.quotechar,
        newlines_in_values=True,
        invalid_row_handler=None,
    )
    convert_options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(columns, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
    )
    backpressure = Backpressure(ahead=CSV_READ_AHEAD_BLOCKS * CSV_BLOCK_BYTES)
    with source.open() as raw:
        counting = _CountingReader(raw, counter, backpressure)
        stream = io.BufferedReader(counting, buffer_size=1 << 20)
        reader = None
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            for batch in reader:
                # Arrow makes one batch per block. Counted as consumed when handed over, not
                # when the consumer is done with it: Arrow then reads block n + 2 and parses
                # block n + 1 while batch n is validated, instead of after.
                backpressure.advance(CSV_BLOCK_BYTES)
                yield from _split(batch, batch_rows)
        except pa.ArrowInvalid as exc:
            raise Invalid(_csv_problem(str(exc)), code="malformed_csv") from exc
        except UnicodeError as exc:
            # Arrow decodes other encodings than UTF-8 with Python's codecs, whose error escapes.
            raise Invalid(
                f"the file is not valid {dialect.encoding} past the sampled start; "
                "give its encoding explicitly",
                code="bad_encoding",
            ) from exc
        finally:
            # Let Arrow's reader thread finish before the file closes under it.
            backpressure.release()
            if reader is not None:
                reader.close()


def _csv_problem(message: str) -> str:
    # Arrow's messages can quote a whole row (personal values): keep only the diagnosis.
    if "Expected" in message and "columns" in message:
        found = re.search(r"Expected (\d+) columns, got (\d+)", message)
        if found:
            return f"a row has {found.group(2)} fields where the header has {found.group(1)}"
    if "UTF8" in message or "utf-8" in message.lower():
        return "the file is not valid UTF-8 past the sampled start; give its encoding explicitly"
    return "the CSV file could not be parsed"


def _split(batch: pa.RecordBatch, rows: int) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, rows):
        yield batch.slice(offset, rows)


# ---------------------------------------------------------------------------- JSON


EXACT_FLOAT_INTEGERS = 2**53  # beyond it a float's integer is not the number written


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        # JSON's (non-standard) Infinity, or a number too large for a float such as 1e400,
        # spelled as Table Schema's number reads it.
        return "INF" if value > 0 else "-INF"
    if isinstance(value, float) and value.is_integer() and abs(value) < EXACT_FLOAT_INTEGERS:
        # JSON has one number type: 3.0 is the number 3, as JSON Schema and Frictionless read
        # it (an integer field takes it), and Parquet's and Excel's typed floats are read alike.
        return str(int(value))
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, str | None]:
    """Nested objects become dotted names (``location.coordinates``); arrays stay JSON text."""
    flat: dict[str, str | None] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            nested = flatten_record(value, prefix=f"{name}.")
            if not flat.keys().isdisjoint(nested):
                _two_values(next(c for c in nested if c in flat))
            flat.update(nested)
        elif name in flat:
            _two_values(name)
        else:
            flat[name] = _json_text(value)
    return flat


def _two_values(column: str) -> NoReturn:
    # {"a.b": 1, "a": {"b": 2}}: one value would silently replace the other.
    raise Invalid(f"a JSON record has two values for the column '{column}'", code="malformed_json")


def iter_json_records(stream: io.TextIOBase, *, array: bool) -> Iterator[Any]:
    """Decode a JSON array (or NDJSON) one element at a time, holding one chunk in memory."""
    decoder = json.JSONDecoder()
    buffer = ""
    position = 0
    started = not array
    finished = False
    eof = False

    def refill() -> bool:
        nonlocal buffer, position
        chunk = stream.read(1 << 20)
        buffer = buffer[position:] + chunk
        position = 0
        return bool(chunk)

    while not finished:
        while position < len(buffer) and buffer[position] in " \t\r\n\ufeff,":
            if buffer[position] == "," and not started:
                raise Invalid("the JSON file is not an array of records", code="malformed_json")
            position += 1
        if position >= len(buffer):
            if eof or not refill():
                eof = True
                break
            continue
        char = buffer[position]
        if not started:
            if char != "[":
                raise Invalid("the JSON file is not an array of records", code="malformed_json")
            started = True
            position += 1
            continue
        if array and char == "]":
            finished = True
            break
        try:
            value, end = decoder.raw_decode(buffer, position)
        except json.JSONDecodeError as exc:
            if not eof and refill():
                continue
            raise Invalid(
                f"malformed JSON near character {exc.pos}", code="malformed_json"
            ) from exc
        except RecursionError as exc:
            raise Invalid("a JSON record is nested too deeply", code="malformed_json") from exc
        if end == len(buffer) and not eof and refill():
            continue  # a number cut at the chunk boundary would decode short; read on first
        position = end
        yield value
    if array and not finished:
        raise Invalid("the JSON array is not closed", code="malformed_json")
    if finished:
        _expect_only_whitespace(buffer[position + 1 :], stream)


def _expect_only_whitespace(rest: str, stream: io.TextIOBase) -> None:
    """Anything after the closing bracket (a second array, say) would be silently dropped."""
    while rest:
        if rest.strip(" \t\r\n"):
            raise Invalid("the JSON file goes on after its array", code="malformed_json")
        rest = stream.read(1 << 20)


def _records_to_batch(records: list[dict[str, str | None]], columns: list[str]) -> pa.RecordBatch:
    arrays = [pa.array([r.get(c) for r in records], pa.string()) for c in columns]
    return pa.RecordBatch.from_arrays(arrays, names=columns)


def _json_batches(
    source: Source, fmt: Format, encoding: str, counter: ByteCounter, columns: list[str], rows: int
) -> Iterator[pa.RecordBatch]:
    """Batches over the columns known from the scan; ``columns`` grows if new keys appear."""
    with source.open() as raw, _text(raw, encoding, counter) as text:
        pending: list[dict[str, str | None]] = []
        try:
            for record in iter_json_records(text, array=fmt == "json"):
                if not isinstance(record, dict):
                    raise Invalid("a JSON record is not an object", code="malformed_json")
                flat = flatten_record(record)
                for key in flat:
                    if key not in columns:
                        columns.append(key)
                pending.append(flat)
                if len(pending) >= rows:
                    yield _records_to_batch(pending, columns)
                    pending = []
        except UnicodeDecodeError as exc:
            raise Invalid(f"the file is not valid {encoding}", code="bad_encoding") from exc
        if pending:
            yield _records_to_batch(pending, columns)


def scan_json_keys(
    source: Source, fmt: Format, encoding: str, limit: int | None = None
) -> list[str]:
    """Every flattened key in first-seen order (Socrata leaves null fields out of a record)."""
    columns: list[str] = []
    seen: set[str] = set()
    with source.open() as raw, _text(raw, encoding) as text:
        try:
            for count, record in enumerate(iter_json_records(text, array=fmt == "json")):
                if limit is not None and count >= limit:
                    break
                if not isinstance(record, dict):
                    raise Invalid("a JSON record is not an object", code="malformed_json")
                for key in flatten_record(record):
                    if key not in seen:
                        seen.add(key)
                        columns.append(key)
        except UnicodeDecodeError as exc:
            raise Invalid(f"the file is not valid {encoding}", code="bad_encoding") from exc
    return columns


def _open_json(
    source: Source, size: int, fmt: Format, encoding: str | None, rows: int
) -> TableSource:
    sample, complete = source.head(SAMPLE_BYTES)
    chosen = encoding or detect_encoding(sample, complete=complete)
    if chosen == "utf-8" and sample.startswith(codecs.BOM_UTF8):
        chosen = "utf-8-sig"
    if complete and not sample.decode(chosen, errors="replace").strip(" \t\r\n\ufeff"):
        # Blank (or a BOM alone): empty like a file of no bytes, not an unclosed array.
        raise Invalid(f"{source.name} is empty", code="empty_file")
    # One pass over the keys first, so every batch has the same columns. It decodes the file
    # once more but holds only the key list in memory.
    columns = scan_json_keys(source, fmt, chosen)
    if not columns:
        raise Invalid("the JSON file holds no records", code="empty_file")
    counter = ByteCounter()
    batches = _json_batches(source, fmt, chosen, counter, list(columns), rows)
    return TableSource(fmt, columns, batches, counter, size, Dialect(chosen))


# ---------------------------------------------------------------------------- Parquet


def _open_parquet(source: Source, size: int, rows: int) -> TableSource:
    with source.open() as handle:
        try:
            schema = pq.ParquetFile(handle).schema_arrow
        except (pa.ArrowInvalid, OSError) as exc:
            raise Invalid(
                "the file is not a readable Parquet file", code="malformed_parquet"
            ) from exc
    counter = ByteCounter()
    # Parquet allows two columns of one name; one of them would be unreachable by name.
    columns = unique_headers(schema.names)

    def batches() -> Iterator[pa.RecordBatch]:
        with source.open() as handle:
            try:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=rows):
                    counter.value = min(size, counter.value + batch.nbytes)
                    yield _as_text(batch, columns)
            except (pa.ArrowInvalid, OSError) as exc:
                raise Invalid("the Parquet file is damaged", code="malformed_parquet") from exc
        counter.value = size

    temporal = (pa.types.is_date, pa.types.is_timestamp, pa.types.is_time)
    iso = frozenset(
        name for name, f in zip(columns, schema, strict=True) if any(k(f.type) for k in temporal)
    )
    return TableSource("parquet", columns, batches(), counter, size, iso_columns=iso)


def _as_text(batch: pa.RecordBatch, names: list[str]) -> pa.RecordBatch:
    """Typed Parquet columns as text, so validation treats every source alike."""
    import pyarrow.compute as pc

    arrays = []
    for name, column in zip(names, batch.columns, strict=True):
        if (
            isinstance(column.type, pa.BaseExtensionType)
            and column.type.extension_name == "arrow.uuid"
        ):
            uuids = column.storage.to_pylist()
            arrays.append(pa.array([_uuid_text(v) for v in uuids], pa.string()))
        elif pa.types.is_binary(column.type) or pa.types.is_fixed_size_binary(column.type):
            arrays.append(_bytes_text(name, column))
        elif pa.types.is_string(column.type):
            arrays.append(column)
        elif pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type):
            arrays.append(pc.cast(column, pa.string()))
        elif pa.types.is_timestamp(column.type):
            arrays.append(_timestamp_text(column))
        elif pa.types.is_floating(column.type):
            arrays.append(_float_text(column))
        elif pa.types.is_nested(column.type):
            arrays.append(pa.array([_json_text(v) for v in column.to_pylist()], pa.string()))
        else:
            arrays.append(pc.cast(column, pa.string()))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _uuid_text(value: bytes | None) -> str | None:
    import uuid

    return None if value is None else str(uuid.UUID(bytes=value))


def _bytes_text(name: str, column: pa.Array) -> pa.Array:
    """Bytes that are UTF-8 text, as text; other bytes are refused by column, not as damage."""
    import pyarrow.compute as pc

    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise Invalid(
            f"the Parquet column '{name}' holds bytes that are not text", code="malformed_parquet"
        ) from None


def _timestamp_text(column: pa.Array) -> pa.Array:
    """ISO 8601 in UTC; Arrow's ``%S`` carries the fraction the unit holds (``%f`` is not one)."""
    import pyarrow.compute as pc

    if column.type.tz is not None:
        # A zoned timestamp holds UTC: formatting it would give the zone's wall time instead.
        column = pc.cast(column, pa.timestamp(column.type.unit))
    return pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")


def _float_text(column: pa.Array) -> pa.Array:
    """Decimal text, with NaN and infinities spelled as Table Schema's ``number`` reads them."""
    import pyarrow.compute as pc

    if pa.types.is_float16(column.type):
        column = pc.cast(column, pa.float32())
    text = pc.cast(column, pa.string())
    infinite = pc.if_else(pc.greater(column, 0), "INF", "-INF")
    return pc.if_else(pc.is_nan(column), "NaN", pc.if_else(pc.is_inf(column), infinite, text))


# ---------------------------------------------------------------------------- Excel


def _cell_text(value: Any, number_format: str | None = None) -> str | None:
    """A cell's value as text; a date-formatted cell as an ISO date.

    Excel keeps a date as a day number that openpyxl reads as midnight of that day: shown as a
    date only, it is one, and would not read as a ``date`` field with its time attached.
    """
    import datetime as dt

    from openpyxl.styles.numbers import is_datetime

    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.time() == dt.time() and number_format and is_datetime(number_format) == "date":
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@contextmanager
def _damaged_xlsx() -> Iterator[None]:
    """A workbook that opened but whose sheet is cut or corrupt is ``malformed_xlsx`` too."""
    import zipfile
    import zlib

    # XML parse errors (ElementTree's and lxml's) are SyntaxErrors; a damaged member of the
    # zip fails its CRC or decompression only when openpyxl streams it.
    try:
        yield
    except (SyntaxError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise Invalid("the .xlsx workbook is damaged", code="malformed_xlsx") from exc


def _open_xlsx(source: Source, size: int, rows: int, sheet: str | None) -> TableSource:
    import zipfile

    from openpyxl import load_workbook

    try:
        workbook = load_workbook(source.target(), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise Invalid("the file is not a readable .xlsx workbook", code="malformed_xlsx") from exc
    worksheet = workbook[sheet] if sheet else workbook.worksheets[0]
    cells = worksheet.iter_rows()
    try:
        with _damaged_xlsx():
            header = next(cells, None)
    except Invalid:
        workbook.close()
        raise
    if not header:
        workbook.close()
        raise Invalid("the worksheet has no header row", code="no_header")
    columns = unique_headers([_cell_text(cell.value) or "" for cell in header])
    counter = ByteCounter()

    def batches() -> Iterator[pa.RecordBatch]:
        pending: list[list[str | None]] = []
        try:
            with _damaged_xlsx():
                for row in cells:
                    values = [_cell_text(c.value, c.number_format) for c in row[: len(columns)]]
                    if all(v is None for v in values):
                        continue  # openpyxl reports formatted but empty rows
                    values += [None] * (len(columns) - len(values))
                    pending.append(values)
                    if len(pending) >= rows:
                        yield _rows_to_batch(pending, columns)
                        pending = []
            if pending:
                yield _rows_to_batch(pending, columns)
            counter.value = size
        finally:
            workbook.close()

    return TableSource("xlsx", columns, batches(), counter, size, iso_cells=frozenset(columns))


def _rows_to_batch(rows: list[list[str | None]], columns: list[str]) -> pa.RecordBatch:
    arrays = [pa.array([row[i] for row in rows], pa.string()) for i in range(len(columns))]
    return pa.RecordBatch.from_arrays(arrays, names=columns)
