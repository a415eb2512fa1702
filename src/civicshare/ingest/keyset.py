"""A set of keys (or of unique values) to look stored rows up in, batch after batch.

Upserts and deletes ask, for every stored batch, which rows have a key among the file's; the
uniqueness check of an upsert asks which values stored rows hold. The set must be searchable many
times without being rebuilt (a hash join per stored batch rebuilds its table for every batch:
quadratic in the file's size). Each key gets a 64-bit code (``key_codes``: the value itself for
one integer or temporal column, else DuckDB's hash); the codes are sorted once, and a batch is
looked up by binary search.

For one integer-like column the code is the value, so a match is exact and only the sorted codes
are kept (8 bytes a key; a null key is a flag). Otherwise a matching code is only a candidate:
the keys are then compared exactly, so a hash collision never drops a stored row; memory is the
key columns plus 8 bytes a key. Equality is SQL's ``IS NOT DISTINCT FROM`` (null equals null)
with floating point as DuckDB hashes it (NaN equals NaN, -0 equals 0), field by field for
structured values (a geopoint).
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc


def key_codes(keys: pa.Table) -> pa.Array:
    """One int64 per row: the key itself when it is one integer-like column, else a hash.

    Equal keys always get equal codes; unequal keys may share one (a hash collision), so a
    code is a key's bucket, not its identity. A null key's code is null.
    """
    if keys.num_columns == 1 and exact_type(keys.schema.field(0).type):
        column = keys.column(0).combine_chunks()
        if not pa.types.is_integer(column.type):
            column = column.view(pa.int32() if column.type.bit_width == 32 else pa.int64())
        return pc.cast(column, pa.int64(), safe=False)
    columns = ", ".join('"' + c.replace('"', '""') + '"' for c in keys.column_names)
    hasher = _hasher()
    hasher.register("ledger_keys", keys)
    try:
        hashed = hasher.execute(f"SELECT hash({columns}) AS h FROM ledger_keys").to_arrow_table()
    finally:
        hasher.unregister("ledger_keys")
    return pc.cast(hashed.column("h").combine_chunks(), pa.int64(), safe=False)


def exact_type(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_date(kind)
        or pa.types.is_timestamp(kind)
        or pa.types.is_time(kind)
    )


_local = threading.local()


def _hasher() -> duckdb.DuckDBPyConnection:
    """This thread's DuckDB connection for hashing keys (a connection is not for two threads;
    opening one per set would cost more than hashing a small set)."""
    connection: duckdb.DuckDBPyConnection | None = getattr(_local, "hasher", None)
    if connection is None:
        # No spill folder: DuckDB would otherwise offload key values to ``./.tmp`` in the clear.
        connection = duckdb.connect(":memory:", config={"temp_directory": ""})
        connection.execute("SET threads=1")
        _local.hasher = connection
    return connection


Mask = npt.NDArray[np.bool_]
Positions = npt.NDArray[np.intp]


class KeySet:
    """A set of keys (rows of ``keys``, one column per key field) with exact batch lookups."""

    # ``_codes`` gives one integer-like column's values unchanged (a subclass with other codes,
    # such as a test's deliberately colliding ones, turns this off).
    identity_codes = True

    def __init__(self, keys: pa.Table) -> None:
        self.columns = keys.column_names
        self._size = keys.num_rows
        self._exact = (
            self.identity_codes and keys.num_columns == 1 and exact_type(keys.schema.field(0).type)
        )
        self._has_null = False
        self._keys: pa.Table | None = None
        if self._exact:
            valid = pc.is_valid(keys.column(0))
            self._has_null = keys.column(0).null_count > 0
            self._codes_sorted = np.sort(self._codes(keys.filter(valid)))
        else:
            codes = self._codes(keys)
            order = np.argsort(codes, kind="stable")
            self._codes_sorted = codes[order]
            self._keys = _large(keys).take(pa.array(order))  # in code order, beside the codes

    def _codes(self, keys: pa.Table) -> npt.NDArray[np.int64]:
        # A null code (a null key under a test's codes) is bucketed with 0; comparison decides.
        codes = pc.fill_null(key_codes(keys), 0)
        return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)

    def __len__(self) -> int:
        return int(self._size)

    def contains(self, keys: pa.Table) -> Mask:
        """For each row of ``keys`` (same columns and types), whether an equal key is in the set."""
        keys = keys.select(self.columns)
        if keys.num_rows == 0 or len(self) == 0:
            return np.zeros(keys.num_rows, dtype=np.bool_)
        if self._exact:
            return self._contains_exact(keys)
        codes = self._codes(keys)
        first = np.searchsorted(self._codes_sorted, codes, side="left")
        end = np.searchsorted(self._codes_sorted, codes, side="right")
        found = np.zeros(keys.num_rows, dtype=np.bool_)
        candidates = np.flatnonzero(end > first)
        # Nearly always one key per code: compare each candidate with the first key of its code.
        same = self._equal(keys, candidates, first[candidates])
        found[candidates[same]] = True
        # Several keys with the candidate's code (a collision inside the set): try the others.
        for row in candidates[~same & (end[candidates] - first[candidates] > 1)]:
            others = np.arange(first[row] + 1, end[row])
            found[row] = bool(self._equal(keys, np.full(len(others), row), others).any())
        return found

    def _contains_exact(self, keys: pa.Table) -> Mask:
        column = keys.column(0)
        valid = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=np.bool_)
        found = np.full(keys.num_rows, self._has_null, dtype=np.bool_)  # for the null rows
        codes = self._codes(keys.filter(pa.array(valid)))
        first = np.searchsorted(self._codes_sorted, codes, side="left")
        end = np.searchsorted(self._codes_sorted, codes, side="right")
        found[valid] = end > first
        return found

    def _equal(self, keys: pa.Table, rows: Positions, positions: Positions) -> Mask:
        """Whether ``keys[rows[i]]`` equals the set's key at ``positions[i]``, for every i."""
        if len(rows) == 0 or self._keys is None:
            return np.zeros(len(rows), dtype=np.bool_)
        ours = self._keys.take(pa.array(positions))
        theirs = _large(keys).take(pa.array(rows))
        same = pa.array(np.ones(len(rows), dtype=np.bool_))
        for name in self.columns:
            left = ours.column(name).combine_chunks()
            right = theirs.column(name).combine_chunks()
            same = pc.and_(same, same_values(left, right))
        return np.asarray(same.to_numpy(zero_copy_only=False), dtype=np.bool_)

    def close(self) -> None:
        """Frees the set's memory now rather than when it is collected."""
        self._codes_sorted = np.zeros(0, dtype=np.int64)
        self._keys = None


