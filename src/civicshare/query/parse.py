"""Parsing a governed query: one SELECT, allowed functions only, every table reference found.

Nothing here touches data or the database: a query that fails these checks is refused before
anything is authorised or read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import TokenType, exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, TokenError

from civicshare.errors import BadRequest, Forbidden, PayloadTooLarge
from civicshare.query.functions import ALLOWED
from civicshare.query.memo import Memo

MAX_SQL_CHARS = 100_000
# Accepted queries up to this length are remembered, the latest MEMO_SIZE of them.
MEMO_MAX_CHARS = 4_000
MEMO_SIZE = 256
# Internal relation and column names of the rewritten query; users may not name them.
RESERVED_PREFIX = "__cs"
SYSTEM_SCHEMAS = frozenset(
    {"information_schema", "pg_catalog", "main", "temp", "system", "memory", "duckdb"}
)
_SLUG = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_VERSION_TAG = re.compile(r"^v([1-9][0-9]{0,8})$")
# Nodes that have no business in a read-only query, wherever they appear.
_FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Merge,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Command,
    exp.Pragma,
    exp.Set,
    exp.Copy,
    exp.Attach,
    exp.Detach,
    exp.Use,
    exp.Into,
    exp.Placeholder,
    exp.Parameter,
    exp.SessionParameter,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)


@dataclass(frozen=True)
class TableRef:
    """A dataset as the query names it: ``agency.dataset`` at an optional version."""

    agency: str
    dataset: str
    version: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.agency}.{self.dataset}"

    def __str__(self) -> str:
        return self.ref if self.version is None else f"{self.ref}@v{self.version}"


@dataclass
class ParsedQuery:
    sql: str
    sha256: str
    statement: exp.Query
    refs: list[TableRef]


_PARSED: Memo[ParsedQuery] = Memo(MEMO_SIZE)


def query_sha256(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


def parse_query(sql: str) -> ParsedQuery:
    """Parse and check a query; raise a 4xx error naming the first problem found.

    The outcome depends on the text alone, so accepted queries up to ``MEMO_MAX_CHARS`` are
    remembered (a dashboard sends the same few again and again). The statement is shared
    between the callers that send one text: never change it in place (``plan_query`` copies).
    """
    if len(sql) > MAX_SQL_CHARS:
        raise PayloadTooLarge(f"queries are limited to {MAX_SQL_CHARS} characters")
    known = _PARSED.get(sql)
    if known is not None:
        return ParsedQuery(sql, known.sha256, known.statement, list(known.refs))
    statement = _single_select(_expand_version_tags(sql))
    _check_nodes(statement)
    _check_functions(statement)
    refs = _dataset_refs(statement)
    parsed = ParsedQuery(sql=sql, sha256=query_sha256(sql), statement=statement, refs=refs)
    if len(sql) <= MEMO_MAX_CHARS:
        _PARSED.put(sql, ParsedQuery(sql, parsed.sha256, statement, list(refs)))
    return parsed


def dataset_tables(statement: exp.Expr) -> list[exp.Table]:
    """The table nodes that name datasets (qualified ``agency.dataset``), in query order."""
    return [table for table in statement.find_all(exp.Table) if table.args.get("db")]


def table_ref(table: exp.Table) -> TableRef:
    version = table.args.get("version")
    number = int(version.expression.name) if isinstance(version, exp.Version) else None
    return TableRef(table.db.lower(), table.name.lower(), number)


def _expand_version_tags(sql: str) -> str:
    """Turn ``agency.dataset@v3`` into ``agency.dataset FOR VERSION AS OF 3`` (outside strings)."""
    if "@" not in sql:
        return sql
    try:
        tokens = DuckDB().tokenize(sql)
    except (TokenError, ParseError) as exc:
        raise BadRequest(f"cannot read the query: {exc}", code="sql_syntax") from None
    edits: list[tuple[int, int, str]] = []
    for index in range(2, len(tokens) - 1):
        at, tag = tokens[index], tokens[index + 1]
        if at.token_type is not TokenType.PARAMETER or at.text != "@":
            continue
        match = _VERSION_TAG.match(tag.text)
        if match and tokens[index - 2].token_type is TokenType.DOT and tag.start == at.end + 1:
            edits.append((at.start, tag.end + 1, f" FOR VERSION AS OF {match.group(1)}"))
    for start, end, text in reversed(edits):
        sql = sql[:start] + text + sql[end:]
    return sql


def _single_select(sql: str) -> exp.Query:
    try:
        statements = sqlglot.parse(sql, dialect="duckdb")
    except (ParseError, TokenError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise BadRequest(f"cannot parse the query: {message}", code="sql_syntax") from None
    real = [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)]
    if len(real) != 1:
        raise Forbidden(
            "exactly one SELECT statement is allowed per query", code="multiple_statements"
        )
    statement = real[0]
    if not isinstance(statement, exp.Query):
        kind = type(statement).__name__.upper()
        raise Forbidden(
            f"only SELECT queries are allowed, not {kind}", code="statement_not_allowed"
        )
    return statement


def _check_nodes(statement: exp.Query) -> None:
    for node in statement.walk():
        if isinstance(node, _FORBIDDEN_NODES):
            kind = type(node).__name__.upper()
            raise Forbidden(f"{kind} is not allowed in a query", code="statement_not_allowed")
        if isinstance(node, exp.Identifier) and node.name.lower().startswith(RESERVED_PREFIX):
            raise Forbidden(
                f"names starting with {RESERVED_PREFIX} are reserved", code="reserved_name"
            )
        if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            raise Forbidden("qualified function names are not allowed", code="function_not_allowed")


def function_name(node: exp.Func) -> str:
    return node.name.lower() if isinstance(node, exp.Anonymous) else node.key


def _check_functions(statement: exp.Query) -> None:
    for node in statement.find_all(exp.Func):
        if isinstance(node, exp.Connector):
            continue  # AND / OR are operators, though sqlglot models them as functions
        name = function_name(node)
        if name not in ALLOWED:
            shown = node.name if isinstance(node, exp.Anonymous) else node.sql_name()
            raise Forbidden(
                f"function {shown.lower()}() is not allowed in governed queries",
                code="function_not_allowed",
                details={"function": shown.lower()},
            )


def _cte_names(statement: exp.Query) -> set[str]:
    return {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}


def _dataset_refs(statement: exp.Query) -> list[TableRef]:
    ctes = _cte_names(statement)
    refs: list[TableRef] = []
    for table in statement.find_all(exp.Table):
        ref = _check_table(table, ctes)
        if ref is not None and ref not in refs:
            refs.append(ref)
    return refs


def _check_table(table: exp.Table, ctes: set[str]) -> TableRef | None:
    if not isinstance(table.this, exp.Identifier):
        raise Forbidden(
            "table functions are not allowed; name datasets as agency.dataset",
            code="table_function_not_allowed",
        )
    if table.args.get("catalog"):
        raise Forbidden("name datasets as agency.dataset", code="unknown_table")
    if not table.args.get("db"):
        if table.name.lower() in ctes:
            return None
        raise Forbidden(
            "tables must be named agency.dataset (or a WITH name of the query)",
            code="unqualified_table",
        )
    agency, dataset = table.db.lower(), table.name.lower()
    if agency in SYSTEM_SCHEMAS:
        raise Forbidden(f"the {agency} catalog is not available", code="catalog_not_allowed")
    if not _SLUG.match(agency) or not _SLUG.match(dataset):
        raise Forbidden("name datasets as agency.dataset", code="unknown_table")
    version = table.args.get("version")
    if version is not None:
        _check_version(version)
    return table_ref(table)


def _check_version(version: exp.Expr) -> None:
    value = version.expression if isinstance(version, exp.Version) else None
    ok = (
        isinstance(version, exp.Version)
        and version.name.upper() == "VERSION"
        and isinstance(value, exp.Literal)
        and not value.is_string
        and value.name.isdigit()
        and int(value.name) >= 1
    )
    if not ok:
        raise BadRequest(
            "time travel is written agency.dataset@vN or FOR VERSION AS OF N (N >= 1)",
            code="invalid_version",
        )
