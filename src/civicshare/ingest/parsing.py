"""Vectorised parsing of text columns into typed Arrow arrays, one Table Schema type at a time.

Each parser takes a ``string`` array (already trimmed, missing values already null) and returns
the typed array, null wherever a value does not parse. The caller compares nulls before and
after to find the failures. Temporal values are parsed by compiling the Table Schema's
``strptime``-style format into a regular expression and checking every component's range
ourselves: Arrow's own ``strptime`` silently turns 2017-02-30 into 2017-03-02.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from civicshare.errors import Invalid

INTEGER = r"^[+-]?\d+$"  # and within int64: ``is_integer``
NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^(?:NaN|INF|-INF|\+INF)$"
TRUE_VALUES = ("true", "True", "TRUE", "1")
FALSE_VALUES = ("false", "False", "FALSE", "0")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTH_NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

# What each strptime directive matches, as a named group.
_DIRECTIVES: dict[str, str] = {
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "m": r"(?P<m>\d{1,2})",
    "d": r"(?P<d>\d{1,2})",
    "H": r"(?P<H>\d{1,2})",
    "I": r"(?P<I>\d{1,2})",
    "M": r"(?P<M>\d{2})",
    "S": r"(?P<S>\d{2})",
    "f": r"(?P<f>\d{1,9})",
    "p": r"(?P<p>[AaPp][Mm])",
    "b": r"(?P<b>[A-Za-z]{3})",
    "B": r"(?P<B>[A-Za-z]{3,9})",
    "z": r"(?P<z>Z|[+-]\d{2}:?\d{2})",
    "%": "%",
}
# "default" formats per Table Schema type, lenient where ISO 8601 allows variants.
ISO_DATE = r"^(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})$"
ISO_DATETIME = (
    r"^(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})[T ](?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:[.,](?P<f>\d{1,9}))?)?(?P<z>Z|[+-]\d{2}:?\d{2})?$"
)
ISO_TIME = r"^(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?$"
_DAYS_IN_MONTH = pa.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], pa.int32())


@dataclass(frozen=True)
class TemporalFormat:
    regex: str
    groups: frozenset[str]


def compile_format(fmt: str) -> TemporalFormat:
    """A ``strptime`` pattern as an anchored regular expression with named components."""
    out = ["^"]
    groups: set[str] = set()
    index = 0
    while index < len(fmt):
        char = fmt[index]
        if char == "%" and index + 1 < len(fmt):
            directive = fmt[index + 1]
            if directive not in _DIRECTIVES:
                raise Invalid(
                    f"unsupported date format directive %{directive} in {fmt!r}",
                    code="unsupported_format",
                )
            if directive != "%":
                groups.add(directive)
            out.append(_DIRECTIVES[directive])
            index += 2
            continue
        out.append(r"\s+" if char == " " else re.escape(char))
        index += 1
    out.append("$")
    return TemporalFormat("".join(out), frozenset(groups))


def temporal_format(kind: str, fmt: str | None) -> TemporalFormat:
    if fmt is None or fmt in ("", "default", "any"):
        regex = {"date": ISO_DATE, "datetime": ISO_DATETIME, "time": ISO_TIME}[kind]
        return TemporalFormat(regex, frozenset(re.findall(r"\?P<(\w)>", regex)))
    return compile_format(fmt)


def _int_part(parts: pa.StructArray, name: str, default: int) -> pa.Array:
    field = pc.struct_field(parts, name)
    written = pc.if_else(pc.equal(field, ""), None, field)
    return pc.fill_null(pc.cast(written, pa.int64()), default)


def _month(parts: pa.StructArray, groups: frozenset[str]) -> pa.Array:
    if "m" in groups:
        return _int_part(parts, "m", 1)
    for name, table, width in (("b", MONTHS, 3), ("B", MONTH_NAMES, 9)):
        if name in groups:
            text = pc.utf8_lower(pc.struct_field(parts, name))
            if width == 3:
                text = pc.utf8_slice_codeunits(text, 0, 3)
            return pc.add(pc.cast(pc.index_in(text, pa.array(table)), pa.int64()), 1)
    return pa.repeat(pa.scalar(1, pa.int64()), len(parts))


def _year(parts: pa.StructArray, groups: frozenset[str]) -> pa.Array:
    if "Y" in groups:
        return _int_part(parts, "Y", 1970)
    if "y" in groups:
        short = _int_part(parts, "y", 70)
        # POSIX: 69-99 are 1969-1999, 00-68 are 2000-2068.
        return pc.add(short, pc.if_else(pc.less(short, 69), 2000, 1900))
    return pa.repeat(pa.scalar(1970, pa.int64()), len(parts))


def _hour(parts: pa.StructArray, groups: frozenset[str]) -> tuple[pa.Array, pa.Array]:
    """The 0-23 hour, and whether the written hour was in range for its clock."""
    if "I" in groups:
        hour12 = _int_part(parts, "I", 12)
        valid = pc.and_(pc.greater_equal(hour12, 1), pc.less_equal(hour12, 12))
        pm = pc.equal(pc.utf8_upper(pc.struct_field(parts, "p")), "PM") if "p" in groups else None
        hour = pc.if_else(pc.equal(hour12, 12), 0, hour12)
        if pm is not None:
            hour = pc.add(hour, pc.if_else(pm, 12, 0))
        return hour, valid
    hour = (
        _int_part(parts, "H", 0)
        if "H" in groups
        else pa.repeat(pa.scalar(0, pa.int64()), len(parts))
    )
    return hour, pc.less(hour, 24)


def _fraction_micros(parts: pa.StructArray) -> pa.Array:
    digits = pc.struct_field(parts, "f")
    padded = pc.utf8_slice_codeunits(pc.utf8_rpad(digits, 6, "0"), 0, 6)
    return pc.cast(padded, pa.int64(), safe=False)


def _offset_micros(parts: pa.StructArray) -> pa.Array:
    zone = pc.replace_substring(pc.struct_field(parts, "z"), ":", "")
    utc = pc.or_(pc.equal(zone, "Z"), pc.equal(zone, ""))
    digits = pc.if_else(utc, "+0000", zone)
    sign = pc.if_else(pc.equal(pc.utf8_slice_codeunits(digits, 0, 1), "-"), -1, 1)
    hours = pc.cast(pc.utf8_slice_codeunits(digits, 1, 3), pa.int64(), safe=False)
    minutes = pc.cast(pc.utf8_slice_codeunits(digits, 3, 5), pa.int64(), safe=False)
    return pc.multiply(sign, pc.multiply(pc.add(pc.multiply(hours, 60), minutes), 60_000_000))


def _days_in_month(year: pa.Array, month: pa.Array) -> pa.Array:
    safe_month = pc.if_else(pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12)), month, 0)
    days = pc.cast(pc.take(_DAYS_IN_MONTH, safe_month), pa.int64())
    leap = _leap(year)
    return pc.add(days, pc.if_else(pc.and_(leap, pc.equal(safe_month, 2)), 1, 0))


def _leap(year: pa.Array) -> pa.Array:
    def divisible(n: int) -> pa.Array:
        return pc.equal(pc.subtract(year, pc.multiply(pc.divide(year, n), n)), 0)

    return pc.and_(divisible(4), pc.or_(pc.invert(divisible(100)), divisible(400)))


# 0001-01-01 in days since 1970: there is no year 0 (and no Python date before this one).
_FIRST_DAY = -719_162
_FAST_DIRECTIVES = frozenset("YmdHMSIp")
_CANONICAL = {"date": "%Y-%m-%d", "datetime": "%Y-%m-%dT%H:%M:%S"}


def _fast_format(kind: str, fmt: str | None) -> str | None:
    """A pattern Arrow's own strptime/strftime can round-trip, for the fast path."""
    if kind not in _CANONICAL:
        return None
    pattern = _CANONICAL[kind] if fmt is None or fmt in ("", "default", "any") else fmt
    directives = set(re.findall(r"%(.)", pattern))
    return pattern if directives <= _FAST_DIRECTIVES else None