def same_values(left: pa.Array, right: pa.Array) -> pa.BooleanArray:
    """Element-wise ``IS NOT DISTINCT FROM``, NaN equal to NaN, structs field by field."""
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    if pa.types.is_struct(left.type):
        fields = pa.array(np.ones(len(left), dtype=np.bool_))
        for index in range(left.type.num_fields):
            fields = pc.and_(fields, same_values(left.field(index), right.field(index)))
        either_null = pc.or_(pc.is_null(left), pc.is_null(right))
        return pc.or_(both_null, pc.and_(pc.invert(either_null), fields))
    equal = pc.fill_null(pc.equal(left, right), False)
    if pa.types.is_floating(left.type):
        equal = pc.or_(equal, pc.fill_null(pc.and_(pc.is_nan(left), pc.is_nan(right)), False))
    return pc.or_(equal, both_null)


def _large(table: pa.Table) -> pa.Table:
    """Strings and bytes with 64-bit offsets: taking rows of a column over 2 GiB must not fail."""
    fields = []
    for field in table.schema:
        if pa.types.is_string(field.type):
            field = field.with_type(pa.large_string())
        elif pa.types.is_binary(field.type):
            field = field.with_type(pa.large_binary())
        fields.append(field)
    return table.cast(pa.schema(fields))
