"""Predicate hints over HTTP: a real hub skips the files that cannot match, the official client
still gets every matching row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import delta_sharing
import pytest

from civicshare.config import Settings
from tests.sharing.kit import City, build_city, save_profile, steward_profile
from tests.sharing.test_end_to_end import query_lines, table_url
from tests.support.hubproc import HubProcess, start_hub_process

pytestmark = pytest.mark.slow

BELOW_25 = {
    "op": "lessThan",
    "children": [
        {"op": "column", "name": "case_id", "valueType": "long"},
        {"op": "literal", "value": "25", "valueType": "long"},
    ],
}


@pytest.fixture
def small_files_hub(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubProcess]:
    monkeypatch.setenv("CIVICSHARE_SHARING_ROWS_PER_FILE", "10")
    with start_hub_process(settings) as proc:
        yield proc


def _files(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["file"]["id"]: line["file"] for line in lines if "file" in line}


def test_files_that_cannot_match_are_skipped_and_no_matching_row_is_lost(
    small_files_hub: HubProcess, tmp_path: Path
) -> None:
    city: City = build_city(small_files_hub, "skip")
    created = steward_profile(small_files_hub, city.agreement_id, name="skipping")
    with small_files_hub.client(created["profile_file"]["bearerToken"]) as client:
        every = _files(query_lines(client, city, {}))
        hinted = _files(query_lines(client, city, {"jsonPredicateHints": json.dumps(BELOW_25)}))
        legacy = _files(query_lines(client, city, {"predicateHints": ["case_id < 25"]}))
        garbled = _files(query_lines(client, city, {"jsonPredicateHints": "{not json"}))
    assert len(every) == 8  # the 79 rows of the latest version, in files of 10
    # Exactly the files whose smallest case_id is below 25 are kept.
    can_match = {
        file_id
        for file_id, file in every.items()
        if json.loads(file["stats"])["minValues"]["case_id"] < 25
    }
    assert set(hinted) == can_match
    assert set(legacy) == can_match
    assert set(garbled) == set(every)  # a hint the hub cannot read skips nothing
    assert len(hinted) < len(every)

    path = save_profile(tmp_path, created)
    url = table_url(path, city)
    everything = delta_sharing.load_as_pandas(url)
    filtered = delta_sharing.load_as_pandas(url, jsonPredicateHints=json.dumps(BELOW_25))
    expected = sorted(everything.loc[everything["case_id"] < 25, "case_id"])
    assert expected
    assert sorted(filtered.loc[filtered["case_id"] < 25, "case_id"]) == expected
    assert len(filtered) < len(everything)
