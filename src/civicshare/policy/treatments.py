"""Column treatments of an agreement, and the SQL expression that applies each one.

A treatment is written as a short spec (``clear``, ``redact``, ``show_last(4)``, ``pseudonym``,
``null``, ``year_only``, ``generalise(width=10)``, ``generalise(bins=0,18,65)``,
``generalise(prefix=3)``). The query engine applies it inside the policy view, so a recipient
never sees the untreated value: not in results, not in errors, not through ``*``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from dataclasses import dataclass

import pyarrow as pa

from civicshare.errors import Invalid

KINDS = ("clear", "redact", "show_last", "pseudonym", "null", "year_only", "generalise")
# Treatments whose result depends on the stored value alone (and the agreement's fixed key):
# equal values always give equal treated values. The query engine may then group by the
# stored value and treat the far fewer group keys afterwards (query/regroup.py). A treatment
# that is not a function of the value (noise, say) must stay out of this set.
VALUE_FUNCTIONS = frozenset(KINDS)
REDACTED = "[redacted]"
# Pseudonyms keep 128 bits of the HMAC: collisions are negligible, the value stays short.
PSEUDONYM_HEX = 32
_SPEC = re.compile(r"^\s*([a-z_]+)\s*(?:\((.*)\))?\s*$", re.DOTALL)


@dataclass(frozen=True)
class Treatment:
    kind: str
    last: int | None = None
    width: float | None = None
    bins: tuple[float, ...] | None = None
    prefix: int | None = None

    @property
    def spec(self) -> str:
        if self.kind == "show_last":
            return f"show_last({self.last})"
        if self.kind == "generalise":
            if self.width is not None:
                return f"generalise(width={_number(self.width)})"
            if self.bins is not None:
                return "generalise(bins=" + ",".join(_number(b) for b in self.bins) + ")"
            return f"generalise(prefix={self.prefix})"
        return self.kind

    @property
    def is_clear(self) -> bool:
        return self.kind == "clear"

    @property
    def is_value_function(self) -> bool:
        """Equal stored values always yield equal treated values."""
        return self.kind in VALUE_FUNCTIONS


CLEAR = Treatment("clear")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def parse_treatment(spec: str) -> Treatment:
    """Read a treatment spec; bad specs raise ``Invalid`` naming the accepted forms."""
    match = _SPEC.match(spec or "")
    if not match or match.group(1) not in KINDS:
        raise Invalid(
            f"unknown treatment '{spec}'; use one of {', '.join(KINDS)}", code="invalid_treatment"
        )
    kind, argument = match.group(1), (match.group(2) or "").strip()
    if kind == "show_last":
        if not argument.isdigit() or not 1 <= int(argument) <= 64:
            raise Invalid("show_last(n) needs 1 <= n <= 64", code="invalid_treatment")
        return Treatment(kind, last=int(argument))
    if kind == "generalise":
        return _parse_generalise(argument)
    if argument:
        raise Invalid(f"treatment '{kind}' takes no argument", code="invalid_treatment")
    return Treatment(kind)


def _parse_generalise(argument: str) -> Treatment:
    name, _, value = argument.partition("=")
    name, value = name.strip(), value.strip()
    try:
        if name == "width" and float(value) > 0:
            return Treatment("generalise", width=float(value))
        if name == "prefix" and value.isdigit() and 1 <= int(value) <= 64:
            return Treatment("generalise", prefix=int(value))
        if name == "bins":
            edges = tuple(float(edge) for edge in value.split(","))
            if len(edges) >= 1 and list(edges) == sorted(set(edges)):
                return Treatment("generalise", bins=edges)
    except ValueError:
        pass
    raise Invalid(
        "generalise needs width=N (N > 0), prefix=N or bins=a,b,c (increasing)",
        code="invalid_treatment",
    )


def check_applicable(treatment: Treatment, column: str, arrow_type: pa.DataType) -> None:
    """Refuse treatments that make no sense for the column's stored type."""
    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    numeric = numeric or pa.types.is_decimal(arrow_type)
    temporal = pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type)
    problem = None
    if treatment.kind == "year_only" and not temporal:
        problem = "year_only applies to dates and datetimes"
    elif treatment.kind == "generalise" and treatment.prefix is None and not numeric:
        problem = "generalise(width|bins) applies to numbers"
    if problem:
        raise Invalid(f"column '{column}': {problem}", code="treatment_not_applicable")


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def hmac_sql(value_sql: str, key: bytes) -> str:
    """HMAC-SHA256 of a VARCHAR expression's UTF-8 bytes, as lowercase hex, in DuckDB SQL."""
    block = (
        key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
    )
    inner = bytes(b ^ 0x36 for b in block).hex()
    outer = bytes(b ^ 0x5C for b in block).hex()
    return f"sha256(unhex('{outer}') || unhex(sha256(unhex('{inner}') || encode({value_sql}))))"


def hmac_hex(value: str, key: bytes) -> str:
    """The same HMAC computed in Python (objection hashes, reference checks)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def treatment_sql(treatment: Treatment, column: str, arrow_type: pa.DataType, key: bytes) -> str:
    """The DuckDB expression yielding the treated value of ``column`` (NULL stays NULL)."""
    col = quote_identifier(column)
    text = f"CAST({col} AS VARCHAR)"
    kind = treatment.kind
    if kind == "clear":
        return col
    if kind == "null":
        return f"CASE WHEN false THEN {col} END"
    if kind == "redact":
        return f"CASE WHEN {col} IS NOT NULL THEN {sql_literal(REDACTED)} END"
    if kind == "show_last":
        n = treatment.last
        return (
            f"CASE WHEN {col} IS NOT NULL THEN "
            f"repeat('*', greatest(length({text}) - {n}, 0)) || right({text}, {n}) END"
        )
    if kind == "pseudonym":
        return f"'p_' || left({hmac_sql(text, key)}, {PSEUDONYM_HEX})"
    if kind == "year_only":
        return f"year({col})"
    if treatment.prefix is not None:
        n = treatment.prefix
        return (
            f"CASE WHEN {col} IS NOT NULL THEN "
            f"left({text}, {n}) || repeat('*', greatest(length({text}) - {n}, 0)) END"
        )
    if treatment.width is not None:
        width = _number(treatment.width)
        if pa.types.is_integer(arrow_type) and float(treatment.width).is_integer():
            return f"CAST(floor({col} / {width}) AS BIGINT) * {width}"
        return f"floor({col} / {width}) * {width}"
    return _bins_sql(col, treatment.bins or ())


def _bins_sql(col: str, edges: tuple[float, ...]) -> str:
    labels = [f"WHEN {col} < {_number(edges[0])} THEN '<{_number(edges[0])}'"]
    for low, high in itertools.pairwise(edges):
        labels.append(f"WHEN {col} < {_number(high)} THEN '[{_number(low)},{_number(high)})'")
    whens = " ".join(labels)
    return f"CASE WHEN {col} IS NULL THEN NULL {whens} ELSE '>={_number(edges[-1])}' END"


def pseudonym_of(value: str, key: bytes) -> str:
    """What ``pseudonym`` yields for a value's text (reference computation, linkage tools)."""
    return "p_" + hmac_hex(value, key)[:PSEUDONYM_HEX]
