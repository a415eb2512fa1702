"""Rendering query results: JSON with column types, CSV, Arrow IPC stream, Parquet."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pq
import rfc8785

from civicshare.errors import Invalid

FORMATS = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Invalid(
            f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}", code="invalid_format"
        )
    return fmt


def column_types(table: pa.Table) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


def jsonable(value: Any) -> Any:
    """JSON-safe form of an Arrow value: ISO dates, decimals as strings, bytes as base64."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def json_rows(table: pa.Table) -> list[list[Any]]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return [[jsonable(column[i]) for column in columns] for i in range(table.num_rows)]


def json_body(
    table: pa.Table, *, truncated: bool, suppressed: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "columns": column_types(table),
        "rows": json_rows(table),
        "truncated": truncated,
        "suppressed": jsonable(suppressed),
    }


def render_binary(table: pa.Table, fmt: str) -> bytes:
    """CSV, Arrow IPC stream or Parquet bytes (built in memory, never on disk)."""
    sink = io.BytesIO()
    if fmt == "csv":
        pa_csv.write_csv(table, sink)
    elif fmt == "arrow":
        with pa_ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    elif fmt == "parquet":
        pq.write_table(table, sink)
    else:
        raise Invalid(f"format '{fmt}' is not binary", code="invalid_format")
    return sink.getvalue()


def body_sha256(body: dict[str, Any] | bytes) -> str:
    """The result hash in audit records: of the canonical JSON body, or of the bytes sent."""
    data = body if isinstance(body, bytes) else rfc8785.dumps(body)
    return hashlib.sha256(data).hexdigest()


def json_text(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)
