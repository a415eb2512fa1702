"""Vectorised parsers agree with Python's own parsing, value by value."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicshare.errors import Invalid
from civicshare.ingest.parsing import (
    compile_format,
    parse_integer,
    parse_number,
    parse_temporal,
    parse_year,
)

FORMATS = ["%Y-%m-%d %H:%M:%S", "%m/%d/%Y %I:%M:%S %p", "%d/%m/%Y %H:%M", "%d %b %Y %H:%M:%S"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1)),
        min_size=1,
        max_size=30,
    ),
    st.sampled_from(FORMATS),
)
def test_datetimes_round_trip_through_their_format(values: list[dt.datetime], fmt: str) -> None:
    texts = [v.strftime(fmt) for v in values]
    parsed = parse_temporal(pa.array(texts), "datetime", fmt).to_pylist()
    assert parsed == [dt.datetime.strptime(t, fmt) for t in texts]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="0123456789/-: APM", max_size=22), min_size=1, max_size=30))
def test_parser_accepts_exactly_what_strptime_accepts(texts: list[str]) -> None:
    fmt = "%m/%d/%Y %I:%M:%S %p"
    parsed = parse_temporal(pa.array(texts), "datetime", fmt).to_pylist()
    for text, value in zip(texts, parsed, strict=True):
        try:
            expected: dt.datetime | None = dt.datetime.strptime(text, fmt)
        except ValueError:
            expected = None
        # strptime also accepts single-digit minutes/seconds; the Table Schema forms are 2-digit.
        if expected is not None and value is None:
            assert text != expected.strftime(fmt)
        else:
            assert value == expected, text


@pytest.mark.parametrize(
    ("kind", "fmt"), [("date", "%m/%d/%Y"), ("date", "%d/%m/%Y"), ("datetime", FORMATS[1])]
)
def test_a_year_of_fewer_than_four_digits_is_not_a_percent_y_year(kind: str, fmt: str) -> None:
    texts = ["12/31/99 10:30:00 AM", "31/12/99", "12/31/99", "12/31/0099 10:30:00 AM"]
    texts += ["31/12/0099", "12/31/0099"]
    parsed = parse_temporal(pa.array(texts), kind, fmt).to_pylist()
    for text, value in zip(texts, parsed, strict=True):
        try:
            expected: dt.datetime | dt.date | None = dt.datetime.strptime(text, fmt)
        except ValueError:
            expected = None
        if kind == "date" and expected is not None:
            expected = expected.date()
        assert value == expected, text  # 0099 written in full is still the year 99


@pytest.mark.parametrize(
    ("kind", "fmt", "texts"),
    [
        ("date", None, ["0000-01-01", "0001-01-01"]),
        ("date", "%d/%m/%Y", ["29/02/0000", "01/01/0001"]),
        ("datetime", None, ["0000-06-01T12:00:00", "0001-01-01T00:00:00"]),
    ],
)
def test_there_is_no_year_zero(kind: str, fmt: str | None, texts: list[str]) -> None:
    # A stored year 0 could not be read back by Python (datetime.date starts at year 1).
    parsed = parse_temporal(pa.array(texts), kind, fmt)
    assert parsed.null_count == 1
    assert parsed[0].is_valid is False
    assert parsed.to_pylist()[1].year == 1


def test_impossible_calendar_dates_are_rejected() -> None:
    values = pa.array(
        [
            "2017-02-30",
            "2016-02-29",
            "2017-02-29",
            "1900-02-29",
            "2000-02-29",
            "2017-13-01",
            "2017-04-31",
        ]
    )
    assert parse_temporal(values, "date", None).to_pylist() == [
        None,
        dt.date(2016, 2, 29),
        None,
        None,
        dt.date(2000, 2, 29),
        None,
        None,
    ]


def test_iso_datetimes_with_fractions_and_offsets() -> None:
    values = pa.array(
        [
            "2025-10-01 00:00:00.000",
            "2012-11-20T07:50:59.5",
            "2014-01-01T00:00:00+02:00",
            "2014-01-01T25:00:00",
        ]
    )
    assert parse_temporal(values, "datetime", "default").to_pylist() == [
        dt.datetime(2025, 10, 1),
        dt.datetime(2012, 11, 20, 7, 50, 59, 500000),
        dt.datetime(2013, 12, 31, 22, 0),
        None,
    ]


def test_unsupported_directive_is_refused() -> None:
    with pytest.raises(Invalid) as caught:
        compile_format("%Q")
    assert caught.value.code == "unsupported_format"


INT64 = 2**63


@given(
    st.lists(
        st.one_of(
            st.integers(-(10**17), 10**17).map(str),
            st.integers(-2 * INT64, 2 * INT64).map(str),
            st.text(max_size=6),
        ),
        max_size=40,
    )
)
def test_integers_match_int(texts: list[str]) -> None:
    parsed = parse_integer(pa.array(texts, pa.string())).to_pylist()
    for text, value in zip(texts, parsed, strict=True):
        plain = re.fullmatch(r"[+-]?[0-9]+", text) is not None and -INT64 <= int(text) < INT64
        assert value == (int(text) if plain else None), text


def test_integers_reach_the_int64_bounds() -> None:
    # 10^18 and above were refused (at most 18 digits), though int64 holds them.
    texts = [
        "1000000000000000000",
        "9223372036854775807",
        "-9223372036854775808",
        "+0009223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "10000000000000000000",
    ]
    assert parse_integer(pa.array(texts)).to_pylist() == [
        10**18,
        INT64 - 1,
        -INT64,
        INT64 - 1,
        None,
        None,
        None,
    ]
    # One refused value sends the whole column down the checked path: same answers.
    assert parse_integer(pa.array(["9223372036854775807", "x"])).to_pylist() == [INT64 - 1, None]


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=30))
def test_numbers_match_float(values: list[float]) -> None:
    texts = [repr(v) for v in values]
    assert parse_number(pa.array(texts, pa.string())).to_pylist() == values


def test_integers_and_years_may_carry_a_plus_sign_but_not_hex() -> None:
    # Arrow's own cast refuses "+7" and accepts "0x1F"; the Table Schema rule is the reverse.
    assert parse_integer(pa.array(["+7", "-7", "0x1F", "12"])).to_pylist() == [7, -7, None, 12]
    assert parse_integer(pa.array(["0X1F", "3"])).to_pylist() == [None, 3]
    assert parse_year(pa.array(["+2024", "1999"])).to_pylist() == [2024, 1999]


def test_rolled_over_days_are_refused_in_any_month() -> None:
    written = ["02/29/2023", "02/30/2024", "02/31/2024", "04/31/2024", "11/31/2024", "12/31/2024"]
    parsed = parse_temporal(pa.array(written), "date", "%m/%d/%Y").to_pylist()
    assert parsed == [None, None, None, None, None, dt.date(2024, 12, 31)]
    iso = parse_temporal(pa.array(["2024-02-29", "2023-02-29", "2024-1-5"]), "date", None)
    assert iso.to_pylist() == [dt.date(2024, 2, 29), None, dt.date(2024, 1, 5)]
