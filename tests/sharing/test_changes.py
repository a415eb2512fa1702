"""Change data feed between versions: keyed updates, multiset inserts/deletes."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicshare.errors import BadRequest
from civicshare.sharing.changes import compute_changes


def rows(table: pa.Table) -> list[dict[str, object]]:
    return table.to_pylist()


def test_keyed_changes_pair_pre_and_post_images() -> None:
    before = pa.table({"id": [1, 2, 3, 4], "v": ["a", "b", None, "d"]})
    after = pa.table({"id": [1, 2, 3, 5], "v": ["a", "B", "c", "e"]})
    assert rows(compute_changes(before, after, primary_key=["id"])) == [
        {"id": 2, "v": "b", "_change_type": "update_preimage"},
        {"id": 2, "v": "B", "_change_type": "update_postimage"},
        {"id": 3, "v": None, "_change_type": "update_preimage"},
        {"id": 3, "v": "c", "_change_type": "update_postimage"},
        {"id": 4, "v": "d", "_change_type": "delete"},
        {"id": 5, "v": "e", "_change_type": "insert"},
    ]


def test_without_a_usable_key_rows_are_compared_whole() -> None:
    before = pa.table({"id": [1, 1], "v": ["a", "b"]})  # "id" is not unique here
    after = pa.table({"id": [1, 1], "v": ["a", "c"]})
    changes = rows(compute_changes(before, after, primary_key=["id"]))
    assert Counter((r["v"], r["_change_type"]) for r in changes) == Counter(
        [("b", "delete"), ("c", "insert")]
    )


def test_a_first_version_is_all_inserts() -> None:
    after = pa.table({"id": [1, 2], "v": ["a", "b"]})
    changes = compute_changes(after.slice(0, 0), after, primary_key=["id"])
    assert changes.column("_change_type").to_pylist() == ["insert", "insert"]


def test_changed_columns_are_refused_clearly() -> None:
    with pytest.raises(BadRequest, match="columns changed"):
        compute_changes(pa.table({"a": [1]}), pa.table({"b": [1]}))


row_values = st.lists(
    st.tuples(st.integers(0, 5), st.one_of(st.none(), st.sampled_from("abc"))), max_size=12
)


@settings(max_examples=40, deadline=None)
@given(before=row_values, after=row_values)
def test_applying_the_changes_to_the_previous_rows_gives_the_current_rows(
    before: list[tuple[int, str | None]], after: list[tuple[int, str | None]]
) -> None:
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    old = pa.Table.from_pylist([{"k": k, "v": v} for k, v in before], schema=schema)
    new = pa.Table.from_pylist([{"k": k, "v": v} for k, v in after], schema=schema)
    for key in ([], ["k"]):
        state = Counter(before)
        for change in rows(compute_changes(old, new, primary_key=key)):
            item = (change["k"], change["v"])
            if change["_change_type"] in {"delete", "update_preimage"}:
                state[item] -= 1
                assert state[item] >= 0
            else:
                state[item] += 1
        assert +state == Counter(after)
