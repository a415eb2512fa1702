"""Arrow → Spark schema: every type the hub can store is describable and readable by the client."""

from __future__ import annotations

import datetime as dt
import decimal
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from delta_sharing.converter import get_empty_table, to_converters

from civicshare.sharing.materialize import materialize
from civicshare.sharing.spark import spark_compatible, spark_schema, spark_schema_string

STORED_TYPES = {
    "flag": (pa.bool_(), [True, None]),
    "tiny": (pa.int8(), [1, -2]),
    "small": (pa.uint8(), [255, 0]),
    "count": (pa.int32(), [7, None]),
    "big": (pa.uint32(), [4_000_000_000, 1]),
    "huge": (pa.uint64(), [18_000_000_000_000_000_000, 0]),
    "ratio": (pa.float16(), [None, None]),
    "amount": (pa.float64(), [1.5, float("nan")]),
    "price": (pa.decimal128(10, 2), [decimal.Decimal("1.25"), None]),
    "name": (pa.large_string(), ["a", "é"]),
    "code": (pa.dictionary(pa.int8(), pa.string()), ["x", "y"]),
    "raw": (pa.binary(), [b"\x00", None]),
    "day": (pa.date32(), [dt.date(2024, 2, 29), None]),
    "seen_local": (pa.timestamp("ns"), [dt.datetime(2024, 1, 1, 12), None]),
    "seen_utc": (
        pa.timestamp("ms", tz="Europe/Paris"),
        [dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None],
    ),
    "opens": (pa.time64("us"), [dt.time(8, 30), None]),
    "took": (pa.duration("s"), [dt.timedelta(seconds=90), None]),
    "nothing": (pa.null(), [None, None]),
    "tags": (pa.list_(pa.string()), [["a"], []]),
    "point": (
        pa.struct([("lat", pa.float64()), ("lon", pa.float64())]),
        [{"lat": 1.0, "lon": 2.0}, None],
    ),
    "attrs": (pa.map_(pa.string(), pa.int64()), [[("k", 1)], None]),
}


def stored_table() -> pa.Table:
    arrays = {}
    for name, (data_type, values) in STORED_TYPES.items():
        if pa.types.is_dictionary(data_type):
            arrays[name] = pa.array(values).dictionary_encode().cast(data_type)
        elif pa.types.is_float16(data_type):
            arrays[name] = pa.array(values, type=pa.float32()).cast(data_type)
        else:
            arrays[name] = pa.array(values, type=data_type)
    return pa.table(arrays)


def test_every_stored_type_is_described_in_types_the_python_client_converts() -> None:
    schema = spark_compatible(stored_table().schema)
    described = json.loads(spark_schema_string(schema))
    converters = to_converters(described)  # raises on any type the client does not know
    assert set(converters) == set(STORED_TYPES)
    empty = get_empty_table(described)
    assert list(empty.columns) == list(STORED_TYPES)


def test_served_parquet_has_exactly_the_described_types() -> None:
    table = stored_table()
    content = materialize(table.to_batches(), table.schema, fingerprint="f")
    (part,) = content.parts
    served = pq.read_table(pa.BufferReader(part.data))
    assert served.schema.remove_metadata() == content.schema
    assert spark_schema(served.schema) == spark_schema(content.schema)


def test_values_survive_the_casts() -> None:
    table = stored_table()
    content = materialize(table.to_batches(), table.schema, fingerprint="f")
    served = pq.read_table(pa.BufferReader(content.parts[0].data)).to_pylist()
    assert served[0]["small"] == 255
    assert served[0]["big"] == 4_000_000_000
    assert served[0]["huge"] == decimal.Decimal(18_000_000_000_000_000_000)
    assert served[0]["code"] == "x"
    # Naive timestamps are taken as UTC; zoned ones keep their instant.
    assert served[0]["seen_local"] == dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    assert served[0]["seen_utc"] == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert dt.time.fromisoformat(served[0]["opens"]) == dt.time(8, 30)
    assert served[0]["took"] == 90
    assert served[0]["point"] == {"lat": 1.0, "lon": 2.0}
    assert served[1]["nothing"] is None


def test_spark_names_of_primitives_and_nested_types() -> None:
    schema = spark_compatible(
        pa.schema(
            [
                pa.field("id", pa.int64(), nullable=False),
                pa.field("tags", pa.list_(pa.field("item", pa.string(), nullable=False))),
                pa.field("attrs", pa.map_(pa.string(), pa.float64())),
            ]
        )
    )
    assert spark_schema(schema, comments={"id": "the key"}) == {
        "type": "struct",
        "fields": [
            {"name": "id", "type": "long", "nullable": False, "metadata": {"comment": "the key"}},
            {
                "name": "tags",
                "type": {"type": "array", "elementType": "string", "containsNull": False},
                "nullable": True,
                "metadata": {},
            },
            {
                "name": "attrs",
                "type": {
                    "type": "map",
                    "keyType": "string",
                    "valueType": "double",
                    "valueContainsNull": True,
                },
                "nullable": True,
                "metadata": {},
            },
        ],
    }


def test_a_type_not_made_compatible_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="make the schema compatible"):
        spark_schema(pa.schema([pa.field("t", pa.time32("s"))]))
