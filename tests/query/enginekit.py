"""Building policy views straight over Arrow tables, for tests of the pure engine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pyarrow as pa

from civicshare.policy.treatments import parse_treatment
from civicshare.policy.view import Exclusion, GrantedColumn, PolicyView
from civicshare.query.engine import QueryOutput, execute
from civicshare.query.parse import TableRef, parse_query
from civicshare.query.rewrite import Plan, plan_query

PEOPLE = pa.table(
    {
        "person_id": pa.array(["R-1001", "R-1002", "R-1003", "R-1004", None], pa.string()),
        "name": ["Ada Byron", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Anon"],
        "ssn": ["123-45-6789", "987-65-4321", "555-12-3456", "111-22-3333", None],
        "dob": pa.array(
            [dt.date(1990, 5, 17), dt.date(1985, 1, 2), None, dt.date(2001, 12, 31),
             dt.date(1970, 7, 7)],
            pa.date32(),
        ),
        "age": pa.array([34, 39, 70, 17, None], pa.int64()),
        "income": pa.array([52000.5, 71000.0, None, 800.25, 15000.0], pa.float64()),
        "zip": ["94110", "94112", "94110", None, "94103"],
        "n": pa.array([1, 2, 3, 4, 5], pa.int32()),
    }
)  # fmt: skip


def view(
    ref: str,
    table: pa.Table,
    grants: Mapping[str, str] | None = None,
    **options: object,
) -> PolicyView:
    """A view granting ``grants`` (column -> treatment spec), or every column in clear."""
    specs = grants if grants is not None else dict.fromkeys(table.column_names, "clear")
    columns = tuple(GrantedColumn(name, parse_treatment(spec)) for name, spec in specs.items())

    def reader(names: list[str]) -> pa.Table:
        return table.select(names)

    defaults: dict[str, object] = {"pseudonym_key": b"k" * 32, "agreement_id": "agr_test"}
    defaults.update(options)
    return PolicyView(ref=ref, schema=table.schema, columns=columns, reader=reader, **defaults)  # type: ignore[arg-type]


def plan(sql: str, views: Mapping[str, PolicyView]) -> Plan:
    parsed = parse_query(sql)
    by_ref = {ref: views[ref.ref] for ref in parsed.refs}
    return plan_query(parsed, by_ref)


def run(sql: str, views: Mapping[str, PolicyView], **options: float | int) -> QueryOutput:
    return execute(plan(sql, views), **options)  # type: ignore[arg-type]


__all__ = ["PEOPLE", "Exclusion", "TableRef", "plan", "run", "view"]