def parse_temporal(values: pa.Array, kind: str, fmt: str | None) -> pa.Array:
    """``date`` → date32, ``datetime`` → timestamp[us] (UTC), ``time`` → time64[us].

    Fast paths: a default-format ``date`` column is first cast by Arrow's strict ISO parser, which
    refuses impossible days; if any value fails, the column takes the general route. There,
    Arrow's ``strptime`` refuses most bad values but rolls a day past the end of its month over
    (02/30 → 03/02) and accepts a leap second (:60). Only results that could be such a rollover
    (1-3 March, or the 1st after a 30-day month), text with ``:60``, and values it refused are
    re-parsed exactly.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if kind == "date" and (fmt is None or fmt in ("", "default", "any")):
        try:
            dates = pc.cast(values, pa.date32())
            earliest = pc.min(dates.view(pa.int32())).as_py()
            if earliest is None or earliest >= _FIRST_DAY:
                return dates
        except pa.ArrowInvalid:
            pass  # some value is not a plain ISO date: parse them one by one below
    pattern = _fast_format(kind, fmt)
    if pattern is None:
        return _parse_exactly(values, kind, fmt)
    quick = pc.strptime(values, format=pattern, unit="s", error_is_null=True)
    suspicious = _maybe_rolled_over(quick)
    if "%Y" in pattern:
        # Arrow's %Y also takes fewer than four digits (12/31/99 as the year 99): only a year
        # below 1000 can have been written short, so only those are checked exactly.
        suspicious = pc.or_(suspicious, pc.less(pc.year(quick), 1000))
    if "%S" in pattern:
        suspicious = pc.or_(suspicious, pc.match_substring(values, ":60"))
    # Values the fast path refused get the exact (and, for ISO, more lenient) parser too.
    suspicious = pc.or_(
        pc.fill_null(suspicious, False), pc.and_(pc.is_null(quick), pc.is_valid(values))
    )
    quick = pc.cast(quick, pa.date32() if kind == "date" else pa.timestamp("us"))
    if not pc.any(suspicious).as_py():
        return quick
    exact = _parse_exactly(values.filter(suspicious), kind, fmt)
    return pc.replace_with_mask(quick, suspicious, exact)


def _maybe_rolled_over(parsed: pa.Array) -> pa.Array:
    """Dates ``strptime`` could have reached by rolling over from an impossible day.

    Day 29-31 of February lands on 1-3 March; day 31 of April, June, September or November on
    the 1st of the next month. (Days above 31 and months above 12 are refused outright.)
    """
    day, month = pc.day(parsed), pc.month(parsed)
    march = pc.and_(pc.equal(month, 3), pc.less_equal(day, 3))
    after_short = pc.and_(pc.equal(day, 1), pc.is_in(month, _AFTER_SHORT_MONTHS))
    return pc.or_(march, after_short)


_AFTER_SHORT_MONTHS = pa.array([5, 7, 10, 12], pa.int64())


def _parse_exactly(values: pa.Array, kind: str, fmt: str | None) -> pa.Array:
    spec = temporal_format(kind, fmt)
    parts = pc.extract_regex(values, spec.regex)  # null where the shape is wrong
    groups = spec.groups
    year, month = _year(parts, groups), _month(parts, groups)
    day = (
        _int_part(parts, "d", 1)
        if "d" in groups
        else pa.repeat(pa.scalar(1, pa.int64()), len(parts))
    )
    hour, hour_ok = _hour(parts, groups)
    minute = (
        _int_part(parts, "M", 0)
        if "M" in groups
        else pa.repeat(pa.scalar(0, pa.int64()), len(parts))
    )
    second = (
        _int_part(parts, "S", 0)
        if "S" in groups
        else pa.repeat(pa.scalar(0, pa.int64()), len(parts))
    )
    valid = pc.and_(
        pc.and_(
            pc.greater_equal(year, 1), pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12))
        ),
        pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, _days_in_month(year, month))),
    )
    valid = pc.and_(valid, pc.and_(hour_ok, pc.and_(pc.less(minute, 60), pc.less(second, 60))))
    valid = pc.and_(valid, pc.is_valid(parts))
    micros = pc.add(
        pc.multiply(
            pc.add(pc.multiply(pc.add(pc.multiply(hour, 60), minute), 60), second), 1_000_000
        ),
        _fraction_micros(parts) if "f" in groups else 0,
    )
    if kind == "time":
        return pc.if_else(valid, pc.cast(micros, pa.time64("us"), safe=False), None)
    iso = pc.binary_join_element_wise(
        pc.utf8_lpad(pc.cast(pc.if_else(valid, year, 1970), pa.string()), 4, "0"),
        pc.utf8_lpad(pc.cast(pc.if_else(valid, month, 1), pa.string()), 2, "0"),
        pc.utf8_lpad(pc.cast(pc.if_else(valid, day, 1), pa.string()), 2, "0"),
        "-",
    )
    dates = pc.if_else(valid, pc.cast(iso, pa.date32()), None)
    if kind == "date":
        return dates
    day_micros = pc.multiply(pc.cast(pc.cast(dates, pa.int32()), pa.int64()), 86_400_000_000)
    total = pc.add(day_micros, micros)
    if "z" in groups:
        total = pc.subtract(total, _offset_micros(parts))
    return pc.cast(total, pa.timestamp("us"))


def parse_integer(values: pa.Array) -> pa.Array:
    """Decimal integers within int64, optionally signed; null for anything else.

    Fast path: when Arrow's cast accepts the whole column, only what it accepts beyond the rule
    (hexadecimal ``0x…``) needs the regular expression, and a clean column has none.
    """
    try:
        cast = pc.cast(values, pa.int64())
        if not pc.any(pc.starts_with(values, "0x", ignore_case=True)).as_py():
            return cast
    except pa.ArrowInvalid:
        pass  # a value Arrow refuses: check every value against the rule
    return pc.cast(_without_plus(pc.if_else(is_integer(values), values, None)), pa.int64())


_INT64_DIGITS = 19  # 9223372036854775807


def is_integer(values: pa.Array) -> pa.Array:
    """Which values are decimal integers that int64 holds (-2⁶³ … 2⁶³ - 1), leading zeros and
    a sign allowed: 19-digit values up to the int64 maximum are integers too, not only 18."""
    written = pc.match_substring_regex(values, INTEGER)
    digits = pc.replace_substring_regex(values, r"^[+-]?0*", "")
    length = pc.utf8_length(digits)
    # Digits of equal length compare as text as they do as numbers.
    limit = pc.if_else(pc.starts_with(values, "-"), "9223372036854775808", "9223372036854775807")
    fits = pc.or_(
        pc.less(length, _INT64_DIGITS),
        pc.and_(pc.equal(length, _INT64_DIGITS), pc.less_equal(digits, limit)),
    )
    return pc.and_(written, fits)


def _without_plus(values: pa.Array) -> pa.Array:
    """Arrow's cast refuses the leading ``+`` that the integer and year rules allow."""
    return pc.replace_substring_regex(values, r"^\+", "")


