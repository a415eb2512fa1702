"""Wire-format pieces: action lines, protocol error codes, HTTP byte ranges."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicshare.errors import BadRequest, Forbidden, Invalid, NotFound, Unauthenticated
from civicshare.sharing.protocol import (
    UNSUPPORTED_OPERATION,
    RangeNotSatisfiable,
    ServedFile,
    change_line,
    error_response,
    file_line,
    metadata_line,
    ndjson,
    parse_range,
    protocol_line,
)


def test_lines_parse_with_the_official_client_classes() -> None:
    from delta_sharing.protocol import AddCdcFile, AddFile, FileAction, Metadata, Protocol

    served = ServedFile(url="http://h/f", id="i", size=10, expiration_ms=5, stats="{}")
    lines = [
        protocol_line(),
        metadata_line(
            table_id="t", name="n", description=None, schema_string="{}", configuration={}
        ),
        file_line(served),
        change_line("cdf", ServedFile("http://h/c", "c", 3, 5, version=2, timestamp_ms=9)),
    ]
    decoded = [json.loads(line) for line in ndjson(lines).splitlines()]
    assert Protocol.from_json(decoded[0]["protocol"]).min_reader_version == 1
    assert Metadata.from_json(decoded[1]["metaData"]).partition_columns == []
    assert AddFile.from_json(decoded[2]["file"]).size == 10
    change = FileAction.from_json(decoded[3])
    assert isinstance(change, AddCdcFile)
    assert (change.version, change.timestamp) == (2, 9)


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Unauthenticated("x"), 401, "UNAUTHENTICATED"),
        (Forbidden("x"), 403, "PERMISSION_DENIED"),
        (NotFound("x"), 404, "RESOURCE_DOES_NOT_EXIST"),
        (Invalid("x"), 400, "INVALID_PARAMETER_VALUE"),
        (BadRequest("x", code=UNSUPPORTED_OPERATION), 400, "UNSUPPORTED_OPERATION"),
    ],
)
def test_errors_use_the_protocols_codes(error: Exception, status: int, code: str) -> None:
    response = error_response(error)  # type: ignore[arg-type]
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == {"errorCode": code, "message": "x"}


@given(size=st.integers(min_value=1, max_value=10_000), data=st.data())
def test_satisfiable_ranges_select_what_python_slicing_selects(
    size: int, data: st.DataObject
) -> None:
    content = bytes(range(256)) * (size // 256 + 1)
    content = content[:size]
    first = data.draw(st.integers(min_value=0, max_value=size - 1))
    last = data.draw(st.integers(min_value=first, max_value=size + 100))
    selected = parse_range(f"bytes={first}-{last}", size)
    assert selected is not None
    assert content[selected[0] : selected[1] + 1] == content[first : last + 1]
    open_ended = parse_range(f"bytes={first}-", size)
    assert open_ended == (first, size - 1)
    suffix = data.draw(st.integers(min_value=1, max_value=size + 100))
    start, end = parse_range(f"bytes=-{suffix}", size) or (0, 0)
    assert content[start : end + 1] == content[-suffix:]


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=5-2", "bytes=-0"])
def test_unsatisfiable_ranges_are_refused(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


@pytest.mark.parametrize("header", [None, "items=0-1", "bytes=0-1,4-5", "bytes=x-y", "bytes"])
def test_unsupported_or_garbled_ranges_mean_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 10) is None
