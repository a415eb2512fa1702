"""The fast canonical JSON of audit records is byte-identical to the rfc8785 reference."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from civicshare.audit import canonical

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(alphabet=st.characters(max_codepoint=0x7F))
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(["a", "b", "index"]), children)
    ),
    max_leaves=20,
)


def reference(value: Any) -> bytes | type[Exception]:
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        return type(exc)


def ours(value: Any) -> bytes | type[Exception]:
    try:
        return canonical.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        return type(exc)


@given(json_values)
def test_same_bytes_or_same_error_as_rfc8785(value: Any) -> None:
    assert ours(value) == reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"quote": 'a"b\\c', "controls": "\x00\x01\x1f\x7f\b\f\n\r\t"},
        {"b": 1, "a": [True, False, None], "c": {"z": -(2**53) + 1, "y": 2**53 - 1}},
        {"big": 2**53},  # outside the safe range: rfc8785 refuses, so must we
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order differs from code point order here
        {"float": 1.0, "small": 1e-7, "huge": 1e21},
        {"text": "Zürich", "emoji": "\U0001f600"},
        {1: "non-string key"},
    ],
)
def test_edge_cases_match_rfc8785(value: Any) -> None:
    assert ours(value) == reference(value)
