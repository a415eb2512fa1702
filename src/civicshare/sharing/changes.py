"""Row-level changes between two versions of a shared table (the change data feed).

Versions are immutable snapshots, so a version's changes are computed by comparing it with the
version before it — both as the recipient is allowed to see them (policy views). With a primary
key that is present and unique in both, a changed row is an ``update_preimage`` plus an
``update_postimage``; otherwise rows are compared whole, as multisets (``insert``/``delete``).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from civicshare.errors import BadRequest
from civicshare.sharing.protocol import UNSUPPORTED_OPERATION

CHANGE_TYPE = "_change_type"
# The order change rows are listed in: deterministic output for identical inputs.
_ORDER = "CASE _change_type WHEN 'delete' THEN 0 WHEN 'update_preimage' THEN 1 "
_ORDER += "WHEN 'update_postimage' THEN 2 ELSE 3 END"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def compute_changes(
    previous: pa.Table, current: pa.Table, *, primary_key: Sequence[str] = ()
) -> pa.Table:
    """The rows that changed from ``previous`` to ``current``, with a ``_change_type`` column."""
    if not previous.schema.equals(current.schema, check_metadata=False):
        raise BadRequest(
            "the table's columns changed between these versions; read a snapshot instead",
            code=UNSUPPORTED_OPERATION,
        )
    # No spill folder: DuckDB would otherwise offload the decrypted rows to ``./.tmp``.
    con = duckdb.connect(config={"temp_directory": ""})
    try:
        con.execute("SET enable_external_access = false")
        con.register("prev", previous)
        con.register("cur", current)
        key = [name for name in primary_key if name in current.column_names]
        usable = len(key) == len(primary_key) and key and _unique(con, key)
        sql = _keyed_sql(current.column_names, key) if usable else _multiset_sql()
        result = con.execute(sql).to_arrow_table()
    finally:
        con.close()
    schema = current.schema.append(pa.field(CHANGE_TYPE, pa.string(), nullable=False))
    return result.cast(schema)


def _unique(con: duckdb.DuckDBPyConnection, key: list[str]) -> bool:
    columns = ", ".join(_quote(name) for name in key)
    for table in ("prev", "cur"):
        row = con.execute(
            f"SELECT count(*) = count(DISTINCT ({columns})) AND "
            f"count(*) FILTER (WHERE {' OR '.join(f'{_quote(k)} IS NULL' for k in key)}) = 0 "
            f"FROM {table}"
        ).fetchone()
        if row is None or not row[0]:
            return False
    return True


def _multiset_sql() -> str:
    return (
        "SELECT * FROM ("
        "(SELECT *, 'delete' AS _change_type FROM"
        " (SELECT * FROM prev EXCEPT ALL SELECT * FROM cur))"
        " UNION ALL "
        "(SELECT *, 'insert' AS _change_type FROM"
        " (SELECT * FROM cur EXCEPT ALL SELECT * FROM prev))"
        ") ORDER BY ALL"
    )


def _keyed_sql(columns: list[str], key: list[str]) -> str:
    using = ", ".join(_quote(name) for name in key)
    others = [name for name in columns if name not in key]
    differs = " OR ".join(f"p.{_quote(c)} IS DISTINCT FROM c.{_quote(c)}" for c in others)
    changed = (
        f"SELECT {', '.join(f'p.{_quote(k)}' for k in key)} FROM prev p JOIN cur c USING ({using})"
        + (f" WHERE {differs}" if differs else " WHERE false")
    )
    order_key = ", ".join(_quote(name) for name in key)
    return (
        f"WITH changed AS ({changed}) SELECT * FROM ("
        f"(SELECT p.*, 'delete' AS _change_type FROM prev p ANTI JOIN cur c USING ({using}))"
        f" UNION ALL (SELECT p.*, 'update_preimage' FROM prev p SEMI JOIN changed USING ({using}))"
        f" UNION ALL (SELECT c.*, 'update_postimage' FROM cur c SEMI JOIN changed USING ({using}))"
        f" UNION ALL (SELECT c.*, 'insert' FROM cur c ANTI JOIN prev p USING ({using}))"
        f") ORDER BY {order_key}, {_ORDER}"
    )
