"""The keys of an upsert or delete file, to find the stored rows they replace or remove.

Stored rows stream past batch by batch, so the incoming keys must be searchable many times
without being rebuilt each time (a hash join per stored batch rebuilds its table for every
batch: quadratic in the file's size). Here each key gets a 64-bit code (``key_codes``: the value
itself for one integer or temporal column, else DuckDB's hash); the codes are sorted once, and a
stored batch is looked up by binary search. For one integer-like key column without nulls the
code is the key, so a match is exact and only the sorted codes are kept (8 bytes a key).
Otherwise a matching code is only a candidate: the keys are then compared exactly, nulls equal to
nulls (SQL ``IS NOT DISTINCT FROM``), so a hash collision never drops a stored row; memory is the
key columns plus 8 bytes a key.
"""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from civicshare.ingest.validate import exact_type, key_codes

Mask = npt.NDArray[np.bool_]
Positions = npt.NDArray[np.intp]


class KeySet:
    """A set of keys (rows of ``keys``, one column per key field) with exact batch lookups."""

    # ``_codes`` gives one integer-like column's values unchanged (a subclass with other codes,
    # such as a test's deliberately colliding ones, turns this off).
    identity_codes = True

    def __init__(self, keys: pa.Table) -> None:
        self._hasher = duckdb.connect(":memory:")
        self._hasher.execute("SET threads=1")
        self.columns = keys.column_names
        self._size = keys.num_rows
        codes = self._codes(keys)
        # One integer-like column without nulls: its code is the key itself, nothing to compare.
        self._exact = (
            self.identity_codes
            and keys.num_columns == 1
            and exact_type(keys.schema.field(0).type)
            and keys.column(0).null_count == 0
        )
        if self._exact:
            self._codes_sorted, self._keys = np.sort(codes), None
        else:
            order = np.argsort(codes, kind="stable")
            self._codes_sorted = codes[order]
            self._keys = keys.take(pa.array(order))  # in code order, beside their codes

    def _codes(self, keys: pa.Table) -> npt.NDArray[np.int64]:
        # A null code (a null integer key) is bucketed with 0; the exact comparison sorts it out.
        codes = pc.fill_null(key_codes(self._hasher, keys), 0)
        return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)

    def __len__(self) -> int:
        return int(self._size)

    def contains(self, keys: pa.Table) -> Mask:
        """For each row of ``keys`` (same columns), whether an equal key is in the set."""
        found = np.zeros(keys.num_rows, dtype=np.bool_)
        if keys.num_rows == 0 or len(self) == 0:
            return found
        codes = self._codes(keys.select(self.columns))
        first = np.searchsorted(self._codes_sorted, codes, side="left")
        end = np.searchsorted(self._codes_sorted, codes, side="right")
        candidates = np.flatnonzero(end > first)
        if self._exact:
            found[candidates] = True
            # A null stored key shares code 0 with a key 0 but equals no key of this set.
            valid = pc.is_valid(keys.column(self.columns[0])).to_numpy(zero_copy_only=False)
            return found & np.asarray(valid, dtype=np.bool_)
        # Nearly always one key per code: compare each candidate with the first key of its code.
        same = self._equal(keys, candidates, first[candidates])
        found[candidates[same]] = True
        # Several keys with the candidate's code (a collision inside the file): try the others.
        for row in candidates[~same & (end[candidates] - first[candidates] > 1)]:
            others = np.arange(first[row] + 1, end[row])
            found[row] = bool(self._equal(keys, np.full(len(others), row), others).any())
        return found

    def _equal(self, keys: pa.Table, rows: Positions, positions: Positions) -> Mask:
        """Whether ``keys[rows[i]]`` equals the set's key at ``positions[i]``, for every i."""
        if len(rows) == 0 or self._keys is None:
            return np.zeros(len(rows), dtype=np.bool_)
        ours = self._keys.take(pa.array(positions))
        theirs = keys.take(pa.array(rows))
        same = pa.array(np.ones(len(rows), dtype=np.bool_))
        for name in self.columns:
            left = ours.column(name).combine_chunks()
            right = theirs.column(name).combine_chunks()
            both_null = pc.and_(pc.is_null(left), pc.is_null(right))
            equal = pc.fill_null(pc.equal(left, right), False)
            same = pc.and_(same, pc.or_(equal, both_null))
        return np.asarray(same.to_numpy(zero_copy_only=False), dtype=np.bool_)

    def close(self) -> None:
        self._hasher.close()
