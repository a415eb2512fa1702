"""Standardisation: text as written in a file → the stored Arrow type of its schema field.

Trimmed text, missing-value markers as nulls, dates and timestamps in the declared format as ISO
Arrow types, numeric strings as numbers, enum values folded to the schema's own spelling
(``bronx`` → ``Bronx``) and geopoints as ``{lon, lat}``. Everything is an Arrow compute kernel
over whole columns.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from civicshare.catalog.tableschema import GEOPOINT, SchemaField
from civicshare.ingest import parsing

_NUMBER = r"([+-]?\d+(?:\.\d+)?)"
_GEOPOINT_PARTS = {
    "default": rf"^\s*(?P<lon>{_NUMBER[1:-1]})\s*,\s*(?P<lat>{_NUMBER[1:-1]})\s*$",
    "array": rf"^\[\s*(?P<lon>{_NUMBER[1:-1]})\s*,\s*(?P<lat>{_NUMBER[1:-1]})\s*\]$",
    "object": rf'^\{{\s*"lon"\s*:\s*(?P<lon>{_NUMBER[1:-1]})\s*,\s*"lat"\s*:\s*'
    rf"(?P<lat>{_NUMBER[1:-1]})\s*\}}$",
}


@dataclass(frozen=True)
class Standardised:
    """A column as stored, and which present values could not be read as its type."""

    values: pa.Array
    missing: pa.Array  # bool: the cell is empty or a missing-value marker
    unreadable: pa.Array  # bool: present, but not a value of the field's type/format


def clean_text(raw: pa.Array, missing_values: Sequence[str]) -> tuple[pa.Array, pa.Array]:
    """Trimmed text with missing-value markers turned into nulls, and the missing mask."""
    text = pc.utf8_trim_whitespace(raw)
    markers = pa.array(sorted({v.strip() for v in missing_values}), pa.string())
    marked = pc.is_in(text, markers)  # false for nulls
    if not pc.any(marked).as_py():
        return text, pc.is_null(text)
    return pc.if_else(marked, None, text), pc.or_(marked, pc.is_null(text))


def parse_geopoint(values: pa.Array, fmt: str | None) -> pa.Array:
    parts = pc.extract_regex(
        values, _GEOPOINT_PARTS.get(fmt or "default", _GEOPOINT_PARTS["default"])
    )
    lon = pc.cast(pc.struct_field(parts, "lon"), pa.float64())
    lat = pc.cast(pc.struct_field(parts, "lat"), pa.float64())
    valid = pc.and_(
        pc.and_(pc.less_equal(pc.abs(lon), 180.0), pc.less_equal(pc.abs(lat), 90.0)),
        pc.is_valid(parts),
    )
    struct = pa.StructArray.from_arrays(
        [lon, lat], fields=list(GEOPOINT), mask=pc.invert(pc.fill_null(valid, False))
    )
    return struct


def typed_parser(field: SchemaField) -> Callable[[pa.Array], pa.Array]:
    if field.type in ("number", "integer") and _written_number(field):
        parse = parsing.parser_for(field.type, field.format)
        return lambda values: parse(plain_number(values, field))
    if field.type == "geopoint":
        return lambda values: parse_geopoint(values, field.format)
    if field.type == "boolean" and (field.trueValues or field.falseValues):
        true_values = tuple(field.trueValues or parsing.TRUE_VALUES)
        false_values = tuple(field.falseValues or parsing.FALSE_VALUES)
        return lambda values: parsing.parse_boolean(values, true_values, false_values)
    return parsing.parser_for(field.type, field.format)


_SPECIAL_NUMBERS = pa.array(["NaN", "INF", "-INF", "+INF"], pa.string())


def _written_number(field: SchemaField) -> bool:
    """Whether the field declares how its numbers are written (Table Schema number options)."""
    return bool(
        field.groupChar
        or (field.decimalChar and field.decimalChar != ".")
        or field.bareNumber is False
    )


def plain_number(values: pa.Array, field: SchemaField) -> pa.Array:
    """Numbers as the number parsers read them: ``groupChar`` removed, ``decimalChar`` as a
    point, and with ``bareNumber: false`` the text around the number (``€ 95``, ``95 %``) too."""
    if field.bareNumber is False:
        # As Frictionless: anything but a sign, digit or decimal mark before, anything but a
        # digit after; NaN and the infinities are numbers as written.
        mark = re.escape(field.decimalChar or ".")
        bare = pc.replace_substring_regex(values, rf"^[^-+\d{mark}]+|\D+$", "")
        values = pc.if_else(pc.is_in(values, _SPECIAL_NUMBERS), values, bare)
    if field.groupChar:
        values = pc.replace_substring(values, field.groupChar, "")
    if field.decimalChar and field.decimalChar != ".":
        values = pc.replace_substring(values, field.decimalChar, ".")
    return values


def fold_enum(values: pa.Array, enum: Sequence[Any]) -> tuple[pa.Array, pa.Array]:
    """Text enum values matched case-insensitively, returned in the schema's spelling."""
    canonical = pa.array([str(v) for v in enum], pa.string())
    exact = pc.index_in(values, canonical)
    if exact.null_count == values.null_count:
        return values, pa.repeat(pa.scalar(False), len(values))  # all already as spelled
    # An exact match first: an enum may list spellings that differ only in case (S, s).
    folded = pc.index_in(pc.utf8_lower(values), pc.utf8_lower(canonical))
    position = pc.coalesce(exact, folded)
    outside = pc.and_(pc.is_valid(values), pc.is_null(position))
    return pc.take(canonical, position), outside


class FieldStandardiser:
    """Turns one field's text column into its stored type (the parser is built once)."""

    def __init__(self, field: SchemaField, missing_values: Sequence[str]) -> None:
        self.field = field
        self.missing_values = list(field.missingValues or missing_values)
        self.target = field.arrow_type()
        self._parse = typed_parser(field)

    @classmethod
    def of_schema_values(cls, field: SchemaField) -> FieldStandardiser:
        """For values the schema itself states (bounds, enum): JSON numbers, not written the
        way the field's data is (``groupChar``, ``decimalChar``, ``bareNumber``)."""
        plain = field.model_copy(
            update={"groupChar": None, "decimalChar": None, "bareNumber": None}
        )
        return cls(plain, [])

    def __call__(self, raw: pa.Array) -> Standardised:
        text, missing = clean_text(raw, self.missing_values)
        parsed = self._parse(text)
        if not parsed.type.equals(self.target):
            parsed = pc.cast(parsed, self.target)
        unreadable = pc.and_(pc.invert(missing), pc.is_null(parsed))
        return Standardised(parsed, missing, unreadable)
