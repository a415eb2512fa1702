"""Propose a Table Schema from a sample of a file: types, formats, enums, keys and PII hints.

The proposal is a starting point for a steward to review, never a silent decision: every field
keeps the file's own header as its ``title`` and gets a SQL-safe ``name`` (datasets are queried
in SQL), and fields that look personal are marked so the steward sees them before publishing.
All checks run over whole sampled columns with Arrow compute.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from civicshare.errors import Invalid
from civicshare.ingest import parsing
from civicshare.ingest.readers import Format, open_table

if TYPE_CHECKING:
    from civicshare.catalog.tableschema import TableSchema

SAMPLE_ROWS = 100_000
ENUM_MAX_VALUES = 25
ENUM_MAX_LENGTH = 60
MISSING = ("",)
# Placeholders that publishers write for "no value"; recognised only where they are the sole
# thing stopping a column from being numeric or temporal.
MISSING_TOKENS = ("NA", "N/A", "n/a", "NULL", "null", "-", "--", "None", ".")

DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d.%m.%Y", "%d-%m-%Y")
DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    # Last: ISO 8601 with what no single pattern above covers (fractions with a zone, `,`).
    "default",
)
TIME_FORMATS = ("%H:%M:%S", "%H:%M", "%I:%M:%S %p", "%I:%M %p")
_RESERVED_WORDS = """
all and any as asc between by case cast check column constraint create cross default desc distinct
do else end except false fetch for foreign from full grant group having in inner intersect into is
join lateral left like limit natural not null offset on or order outer primary references right
select table then to true union unique user using when where window with
"""
SQL_RESERVED = frozenset(_RESERVED_WORDS.split())

# Names that suggest a kind of personal data (matched on the normalised name's words).
_PII_BY_NAME: tuple[tuple[str, str], ...] = (
    (r"(^|_)(e_?mail|email_address)($|_)", "email"),
    (r"(^|_)(phone|telephone|tel|mobile_number|cell_phone|fax)($|_)", "phone"),
    (r"(^|_)(dob|birth_?date|date_of_birth|birthday|born)($|_)", "dob"),
    (
        r"(^|_)(ssn|social_security|national_id|nhs_number|national_insurance|passport|"
        r"driver_?s?_licen[cs]e)($|_)",
        "national_id",
    ),
    (
        r"(^|_)(first_name|last_name|given_name|family_name|surname|full_name|middle_name|"
        r"(patient|person|resident|client|applicant|caller|victim|contact|subject)_name)($|_)",
        "name",
    ),
    (
        r"(^|_)(lat|latitude|lon|lng|long|longitude|x_coordinate|y_coordinate|geo_?point|"
        r"coordinates)($|_)",
        "geo_point",
    ),
    (r"address", "address"),
)
_SENSITIVE_BY_NAME = re.compile(
    r"(^|_)(diagnos\w*|icd\d*|disease|condition|hiv|medication|health_status|race|ethnicity|"
    r"religion|sexual\w*|gender_identity|criminal|offen[cs]e|arrest\w*|disability)($|_)"
)
_IDENTIFIER_NAMES = re.compile(
    r"^(id|unique_key|uid|rowid|row_id|record_id|objectid|srnumber|sr_number|key)$"
)
_CODE_NAMES = re.compile(r"(^|_)(zip\w*|postal\w*|postcode|zcta|modzcta|fips|bbl|code)($|_)")
_POINT_TEXT = r"^\(\s*[+-]?\d+(\.\d+)?\s*,\s*[+-]?\d+(\.\d+)?\s*\)$"
_PHONE_TEXT = r"^(\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}$"
PERSONAL_PII = frozenset({"name", "email", "phone", "dob", "national_id", "address", "geo_point"})


def sql_name(title: str) -> str:
    """A lowercase SQL identifier for a header: `Neighborhood  District` → neighborhood_district."""
    name = re.sub(r"[^0-9a-z]+", "_", title.strip().lower()).strip("_")
    if not name:
        name = "field"
    if name[0].isdigit():
        name = f"c_{name}"
    if name in SQL_RESERVED:
        name = f"{name}_"
    return name


def sql_names(titles: Iterable[str]) -> list[str]:
    """SQL-safe names for a header row, made unique with numeric suffixes."""
    names: list[str] = []
    taken: set[str] = set()
    for title in titles:
        base = sql_name(title)
        name, counter = base, 1
        while name in taken:
            counter += 1
            name = f"{base}_{counter}"
        taken.add(name)
        names.append(name)
    return names


def read_sample(
    path: Path | BinaryIO,
    *,
    filename: str | None = None,
    format: Format | None = None,
    rows: int = SAMPLE_ROWS,
) -> pa.Table:
    """The first ``rows`` rows as a table of text columns (trimmed; blanks as nulls)."""
    source = open_table(path, filename=filename, format=format)
    batches: list[pa.RecordBatch] = []
    taken = 0
    for batch in source:
        batches.append(batch.slice(0, rows - taken))
        taken += batches[-1].num_rows
        if taken >= rows:
            break
    columns = list(source.columns)
    for batch in batches:  # JSON files may reveal keys late
        columns += [name for name in batch.schema.names if name not in columns]
    table = pa.Table.from_batches([_conform(b, columns) for b in batches]) if batches else None
    arrays = []
    for name in columns:
        column = table.column(name) if table is not None else pa.chunked_array([], pa.string())
        trimmed = pc.utf8_trim_whitespace(column)
        arrays.append(pc.if_else(pc.equal(trimmed, ""), None, trimmed))
    return pa.table(arrays, names=columns)


def _conform(batch: pa.RecordBatch, columns: list[str]) -> pa.RecordBatch:
    arrays = [
        batch.column(name) if name in batch.schema.names else pa.nulls(batch.num_rows, pa.string())
        for name in columns
    ]
    return pa.RecordBatch.from_arrays(arrays, names=columns)


def _all_match(values: pa.ChunkedArray, regex: str) -> bool:
    return bool(pc.all(pc.match_substring_regex(values, regex)).as_py())


def _parses(values: pa.ChunkedArray, kind: str, fmt: str) -> bool:
    if not _all_match(values, parsing.temporal_format(kind, fmt).regex):
        return False  # the cheap shape test rules out most candidates
    parsed = parsing.parse_temporal(values.combine_chunks(), kind, fmt)
    return bool(parsed.null_count == 0)


def _infer_type(name: str, values: pa.ChunkedArray) -> tuple[str, str | None]:
    """The narrowest Table Schema type (and format) every sampled value satisfies."""
    if len(values) == 0:
        return "string", None
    lowered = pc.utf8_lower(values)
    if bool(pc.all(pc.is_in(lowered, pa.array(["true", "false"]))).as_py()):
        return "boolean", None
    leading_zero = bool(pc.any(pc.match_substring_regex(values, r"^[+-]?0\d")).as_py())
    code_like = bool(_CODE_NAMES.search(name)) or leading_zero
    if bool(pc.all(parsing.is_integer(values)).as_py()):
        if code_like:
            return "string", None  # ZIP codes and similar keep their leading zeros
        if re.search(r"(^|_)year($|_)", name) and bool(
            pc.all(pc.match_substring_regex(values, r"^(1[5-9]|2[0-9])\d\d$")).as_py()
        ):
            return "year", None
        return "integer", None
    if _all_match(values, r"^[+-]?\d+$"):
        return "string", None  # beyond 64 bits: identifiers, which a float would round
    if _all_match(values, parsing.NUMBER) and not code_like:
        return "number", None
    for kind, formats in (
        ("date", DATE_FORMATS),
        ("datetime", DATETIME_FORMATS),
        ("time", TIME_FORMATS),
    ):
        for fmt in formats:
            if _parses(values, kind, fmt):
                return kind, ("default" if (kind, fmt) == ("date", "%Y-%m-%d") else fmt)
    if _all_match(values, r"^\d{4}-(0[1-9]|1[0-2])$"):
        return "yearmonth", None
    if _all_match(values, parsing.GEOPOINT_ARRAY):
        return "geopoint", "array"
    if _all_match(values, parsing.EMAIL):
        return "string", "email"
    return "string", None


def _pii(
    name: str, kind: str, fmt: str | None, values: pa.ChunkedArray, is_enum: bool
) -> str | None:
    """A PII kind suggested by the field's name, or failing that by its values."""
    if fmt == "email":
        return "email"
    if kind == "geopoint":
        return "geo_point"
    if kind == "string" and len(values) and _all_match(values, _POINT_TEXT):
        return "geo_point"
    for pattern, pii in _PII_BY_NAME:
        if re.search(pattern, name):
            if pii == "address" and (is_enum or kind == "boolean"):
                continue  # `Address Type`, `AddressVerified`: categories, not addresses
            if pii == "geo_point" and kind not in ("number", "string", "geopoint", "integer"):
                continue
            return pii
    if kind == "string" and len(values) and _all_match(values, _PHONE_TEXT):
        return "phone"
    if kind == "date" and re.search(r"(^|_)(birth|dob)", name):
        return "dob"
    return None


