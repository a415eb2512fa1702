"""Arrow schemas in the Delta Sharing protocol's terms: Spark SQL's JSON schema.

Delta Sharing clients rebuild a table's types from the Spark schema string, and the Python
client refuses types it does not know (``timestamp_ntz``, ``void``, unsigned integers). So a
shared table is first cast to Spark-representable Arrow types (``spark_compatible``), then
described (``spark_schema``); the Parquet files served carry exactly the described types.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

# Spark has no unsigned integers: each widens to the next signed type that holds all its values.
_WIDER_SIGNED = {
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
}
_PRIMITIVE_NAMES = {
    pa.bool_(): "boolean",
    pa.int8(): "byte",
    pa.int16(): "short",
    pa.int32(): "integer",
    pa.int64(): "long",
    pa.float32(): "float",
    pa.float64(): "double",
    pa.string(): "string",
    pa.large_string(): "string",
    pa.binary(): "binary",
    pa.large_binary(): "binary",
    pa.date32(): "date",
}
MAX_DECIMAL_PRECISION = 38


def compatible_type(data_type: pa.DataType) -> pa.DataType:
    """The Arrow type a column is served as, so that Spark's type system can describe it."""
    if pa.types.is_dictionary(data_type):
        return compatible_type(data_type.value_type)
    if data_type in _WIDER_SIGNED:
        return _WIDER_SIGNED[data_type]
    if data_type == pa.uint64():
        return pa.decimal128(20, 0)
    if pa.types.is_float16(data_type):
        return pa.float32()
    if pa.types.is_date64(data_type):
        return pa.date32()
    if pa.types.is_timestamp(data_type):
        # Spark timestamps are microsecond instants; naive values are taken as UTC.
        return pa.timestamp("us", tz="UTC")
    if pa.types.is_time(data_type) or pa.types.is_null(data_type):
        return pa.string()
    if pa.types.is_duration(data_type):
        return pa.int64()
    if pa.types.is_decimal(data_type) and data_type.precision > MAX_DECIMAL_PRECISION:
        return pa.string()
    if pa.types.is_fixed_size_binary(data_type) or pa.types.is_binary_view(data_type):
        return pa.binary()
    if pa.types.is_string_view(data_type):
        return pa.string()
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        return pa.list_(_compatible_field(data_type.value_field))
    if pa.types.is_fixed_size_list(data_type):
        return pa.list_(_compatible_field(data_type.value_field))
    if pa.types.is_struct(data_type):
        return pa.struct([_compatible_field(field) for field in data_type])
    if pa.types.is_map(data_type):
        return pa.map_(compatible_type(data_type.key_type), _compatible_field(data_type.item_field))
    return data_type


def _compatible_field(field: pa.Field) -> pa.Field:
    return pa.field(field.name, compatible_type(field.type), nullable=field.nullable)


def spark_compatible(schema: pa.Schema) -> pa.Schema:
    """``schema`` with every column cast to a type Spark can describe (metadata dropped)."""
    return pa.schema([_compatible_field(field) for field in schema])


def spark_type(data_type: pa.DataType) -> str | dict[str, Any]:
    """The Spark JSON type of an Arrow type already made ``spark_compatible``."""
    if data_type in _PRIMITIVE_NAMES:
        return _PRIMITIVE_NAMES[data_type]
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    if pa.types.is_decimal(data_type):
        return f"decimal({data_type.precision},{data_type.scale})"
    if pa.types.is_list(data_type):
        return {
            "type": "array",
            "elementType": spark_type(data_type.value_type),
            "containsNull": data_type.value_field.nullable,
        }
    if pa.types.is_struct(data_type):
        return {"type": "struct", "fields": [spark_field(field) for field in data_type]}
    if pa.types.is_map(data_type):
        return {
            "type": "map",
            "keyType": spark_type(data_type.key_type),
            "valueType": spark_type(data_type.item_type),
            "valueContainsNull": data_type.item_field.nullable,
        }
    raise ValueError(f"no Spark type for Arrow type {data_type}; make the schema compatible first")


def spark_field(field: pa.Field, *, comment: str | None = None) -> dict[str, Any]:
    metadata = {"comment": comment} if comment else {}
    return {
        "name": field.name,
        "type": spark_type(field.type),
        "nullable": field.nullable,
        "metadata": metadata,
    }


def spark_schema(schema: pa.Schema, *, comments: dict[str, str] | None = None) -> dict[str, Any]:
    """The Spark struct describing a ``spark_compatible`` Arrow schema."""
    comments = comments or {}
    return {
        "type": "struct",
        "fields": [spark_field(field, comment=comments.get(field.name)) for field in schema],
    }


def spark_schema_string(schema: pa.Schema, *, comments: dict[str, str] | None = None) -> str:
    return json.dumps(spark_schema(schema, comments=comments), separators=(",", ":"))
