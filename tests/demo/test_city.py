"""The sample-city generator: deterministic, traceable, and varied at the rates it declares."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from functools import cache
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civicshare.demo.city import (
    CITY_AS_OF,
    MOVED_SHARE,
    NICKNAMES,
    RECORD_SET_SPECS,
    RECORDS_FROM,
    City,
    RecordSet,
    Variation,
    generate_city,
)
from civicshare.demo.service import DEMO_AGENCIES
from civicshare.demo.vocabulary import ZIP_AREAS

SIZES = st.integers(min_value=50, max_value=2_500)
SEEDS = st.integers(min_value=0, max_value=2**32)
SF_ZIPS = {area.zip for area in ZIP_AREAS}


@cache
def city(people: int, seed: int) -> City:
    return generate_city(people=people, seed=seed)


def test_every_demo_agency_holds_person_level_records() -> None:
    agencies = {spec.agency for spec in RECORD_SET_SPECS}
    assert agencies == {agency.slug for agency in DEMO_AGENCIES}


@settings(max_examples=8, deadline=None)
@given(people=SIZES, seed=SEEDS)
def test_same_seed_and_size_give_the_same_city(people: int, seed: int) -> None:
    first, second = generate_city(people=people, seed=seed), generate_city(people=people, seed=seed)
    assert first.residents.equals(second.residents)
    for one, other in zip(first.record_sets, second.record_sets, strict=True):
        assert one.table.equals(other.table)
        assert one.ground_truth.equals(other.ground_truth)
        assert one.table_schema == other.table_schema


def test_another_seed_gives_another_city() -> None:
    one, other = city(500, 1), city(500, 2)
    assert not one.residents.equals(other.residents)
    assert one.residents.num_rows == other.residents.num_rows == 500


def test_a_city_needs_residents() -> None:
    with pytest.raises(ValueError, match="at least one resident"):
        generate_city(people=0, seed=1)


# -- every record is about a generated person, and differs from the truth only as labelled ----


def letters(text: str) -> str:
    return "".join(ch for ch in text.casefold() if ch.isalpha())


def osa_distance(a: str, b: str) -> int:
    """Optimal string alignment distance (edits plus adjacent transpositions)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[i - 2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


ABBREVIATIONS = {"STREET": "ST", "AVENUE": "AVE", "BOULEVARD": "BLVD", "DRIVE": "DR"}


def normal_address(address: str) -> str:
    words = address.upper().replace(" APT ", " #").split()
    return " ".join(ABBREVIATIONS.get(word, word) for word in words)


def identity_columns(record_set: RecordSet) -> dict[str, str]:
    """Which column holds which identity attribute, read from the schema's pii kinds."""
    return {
        spec["pii"]: spec["name"]
        for spec in record_set.table_schema["fields"]
        if spec.get("pii") in {"given_name", "family_name", "dob", "address", "zip", "national_id"}
    }


def check_name(observed: str, truth: str, alternatives: set[str], typo: bool) -> bool:
    """True if observed is the truth or an allowed alternative, or one keying error away."""
    candidates = {name.casefold() for name in {truth, *alternatives}}
    if observed.casefold() in candidates:
        return True
    return typo and any(osa_distance(observed.casefold(), c) == 1 for c in candidates)


def check_record(
    record: dict[str, Any], person: dict[str, Any], labels: set[str], cols: dict[str, str]
) -> None:
    typo = Variation.name_typo in labels
    nicknames = (
        set(NICKNAMES.get(person["given_name"], ())) if Variation.nickname in labels else set()
    )
    given_ok = check_name(record[cols["given_name"]], person["given_name"], nicknames, False)
    family_observed = record[cols["family_name"]]
    if Variation.family_name_format in labels:
        assert family_observed.casefold() != person["family_name"].casefold()
        true_letters, seen = letters(person["family_name"]), letters(family_observed)
        # A shortened or re-punctuated surname, possibly with a keying error on top.
        prefixes = {true_letters[:n] for n in range(1, len(true_letters) + 1)}
        assert (
            seen in prefixes
            or "saint" in seen
            or (typo and any(osa_distance(seen, prefix) == 1 for prefix in prefixes))
        )
        family_ok = True
    else:
        family_ok = check_name(family_observed, person["family_name"], set(), False)
    if typo:
        # Exactly one of the two names carries one keying error.
        given_typo = check_name(record[cols["given_name"]], person["given_name"], nicknames, True)
        family_typo = Variation.family_name_format in labels or check_name(
            family_observed, person["family_name"], set(), True
        )
        assert (given_ok and family_typo) or (family_ok and given_typo)
        assert not (given_ok and family_ok and Variation.family_name_format not in labels)
    else:
        assert given_ok
        assert family_ok
    if Variation.nickname in labels and not typo:
        assert record[cols["given_name"]].casefold() != person["given_name"].casefold()

    if "dob" in cols:
        dob, true_dob = record[cols["dob"]], person["date_of_birth"]
        if Variation.dob_missing in labels:
            assert dob is None
        elif Variation.dob_day_month_swapped in labels:
            assert dob != true_dob
            assert (dob.year, dob.month, dob.day) == (true_dob.year, true_dob.day, true_dob.month)
        else:
            assert dob == true_dob

    zip_code = record[cols["zip"]]
    if Variation.address_elsewhere in labels:
        assert zip_code in SF_ZIPS
    elif Variation.previous_address in labels:
        assert person["moved_on"] is not None
        assert zip_code == person["previous_zip"]
        if "address" in cols:
            assert normal_address(record[cols["address"]]) == normal_address(
                person["previous_address"]
            )
    else:
        assert zip_code == person["zip"]
        if "address" in cols:
            assert normal_address(record[cols["address"]]) == normal_address(person["address"])

    if "national_id" in cols and record[cols["national_id"]] is not None:
        observed_id, true_id = record[cols["national_id"]], person["national_id"]
        differing = sum(a != b for a, b in zip(observed_id, true_id, strict=True))
        assert differing == (1 if Variation.national_id_typo in labels else 0)


@settings(max_examples=6, deadline=None)
@given(people=SIZES, seed=SEEDS)
def test_every_record_traces_to_a_generated_person_as_labelled(people: int, seed: int) -> None:
    generated = city(people, seed)
    residents = generated.residents.to_pylist()
    for record_set in generated.record_sets:
        assert "person_id" not in record_set.table.column_names
        assert record_set.ground_truth.column_names == [record_set.key, "person_id", "variations"]
        assert record_set.ground_truth.column(record_set.key).equals(
            record_set.table.column(record_set.key)
        )
        cols = identity_columns(record_set)
        truth = record_set.ground_truth.to_pylist()
        for record, row in zip(record_set.table.to_pylist(), truth, strict=True):
            assert 0 < row["person_id"] <= people
            person = residents[row["person_id"] - 1]
            assert person["person_id"] == row["person_id"]
            labels = set(row["variations"])
            assert labels <= {variation.value for variation in Variation}
            check_record(record, person, labels, cols)


def test_residents_look_like_a_city() -> None:
    residents = city(3_000, 11).residents.to_pylist()
    assert {person["zip"] for person in residents} <= SF_ZIPS
    assert len({person["national_id"] for person in residents}) == len(residents)
    for person in residents:
        assert re.fullmatch(r"9\d\d-\d\d-\d{4}", person["national_id"])
        assert re.fullmatch(r"(415|628)555\d{4}", person["phone"])
        assert dt.date(1920, 1, 1) < person["date_of_birth"] <= CITY_AS_OF
        if person["moved_on"] is not None:
            assert RECORDS_FROM < person["moved_on"] < CITY_AS_OF
            assert person["previous_address"]
            assert person["previous_zip"] in SF_ZIPS
        if person["email"]:
            assert person["email"].split("@")[1] in {"example.com", "example.org", "example.net"}


# -- variation rates ---------------------------------------------------------------------------


def within(count: int, trials: int, rate: float) -> bool:
    """Is count/trials a plausible draw at this rate? (4.5 standard deviations)"""
    if trials == 0:
        return count == 0
    spread = 4.5 * math.sqrt(rate * (1 - rate) / trials) + 1 / trials
    return abs(count / trials - rate) <= spread


def applicable(
    record_set: RecordSet, person: dict[str, Any], record: dict[str, Any], labels: set[str]
) -> dict[Variation, bool]:
    cols = identity_columns(record_set)
    dob = person["date_of_birth"]
    return {
        Variation.name_typo: True,
        Variation.dob_missing: True,
        Variation.nickname: person["given_name"] in NICKNAMES,
        Variation.family_name_format: any(ch in person["family_name"] for ch in "' .-"),
        Variation.dob_day_month_swapped: Variation.dob_missing not in labels
        and dob.day <= 12
        and dob.day != dob.month,
        Variation.national_id_typo: "national_id" in cols
        and record[cols["national_id"]] is not None,
    }


@settings(max_examples=3, deadline=None)
@given(people=st.integers(min_value=8_000, max_value=14_000), seed=SEEDS)
def test_variation_rates_stay_within_bounds(people: int, seed: int) -> None:
    generated = city(people, seed)
    residents = generated.residents.to_pylist()
    moved = sum(person["moved_on"] is not None for person in residents)
    assert within(moved, people, MOVED_SHARE)
    for record_set in generated.record_sets:
        trials: Counter[Variation] = Counter()
        hits: Counter[Variation] = Counter()
        for record, row in zip(
            record_set.table.to_pylist(), record_set.ground_truth.to_pylist(), strict=True
        ):
            labels = set(row["variations"])
            for variation, possible in applicable(
                record_set, residents[row["person_id"] - 1], record, labels
            ).items():
                trials[variation] += possible
                hits[variation] += possible and variation in labels
        for variation in trials:
            rate = record_set.rates.rate(variation)
            assert within(hits[variation], trials[variation], rate), (
                record_set.ref,
                variation,
                hits[variation],
                trials[variation],
                rate,
            )


def test_the_same_people_appear_in_several_agencies() -> None:
    generated = city(4_000, 5)
    seen: Counter[int] = Counter()
    for record_set in generated.record_sets:
        assert record_set.table.num_rows > 0
        seen.update(set(record_set.ground_truth.column("person_id").to_pylist()))
    in_two = sum(1 for count in seen.values() if count >= 2)
    in_three = sum(1 for count in seen.values() if count >= 3)
    assert in_two > 200
    assert in_three > 20


# -- the schemas describe the tables ------------------------------------------------------------

ARROW_FOR = {
    "string": pa.string(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
}


@pytest.mark.parametrize("ref", [f"{spec.agency}.{spec.slug}" for spec in RECORD_SET_SPECS])
def test_tables_satisfy_their_table_schema(ref: str) -> None:
    record_set = city(3_000, 3).record_set(ref)
    schema = record_set.table_schema
    fields = schema["fields"]
    assert [spec["name"] for spec in fields] == record_set.table.column_names
    assert schema["primaryKey"] == [record_set.key]
    classifications = {spec["classification"] for spec in fields}
    assert classifications <= {"public", "internal", "personal", "sensitive"}
    assert {"personal", "sensitive"} & classifications, "person-level data must be protected"
    for spec in fields:
        column = record_set.table.column(spec["name"])
        assert column.type == ARROW_FOR[spec["type"]]
        values = column.to_pylist()
        rules = spec.get("constraints", {})
        if spec.get("pii") in {
            "given_name",
            "family_name",
            "dob",
            "address",
            "phone",
            "email",
            "national_id",
        }:
            assert spec["classification"] in {"personal", "sensitive"}, spec["name"]
        if rules.get("required"):
            assert None not in values, spec["name"]
        if rules.get("unique"):
            assert len(set(values)) == len(values), spec["name"]
        present = [value for value in values if value is not None]
        if "enum" in rules:
            assert set(present) <= set(rules["enum"]), spec["name"]
        if "pattern" in rules:
            assert all(re.fullmatch(rules["pattern"], value) for value in present), spec["name"]
        if "minimum" in rules:
            assert all(value >= rules["minimum"] for value in present), spec["name"]
        if "maximum" in rules:
            assert all(value <= rules["maximum"] for value in present), spec["name"]


def test_records_are_dated_in_the_persons_lifetime_with_matching_ages() -> None:
    generated = city(3_000, 9)
    residents = generated.residents.to_pylist()

    def age(born: dt.date, day: dt.date) -> int:
        return day.year - born.year - ((day.month, day.day) < (born.month, born.day))

    cases = generated.record_set("health.cases")
    for record, row in zip(cases.table.to_pylist(), cases.ground_truth.to_pylist(), strict=True):
        born = residents[row["person_id"] - 1]["date_of_birth"]
        assert born <= record["report_date"] <= CITY_AS_OF
        low, _, high = record["age_band"].partition("-")
        years = age(born, record["report_date"])
        assert int(low.rstrip("+")) <= years <= int(high or 200)
    ems = generated.record_set("fire_ems.ems_incidents")
    for record, row in zip(ems.table.to_pylist(), ems.ground_truth.to_pylist(), strict=True):
        born = residents[row["person_id"] - 1]["date_of_birth"]
        years = age(born, record["received_at"].date())
        if record["patient_date_of_birth"] is None:
            assert abs(record["patient_age"] - years) <= 5  # the crew's estimate
        else:
            assert record["patient_age"] == years