def parse_number(values: pa.Array) -> pa.Array:
    ok = pc.match_substring_regex(values, NUMBER)
    cleaned = pc.replace_substring(pc.if_else(ok, values, None), "INF", "inf")
    return pc.cast(cleaned, pa.float64())


def parse_boolean(
    values: pa.Array,
    true_values: tuple[str, ...] = TRUE_VALUES,
    false_values: tuple[str, ...] = FALSE_VALUES,
) -> pa.Array:
    is_true = pc.is_in(values, pa.array(true_values, pa.string()))
    is_false = pc.is_in(values, pa.array(false_values, pa.string()))
    return pc.if_else(is_true, True, pc.if_else(is_false, False, None))


def parse_year(values: pa.Array) -> pa.Array:
    ok = pc.match_substring_regex(values, r"^[+-]?\d{1,4}$")
    return pc.cast(_without_plus(pc.if_else(ok, values, None)), pa.int32())


GEOPOINT_DEFAULT = r"^\s*[+-]?\d+(\.\d+)?\s*,\s*[+-]?\d+(\.\d+)?\s*$"
GEOPOINT_ARRAY = r"^\[\s*[+-]?\d+(\.\d+)?\s*,\s*[+-]?\d+(\.\d+)?\s*\]$"
GEOPOINT_OBJECT = r'^\{\s*"lon"\s*:\s*[+-]?\d+(\.\d+)?\s*,\s*"lat"\s*:\s*[+-]?\d+(\.\d+)?\s*\}$'
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
URI = r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$"
UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_STRING_FORMATS = {"email": EMAIL, "uri": URI, "uuid": UUID}


