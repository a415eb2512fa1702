"""Parsing refuses everything that is not one plain SELECT over agency.dataset names."""

from __future__ import annotations

import pytest

from civicshare.errors import CivicshareError
from civicshare.query.memo import Memo
from civicshare.query.parse import TableRef, parse_query
from tests.query.battery import ATTACKS

PARSE_LEVEL = [
    (label, sql)
    for label, sql in ATTACKS
    if not label.startswith("other")  # refused later, at authorisation
]


@pytest.mark.parametrize(("label", "sql"), PARSE_LEVEL, ids=[label for label, _ in PARSE_LEVEL])
def test_attack_is_refused_with_a_4xx_before_anything_runs(label: str, sql: str) -> None:
    with pytest.raises(CivicshareError) as caught:
        parse_query(sql.format(own="health.cases", other="police.incidents"))
    assert 400 <= caught.value.status < 500, label


@pytest.mark.parametrize(
    ("sql", "refs"),
    [
        ("SELECT * FROM health.cases", [TableRef("health", "cases")]),
        ("SELECT * FROM Health.Cases@v3 c", [TableRef("health", "cases", 3)]),
        ("SELECT * FROM health.cases FOR VERSION AS OF 2", [TableRef("health", "cases", 2)]),
        (
            "WITH t AS (SELECT * FROM a.b) SELECT * FROM t JOIN c.d USING (x) "
            "UNION SELECT * FROM (SELECT * FROM e.f) s, LATERAL (SELECT * FROM g.h) l",
            [TableRef("a", "b"), TableRef("c", "d"), TableRef("e", "f"), TableRef("g", "h")],
        ),
        ("SELECT '@v3', x FROM a.b WHERE y = 'a.b@v2'", [TableRef("a", "b")]),
    ],
)
def test_every_table_reference_is_found(sql: str, refs: list[TableRef]) -> None:
    assert sorted(map(str, parse_query(sql).refs)) == sorted(map(str, refs))


def test_a_bad_version_is_a_400() -> None:
    with pytest.raises(CivicshareError) as caught:
        parse_query("SELECT * FROM a.b FOR TIMESTAMP AS OF '2020-01-01'")
    assert caught.value.code == "invalid_version"


def test_a_remembered_query_is_the_same_and_a_refused_one_is_refused_again() -> None:
    sql = "SELECT zip, count(*) FROM health.cases GROUP BY zip"
    first, again = parse_query(sql), parse_query(sql)
    assert (again.sql, again.sha256, again.refs) == (first.sql, first.sha256, first.refs)
    again.refs.append(TableRef("x", "y"))  # a caller's list is its own
    assert parse_query(sql).refs == [TableRef("health", "cases")]
    refused = "SELECT * FROM read_csv('/etc/passwd')"
    for _ in range(2):
        with pytest.raises(CivicshareError):
            parse_query(refused)


def test_the_memo_keeps_the_most_recently_used_entries() -> None:
    memo: Memo[str] = Memo(2)
    memo.put("a", "1")
    memo.put("b", "2")
    assert memo.get("a") == "1"  # "b" is now the least recently used
    memo.put("c", "3")
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == ("1", None, "3")
    assert len(memo) == 2
