"""KeySet: exact membership of stored keys among an upsert's keys, collisions and nulls included."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from civicshare.ingest.keyset import KeySet


class CollidingKeySet(KeySet):
    """Every key falls in one of three buckets, so nearly every lookup meets collisions."""

    identity_codes = False

    def _codes(self, keys: pa.Table) -> npt.NDArray[np.int64]:
        return super()._codes(keys) % 3


def expected(incoming: list[tuple[Any, ...]], stored: list[tuple[Any, ...]]) -> list[bool]:
    # Python tuples compare None with None as equal: SQL's IS NOT DISTINCT FROM.
    present = set(incoming)
    return [row in present for row in stored]


def table(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.table(
        [pa.array(list(c), f.type) for c, f in zip(columns, schema, strict=True)], schema
    )


def check(
    schema: pa.Schema, incoming: list[tuple[Any, ...]], stored: list[tuple[Any, ...]]
) -> None:
    for kind in (KeySet, CollidingKeySet):
        keys = kind(table(incoming, schema))
        try:
            found = keys.contains(table(stored, schema))
        finally:
            keys.close()
        assert found.tolist() == expected(incoming, stored), kind.__name__


small_ints = st.one_of(st.none(), st.integers(-3, 3), st.integers(-(2**63), 2**63 - 1))


@settings(max_examples=150, deadline=None)
@given(st.lists(small_ints, max_size=30), st.lists(small_ints, max_size=30))
def test_integer_keys(incoming: list[int | None], stored: list[int | None]) -> None:
    schema = pa.schema([("id", pa.int64())])
    check(schema, [(v,) for v in incoming], [(v,) for v in stored])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=3)), st.integers(0, 2)), max_size=25),
    st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=3)), st.integers(0, 2)), max_size=25),
)
def test_composite_text_and_integer_keys(
    incoming: list[tuple[str | None, int]], stored: list[tuple[str | None, int]]
) -> None:
    schema = pa.schema([("code", pa.string()), ("part", pa.int32())])
    check(schema, incoming, stored)


def test_dates_and_a_null_stored_key_never_matches_key_zero() -> None:
    epoch = dt.date(1970, 1, 1)  # code 0, as a null key's code is
    schema = pa.schema([("day", pa.date32())])
    check(schema, [(epoch,), (dt.date(2024, 1, 2),)], [(None,), (epoch,), (dt.date(2024, 1, 3),)])
    integers = pa.schema([("id", pa.int64())])
    check(integers, [(0,), (5,)], [(None,), (0,), (6,)])


def test_floats_geopoints_and_quoted_names() -> None:
    numbers = pa.schema([("x", pa.float64())])
    nan, zero = float("nan"), 0.0
    check_rows = KeySet(table([(nan,), (zero,)], numbers))
    try:
        assert check_rows.contains(
            table([(nan,), (-zero,), (1.0,), (None,)], numbers)
        ).tolist() == [
            True,
            True,
            False,
            False,
        ]
    finally:
        check_rows.close()
    point = pa.struct([("lon", pa.float64()), ("lat", pa.float64())])
    points = pa.schema([("loc", point)])
    incoming = [({"lon": 1.0, "lat": 2.0},), (None,)]
    stored = [({"lon": 1.0, "lat": 2.0},), ({"lon": 2.0, "lat": 1.0},), (None,)]
    for kind in (KeySet, CollidingKeySet):
        found = kind(table(incoming, points)).contains(table(stored, points))
        assert found.tolist() == [True, False, True], kind.__name__  # null is null
    quoted = pa.schema([("a", pa.string()), ('b"c', pa.string())])
    check(quoted, [("x", "y")], [("x", "y"), ("x", "z")])


def test_empty_sides() -> None:
    schema = pa.schema([("id", pa.int64())])
    check(schema, [], [(1,), (None,)])
    check(schema, [(1,)], [])