def _enum(values: pa.ChunkedArray, rows: int) -> list[str] | None:
    """Low-cardinality text becomes an enum, when the sample repeats each of several values."""
    if len(values) < 20:
        return None
    distinct = pc.unique(values)
    if len(distinct) > ENUM_MAX_VALUES or len(distinct) * 4 > len(values):
        return None
    if len(distinct) < 2:
        return None  # a constant of this sample (`July` in a monthly file), not a closed list
    if pc.max(pc.utf8_length(distinct)).as_py() > ENUM_MAX_LENGTH:
        return None
    return sorted(str(v) for v in distinct.to_pylist())


def _primary_key(fields: list[dict[str, Any]], sample: pa.Table) -> list[str]:
    """A column named like an identifier whose sampled values are all present and distinct."""
    for field, title in ((f, f.get("title") or f["name"]) for f in fields):
        if not _IDENTIFIER_NAMES.match(field["name"]) or field["type"] not in ("integer", "string"):
            continue
        column = sample.column(title)
        if column.null_count == 0 and len(pc.unique(column)) == sample.num_rows > 0:
            return [field["name"]]
    return []


def infer_schema_dict(
    path: Path | BinaryIO,
    *,
    filename: str | None = None,
    format: Format | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> dict[str, Any]:
    """A Frictionless Table Schema (plus classification and pii) proposed for the file."""
    sample = read_sample(path, filename=filename, format=format, rows=sample_rows)
    titles = sample.column_names
    fields: list[dict[str, Any]] = []
    for title, name in zip(titles, sql_names(titles), strict=True):
        values = pc.drop_null(sample.column(title))
        kind, fmt = _infer_type(name, values)
        missing: list[str] = []
        if kind == "string" and fmt is None:
            placeholders = pa.array(MISSING_TOKENS, pa.string())
            present = pc.is_in(values, placeholders)
            if bool(pc.any(present).as_py()):
                kind, fmt = _infer_type(name, values.filter(pc.invert(present)))
                if kind != "string":
                    missing = [str(v) for v in pc.unique(values.filter(present)).to_pylist()]
                    values = values.filter(pc.invert(present))
        field: dict[str, Any] = {"name": name, "type": kind}
        if title != name:
            field["title"] = title
        if fmt is not None:
            field["format"] = fmt
        if missing:
            # Only in this column: "NA" that suppresses a number may be Namibia in another.
            field["missingValues"] = [*MISSING, *sorted(missing)]
        enum = _enum(values, sample.num_rows) if kind == "string" and fmt is None else None
        pii = _pii(name, kind, fmt, values, enum is not None)
        if enum is not None and pii is None:
            field["constraints"] = {"enum": enum}
        if pii is not None:
            field["pii"] = pii
        field["classification"] = _classification(name, pii)
        fields.append(field)
    schema: dict[str, Any] = {"fields": fields, "missingValues": list(MISSING)}
    key = _primary_key(fields, sample)
    if key:
        schema["primaryKey"] = key
    return schema


def _classification(name: str, pii: str | None) -> str:
    if _SENSITIVE_BY_NAME.search(name):
        return "sensitive"
    if pii in PERSONAL_PII:
        return "personal"
    return "internal"


def infer_schema(
    path: Path | BinaryIO,
    *,
    filename: str | None = None,
    format: Format | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> TableSchema:
    """The proposal as the catalog's ``TableSchema``."""
    from civicshare.catalog.tableschema import TableSchema

    proposal = infer_schema_dict(path, filename=filename, format=format, sample_rows=sample_rows)
    return TableSchema.model_validate(proposal)


@dataclass(frozen=True)
class FieldChoice:
    """What a steward decided for one proposed field before the dataset is created."""

    classification: str
    pii: str | None
    required: bool
    unique: bool


def adjust_schema(proposal: TableSchema, *, choices: Mapping[str, FieldChoice]) -> TableSchema:
    """The proposal with the steward's classification, PII kind, required and unique per field.

    Fields without a choice keep what inference proposed; an impossible choice (an unknown
    classification or PII kind) raises ``Invalid`` naming the field.
    """
    from civicshare.catalog.tableschema import TableSchema

    document = proposal.canonical()
    for field in document["fields"]:
        choice = choices.get(field["name"])
        if choice is None:
            continue
        field["classification"] = choice.classification
        if choice.pii:
            field["pii"] = choice.pii
        else:
            field.pop("pii", None)
        constraints = field.setdefault("constraints", {})
        constraints["required"] = choice.required
        constraints["unique"] = choice.unique
    try:
        return TableSchema.model_validate(document)
    except ValidationError as exc:
        problem = exc.errors()[0]
        location = problem.get("loc", ())
        index = location[1] if len(location) > 1 and location[0] == "fields" else None
        name = document["fields"][index]["name"] if isinstance(index, int) else None
        raise Invalid(
            problem.get("msg", "is not valid").removeprefix("Value error, "),
            code="invalid_field_choice",
            details={"field": name},
        ) from None