def _matching(regex: str) -> Callable[[pa.Array], pa.Array]:
    def parse(values: pa.Array) -> pa.Array:
        return pc.if_else(pc.match_substring_regex(values, regex), values, None)

    return parse


def parser_for(kind: str, fmt: str | None) -> Callable[[pa.Array], pa.Array]:
    """The vectorised parser of one Table Schema type (and format)."""
    if kind in ("date", "datetime", "time"):
        temporal_format(kind, fmt)  # fail early on an unsupported pattern

        def parse(values: pa.Array) -> pa.Array:
            return parse_temporal(values, kind, fmt)

        return parse
    if kind == "integer":
        return parse_integer
    if kind == "number":
        return parse_number
    if kind == "boolean":
        return parse_boolean
    if kind == "year":
        return parse_year
    if kind == "yearmonth":
        return _matching(r"^\d{4}-(0[1-9]|1[0-2])$")
    if kind == "geopoint":
        regex = {"array": GEOPOINT_ARRAY, "object": GEOPOINT_OBJECT}.get(
            fmt or "", GEOPOINT_DEFAULT
        )
        return _matching(regex)
    if kind == "string" and fmt in _STRING_FORMATS:
        return _matching(_STRING_FORMATS[fmt])
    if kind in ("array", "object"):
        return _json_of(list if kind == "array" else dict)
    return lambda values: values


def _json_of(wanted: type) -> Callable[[pa.Array], pa.Array]:
    """Table Schema's ``array`` and ``object``: text that is a JSON array, or a JSON object.

    Decoded value by value in Python (Arrow has no JSON kernel); these fields are rare.
    """

    def parse(values: pa.Array) -> pa.Array:
        valid = []
        for text in values.to_pylist():
            try:
                valid.append(text is not None and isinstance(json.loads(text), wanted))
            except (ValueError, RecursionError):
                valid.append(False)
        return pc.if_else(pa.array(valid, pa.bool_()), values, None)

    return parse
