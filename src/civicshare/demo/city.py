"""The sample city: a deterministic population and the person-level records of its agencies.

``generate_city(people=N, seed=S)`` always returns the same city for the same ``(N, S)``. The
residents are the *ground truth*: who really exists, with their true names, dates of birth and
addresses. Each agency then holds its own records about some of them, as real agencies do, with
realistic variation (nicknames, typos, surnames written differently, a previous address, a
missing or day/month-swapped date of birth), so that privacy-preserving linkage can be tested.

What an agency holds is ``RecordSet.table`` (with its Frictionless Table Schema). Which resident
a record is really about, and which variations were applied, is kept apart in
``RecordSet.ground_truth``: it is for tests and evaluation only and is never loaded into a hub.

Generation draws each column with one ``Random.choices`` call where it can, and touches each
record once; 20,000 residents and their ~20,000 records take well under a second.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow as pa

from civicshare.demo.vocabulary import (
    EMAIL_DOMAINS,
    FAMILY_NAMES,
    GIVEN_NAMES,
    HOSPITALS,
    STREET_SUFFIXES,
    ZIP_AREAS,
    GivenName,
    ZipArea,
)

# Fixed dates, not today's: the same seed must give the same city on any day.
CITY_AS_OF = dt.date(2026, 11, 1)
RECORDS_FROM = dt.date(2025, 1, 1)
RECORD_DAYS = (CITY_AS_OF - RECORDS_FROM).days
# Share of residents who moved home inside the record period (their older records show the
# previous address).
MOVED_SHARE = 0.12

AGE_BANDS: tuple[tuple[str, int, int], ...] = (
    ("0-4", 0, 4),
    ("5-17", 5, 17),
    ("18-24", 18, 24),
    ("25-34", 25, 34),
    ("35-44", 35, 44),
    ("45-54", 45, 54),
    ("55-64", 55, 64),
    ("65-74", 65, 74),
    ("75+", 75, 99),
)
# San Francisco's age pyramid (2020 census, rounded), one weight per band above.
AGE_BAND_WEIGHTS = (45, 100, 80, 200, 170, 130, 120, 90, 65)


class Variation(enum.StrEnum):
    """How a record's copy of a person can differ from the truth."""

    nickname = "nickname"
    name_typo = "name_typo"
    family_name_format = "family_name_format"
    previous_address = "previous_address"
    address_elsewhere = "address_elsewhere"
    dob_missing = "dob_missing"
    dob_day_month_swapped = "dob_day_month_swapped"
    national_id_typo = "national_id_typo"


@dataclass(frozen=True)
class VariationRates:
    """Per-record probabilities; conditional ones apply only where the variation is possible."""

    nickname: float = 0.10  # given names that have a nickname
    name_typo: float = 0.04
    family_name_format: float = 0.40  # surnames with an apostrophe, space, dot or hyphen
    dob_missing: float = 0.03
    dob_day_month_swapped: float = 0.03  # dates whose day is 1..12 and differs from the month
    national_id_typo: float = 0.01  # records that carry a national id

    def rate(self, variation: Variation) -> float:
        return float(getattr(self, variation.value))


# -- the residents (ground truth) --------------------------------------------------------------


def _age(born: dt.date, day: dt.date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@dataclass
class Residents:
    """The true population, column by column (index = person_id - 1)."""

    given_name: list[str]
    family_name: list[str]
    sex: list[str]
    date_of_birth: list[dt.date]
    address: list[str]
    zip: list[str]
    moved_on: list[dt.date | None]
    previous_address: list[str | None]
    previous_zip: list[str | None]
    phone: list[str]
    national_id: list[str]
    email: list[str | None]
    need: list[float]  # latent need for public services: drives who appears where
    age_now: list[int] = field(default_factory=list)  # age on CITY_AS_OF

    def __post_init__(self) -> None:
        self.age_now = [_age(born, CITY_AS_OF) for born in self.date_of_birth]

    def __len__(self) -> int:
        return len(self.given_name)

    def age_on(self, index: int, day: dt.date) -> int:
        return _age(self.date_of_birth[index], day)

    def address_on(self, index: int, day: dt.date) -> tuple[str, str, bool]:
        """(address, zip, is_previous) where the person lived on ``day``."""
        moved = self.moved_on[index]
        if moved is not None and day < moved:
            previous, previous_zip = self.previous_address[index], self.previous_zip[index]
            assert previous is not None
            assert previous_zip is not None
            return previous, previous_zip, True
        return self.address[index], self.zip[index], False

    def table(self) -> pa.Table:
        columns = {
            "person_id": pa.array(range(1, len(self) + 1), pa.int64()),
            **{
                name: getattr(self, name)
                for name in (
                    "given_name",
                    "family_name",
                    "sex",
                    "date_of_birth",
                    "address",
                    "zip",
                    "moved_on",
                    "previous_address",
                    "previous_zip",
                    "phone",
                    "national_id",
                    "email",
                )
            },
        }
        return pa.table(columns, schema=RESIDENTS_ARROW_SCHEMA)


RESIDENTS_ARROW_SCHEMA = pa.schema(
    [
        ("person_id", pa.int64()),
        ("given_name", pa.string()),
        ("family_name", pa.string()),
        ("sex", pa.string()),
        ("date_of_birth", pa.date32()),
        ("address", pa.string()),
        ("zip", pa.string()),
        ("moved_on", pa.date32()),
        ("previous_address", pa.string()),
        ("previous_zip", pa.string()),
        ("phone", pa.string()),
        ("national_id", pa.string()),
        ("email", pa.string()),
    ]
)


T = TypeVar("T")


def _randrange(rng: random.Random, start: int, stop: int | None = None) -> int:
    """Like ``Random.randrange``, several times faster (its exactness is not needed here)."""
    if stop is None:
        start, stop = 0, start
    return start + int(rng.random() * (stop - start))


def _pick(rng: random.Random, items: Sequence[T]) -> T:
    return items[int(rng.random() * len(items))]


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


_FEMALE = [name for name in GIVEN_NAMES if name.sex == "F"]
_MALE = [name for name in GIVEN_NAMES if name.sex == "M"]
_FEMALE_CUM = _cumulative([name.weight for name in _FEMALE])
_MALE_CUM = _cumulative([name.weight for name in _MALE])
_FAMILY = [name for name, _ in FAMILY_NAMES]
_FAMILY_CUM = _cumulative([weight for _, weight in FAMILY_NAMES])
_ZIP_CUM = _cumulative([area.population for area in ZIP_AREAS])
_AGE_CUM = _cumulative(AGE_BAND_WEIGHTS)
NICKNAMES: dict[str, tuple[str, ...]] = {
    name.name: name.nicknames for name in GIVEN_NAMES if name.nicknames
}
_ZIP_DISTRICT = {area.zip: area.police_district for area in ZIP_AREAS}


def generate_residents(rng: random.Random, people: int) -> Residents:
    sexes = rng.choices("FMX", cum_weights=(498, 997, 1000), k=people)
    female = rng.choices(_FEMALE, cum_weights=_FEMALE_CUM, k=people)
    male = rng.choices(_MALE, cum_weights=_MALE_CUM, k=people)
    given: list[GivenName] = [
        f if s == "F" else m if s == "M" else (f if rng.random() < 0.5 else m)
        for s, f, m in zip(sexes, female, male, strict=True)
    ]
    family = rng.choices(_FAMILY, cum_weights=_FAMILY_CUM, k=people)
    bands = rng.choices(AGE_BANDS, cum_weights=_AGE_CUM, k=people)
    dobs = [
        CITY_AS_OF - dt.timedelta(days=_randrange(rng, low * 365 + 1, (high + 1) * 365))
        for _, low, high in bands
    ]
    areas = rng.choices(ZIP_AREAS, cum_weights=_ZIP_CUM, k=people)
    moved = [rng.random() < MOVED_SHARE for _ in range(people)]
    old_areas = rng.choices(ZIP_AREAS, cum_weights=_ZIP_CUM, k=people)
    # National ids start with 9: the SSN area numbers 900-999 are never issued to a person.
    ids = rng.sample(range(10**8), people)
    return Residents(
        given_name=[name.name for name in given],
        family_name=family,
        sex=sexes,
        date_of_birth=dobs,
        address=[_street_address(rng, area) for area in areas],
        zip=[area.zip for area in areas],
        moved_on=[
            RECORDS_FROM + dt.timedelta(days=_randrange(rng, 30, RECORD_DAYS - 30)) if m else None
            for m in moved
        ],
        previous_address=[
            _street_address(rng, area) if m else None
            for m, area in zip(moved, old_areas, strict=True)
        ],
        previous_zip=[area.zip if m else None for m, area in zip(moved, old_areas, strict=True)],
        # 555 numbers are the ones film and fiction use: none of these rings anyone.
        phone=[
            f"{_pick(rng, ('415', '628'))}555{_randrange(rng, 10000):04d}" for _ in range(people)
        ],
        national_id=[format_national_id(f"9{value:08d}") for value in ids],
        email=[
            _email(rng, g.name, f) if rng.random() < 0.7 else None
            for g, f in zip(given, family, strict=True)
        ],
        # Skewed towards 0: most residents rarely need a public service, a few often do.
        need=[rng.random() ** 2.5 for _ in range(people)],
    )


def _street_address(rng: random.Random, area: ZipArea) -> str:
    line = f"{_randrange(rng, 1, 4000)} {_pick(rng, area.streets)}"
    if rng.random() < 0.45:
        line += f" Apt {_randrange(rng, 1, 40)}"
    return line


def _email(rng: random.Random, given: str, family: str) -> str:
    family_key = "".join(ch for ch in family.lower() if ch.isalpha())
    local = _pick(
        rng, (f"{given.lower()}.{family_key}", f"{given[0].lower()}{family_key}", family_key)
    )
    return (
        f"{local}{_randrange(rng, 100) if rng.random() < 0.5 else ''}@{_pick(rng, EMAIL_DOMAINS)}"
    )


# -- what an agency's copy of a person looks like -----------------------------------------------


@dataclass
class Observed:
    """One record's view of a person, after variation."""

    given_name: str
    family_name: str
    date_of_birth: dt.date | None
    address: str
    zip: str
    national_id: str | None  # formatted; None when the record carries none
    variations: list[str] = field(default_factory=list)


_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
# A slipped finger hits the key beside the intended one on the same row.
_KEYBOARD_NEIGHBOURS = {
    row[i]: row[max(0, i - 1) : i] + row[i + 1 : i + 2]
    for row in _KEY_ROWS
    for i in range(len(row))
}


def typo(rng: random.Random, word: str) -> str:
    """One keying error (transposition, deletion, doubling or a neighbouring key); never a no-op."""
    for _ in range(20):
        i = _randrange(rng, len(word))
        kind = _randrange(rng, 4)
        if kind == 0 and i + 1 < len(word):
            candidate = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        elif kind == 1 and len(word) > 2:
            candidate = word[:i] + word[i + 1 :]
        elif kind == 2:
            candidate = word[:i] + word[i] + word[i:]
        else:
            lower = word[i].lower()
            if lower not in _KEYBOARD_NEIGHBOURS:
                continue
            swap = _pick(rng, _KEYBOARD_NEIGHBOURS[lower])
            candidate = word[:i] + (swap.upper() if word[i].isupper() else swap) + word[i + 1 :]
        if candidate != word:
            return candidate
    return word + word[-1]


def family_name_variant(rng: random.Random, family: str) -> str:
    """The surname as another system stores it: O'Brien -> OBrien, Dela Cruz -> Delacruz."""
    options = {
        family.replace("'", "").replace(".", ""),
        family.replace(" ", "").replace("-", ""),
        family.replace(" ", "-"),
        family.split(" ")[0].split("-")[0],
        family.replace("St. ", "Saint "),
    }
    options.discard(family)
    return _pick(rng, sorted(options))


def has_family_name_format(family: str) -> bool:
    return any(ch in family for ch in "' .-")


def can_swap_day_month(day: dt.date) -> bool:
    return day.day <= 12 and day.day != day.month


def _national_id_typo(rng: random.Random, national_id: str) -> str:
    i = _pick(rng, [i for i, ch in enumerate(national_id) if ch.isdigit() and i > 0])
    digit = str((int(national_id[i]) + _randrange(rng, 1, 10)) % 10)
    return national_id[:i] + digit + national_id[i + 1 :]


def observe(
    rng: random.Random,
    residents: Residents,
    index: int,
    on: dt.date,
    rates: VariationRates,
    *,
    with_national_id: bool = False,
) -> Observed:
    """How an agency recorded resident ``index`` on ``on``, with this agency's error rates."""
    variations: list[str] = []
    given = residents.given_name[index]
    family = residents.family_name[index]
    if given in NICKNAMES and rng.random() < rates.nickname:
        given = _pick(rng, NICKNAMES[given])
        variations.append(Variation.nickname)
    if has_family_name_format(family) and rng.random() < rates.family_name_format:
        family = family_name_variant(rng, family)
        variations.append(Variation.family_name_format)
    if rng.random() < rates.name_typo:
        if rng.random() < 0.5:
            given = typo(rng, given)
        else:
            family = typo(rng, family)
        variations.append(Variation.name_typo)
    dob: dt.date | None = residents.date_of_birth[index]
    assert dob is not None
    if rng.random() < rates.dob_missing:
        dob = None
        variations.append(Variation.dob_missing)
    elif can_swap_day_month(dob) and rng.random() < rates.dob_day_month_swapped:
        dob = dob.replace(month=dob.day, day=dob.month)
        variations.append(Variation.dob_day_month_swapped)
    address, zip_code, previous = residents.address_on(index, on)
    if previous:
        variations.append(Variation.previous_address)
    national_id = None
    if with_national_id:
        national_id = residents.national_id[index]
        if rng.random() < rates.national_id_typo:
            national_id = _national_id_typo(rng, national_id)
            variations.append(Variation.national_id_typo)
    return Observed(given, family, dob, address, zip_code, national_id, variations)


def spell_out_suffix(address: str) -> str:
    """'2145 Mission St Apt 4' -> '2145 Mission Street #4' (how some systems store it)."""
    words = address.replace(" Apt ", " #").split(" ")
    return " ".join(STREET_SUFFIXES.get(word, word) for word in words)


def format_phone(digits: str, style: str) -> str:
    area, exchange, line = digits[:3], digits[3:6], digits[6:]
    return {
        "us": f"({area}) {exchange}-{line}",
        "dashes": f"{area}-{exchange}-{line}",
        "e164": f"+1{digits}",
        "digits": digits,
    }[style]


def format_national_id(digits: str) -> str:
    return f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"


def age_band(age: int) -> str:
    for label, low, high in AGE_BANDS:
        if low <= age <= high:
            return label
    return AGE_BANDS[-1][0]


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _day(rng: random.Random, born: dt.date) -> dt.date:
    """A day in the record period on which the person was alive."""
    first = max(RECORDS_FROM, born)
    return first + dt.timedelta(days=_randrange(rng, (CITY_AS_OF - first).days))


def _moment(rng: random.Random, day: dt.date) -> dt.datetime:
    # More calls in the day than at night: draw the hour from a daytime-heavy triangle.
    hour = int(rng.triangular(0, 24, 15)) % 24
    return dt.datetime(day.year, day.month, day.day, hour, _randrange(rng, 60), _randrange(rng, 60))


# -- the record sets -----------------------------------------------------------------------------

FieldSpec = dict[str, Any]


def _field(
    name: str,
    type_: str,
    title: str,
    *,
    classification: str = "internal",
    pii: str | None = None,
    required: bool = False,
    enum_values: Sequence[str] | None = None,
    description: str | None = None,
    **constraints: Any,
) -> FieldSpec:
    spec: FieldSpec = {"name": name, "type": type_, "title": title}
    if description:
        spec["description"] = description
    rules: dict[str, Any] = dict(constraints)
    if required:
        rules["required"] = True
    if enum_values is not None:
        rules["enum"] = list(enum_values)
    if rules:
        spec["constraints"] = rules
    spec["classification"] = classification
    if pii:
        spec["pii"] = pii
    return spec


def _given(title: str = "Given name") -> FieldSpec:
    return _field("given_name", "string", title, classification="personal", pii="given_name")


def _family(title: str = "Family name") -> FieldSpec:
    return _field("family_name", "string", title, classification="personal", pii="family_name")


def _dob() -> FieldSpec:
    return _field("date_of_birth", "date", "Date of birth", classification="personal", pii="dob")


def _sex() -> FieldSpec:
    return _field(
        "sex", "string", "Sex", classification="personal", pii="sex", enum_values=("F", "M", "X")
    )


def _address(title: str = "Home address") -> FieldSpec:
    return _field("address", "string", title, classification="personal", pii="address")


def _zip() -> FieldSpec:
    return _field(
        "zip", "string", "ZIP code", pii="zip", pattern="^9[0-9]{4}$", description="5-digit ZIP"
    )


def _phone() -> FieldSpec:
    return _field("phone", "string", "Phone number", classification="personal", pii="phone")


def _national_id() -> FieldSpec:
    return _field(
        "national_id",
        "string",
        "National identifier",
        classification="sensitive",
        pii="national_id",
        pattern="^9[0-9]{2}-[0-9]{2}-[0-9]{4}$",
        description="Social-security-style number as given by the person (may be missing)",
    )


def _schema(fields: list[FieldSpec], key: str) -> dict[str, Any]:
    return {"fields": fields, "primaryKey": [key], "missingValues": [""]}


ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
}


def arrow_schema(table_schema: dict[str, Any]) -> pa.Schema:
    return pa.schema(
        [
            pa.field(
                spec["name"],
                ARROW_TYPES[spec["type"]],
                nullable=not spec.get("constraints", {}).get("required", False),
            )
            for spec in table_schema["fields"]
        ]
    )


@dataclass(frozen=True)
class RecordSet:
    """One agency's person-level dataset, and (apart) the truth about whom each row is about."""

    agency: str
    slug: str
    title: str
    description: str
    theme: str
    keywords: tuple[str, ...]
    visibility: str
    key: str
    table: pa.Table
    table_schema: dict[str, Any]
    rates: VariationRates
    # GROUND TRUTH — for tests and linkage evaluation only; never shared or loaded into a hub.
    # Columns: the record key, person_id, variations (list of Variation values).
    ground_truth: pa.Table

    @property
    def ref(self) -> str:
        return f"{self.agency}.{self.slug}"


@dataclass(frozen=True)
class City:
    seed: int
    people: int
    # GROUND TRUTH: the true population register (person_id and the true identity).
    residents: pa.Table
    record_sets: tuple[RecordSet, ...]

    def record_set(self, ref: str) -> RecordSet:
        for record_set in self.record_sets:
            if record_set.ref == ref:
                return record_set
        raise KeyError(ref)

    @property
    def record_count(self) -> int:
        return sum(record_set.table.num_rows for record_set in self.record_sets)


@dataclass
class _Builder:
    """Accumulates one record set's rows column by column, with their ground truth."""

    key: str
    columns: dict[str, list[Any]] = field(default_factory=dict)
    person_ids: list[int] = field(default_factory=list)
    variations: list[list[str]] = field(default_factory=list)

    def add(self, index: int, variations: list[str], **values: Any) -> None:
        for name, value in values.items():
            self.columns.setdefault(name, []).append(value)
        self.person_ids.append(index + 1)
        self.variations.append(variations)

    def build(
        self, spec: RecordSetSpec, rates: VariationRates, table_schema: dict[str, Any]
    ) -> RecordSet:
        schema = arrow_schema(table_schema)
        table = pa.table({name: self.columns.get(name, []) for name in schema.names}, schema=schema)
        truth = pa.table(
            {
                self.key: table.column(self.key),
                "person_id": pa.array(self.person_ids, pa.int64()),
                "variations": pa.array(self.variations, pa.list_(pa.string())),
            }
        )
        return RecordSet(
            agency=spec.agency,
            slug=spec.slug,
            title=spec.title,
            description=spec.description,
            theme=spec.theme,
            keywords=spec.keywords,
            visibility=spec.visibility,
            key=self.key,
            table=table,
            table_schema=table_schema,
            rates=rates,
            ground_truth=truth,
        )


Generator = Callable[[random.Random, Residents, VariationRates], tuple[_Builder, dict[str, Any]]]


@dataclass(frozen=True)
class RecordSetSpec:
    agency: str
    slug: str
    title: str
    description: str
    theme: str
    keywords: tuple[str, ...]
    visibility: str
    rates: VariationRates
    generate: Generator

    @property
    def ref(self) -> str:
        return f"{self.agency}.{self.slug}"


CONDITIONS: tuple[tuple[str, str, int], ...] = (
    ("respiratory", "COVID-19", 300),
    ("respiratory", "Influenza", 200),
    ("respiratory", "RSV", 60),
    ("respiratory", "Pertussis", 10),
    ("gastrointestinal", "Campylobacteriosis", 40),
    ("gastrointestinal", "Salmonellosis", 30),
    ("gastrointestinal", "Norovirus", 30),
    ("gastrointestinal", "Shigellosis", 20),
    ("sexually_transmitted", "Chlamydia", 150),
    ("sexually_transmitted", "Gonorrhea", 80),
    ("sexually_transmitted", "Syphilis", 30),
    ("vaccine_preventable", "Measles", 2),
    ("vaccine_preventable", "Mumps", 3),
    ("tuberculosis", "Tuberculosis", 10),
    ("hepatitis", "Hepatitis B", 10),
    ("hepatitis", "Hepatitis C", 20),
)
DIAGNOSIS_CATEGORIES = sorted({category for category, _, _ in CONDITIONS})
_CONDITION_CUM = _cumulative([weight for _, _, weight in CONDITIONS])


def _age_factor(age: int) -> float:
    return 1.6 if age < 5 or age >= 75 else 1.3 if age >= 65 else 1.0


def _health_cases(
    rng: random.Random, residents: Residents, rates: VariationRates
) -> tuple[_Builder, dict[str, Any]]:
    rows = _Builder("case_id")
    for index in range(len(residents)):
        age_now = residents.age_now[index]
        mean = 0.12 * (0.4 + 3 * residents.need[index]) * _age_factor(age_now)
        for _ in range(_poisson(rng, mean)):
            reported = _day(rng, residents.date_of_birth[index])
            category, condition, _ = rng.choices(CONDITIONS, cum_weights=_CONDITION_CUM)[0]
            # Lab reports carry a national id only sometimes.
            seen = observe(
                rng, residents, index, reported, rates, with_national_id=rng.random() < 0.4
            )
            age = residents.age_on(index, reported)
            rows.add(
                index,
                seen.variations,
                case_id=f"HC-{len(rows.person_ids) + 1:07d}",
                report_date=reported,
                onset_date=reported - dt.timedelta(days=_randrange(rng, 0, 10))
                if rng.random() < 0.8
                else None,
                diagnosis_category=category,
                condition=condition,
                hospitalised=rng.random() < (0.25 if age >= 65 or age < 2 else 0.06),
                age_band=age_band(age),
                given_name=seen.given_name,
                family_name=seen.family_name,
                sex=residents.sex[index],
                date_of_birth=seen.date_of_birth,
                address=seen.address,
                zip=seen.zip,
                phone=format_phone(residents.phone[index], "us") if rng.random() < 0.75 else None,
                national_id=seen.national_id,
            )
    table_schema = _schema(
        [
            _field("case_id", "string", "Case number", required=True, unique=True),
            _field("report_date", "date", "Date reported", required=True),
            _field("onset_date", "date", "Date of symptom onset"),
            _field(
                "diagnosis_category",
                "string",
                "Diagnosis category",
                classification="sensitive",
                required=True,
                enum_values=DIAGNOSIS_CATEGORIES,
            ),
            _field(
                "condition",
                "string",
                "Reportable condition",
                classification="sensitive",
                required=True,
                enum_values=sorted({c for _, c, _ in CONDITIONS}),
            ),
            _field("hospitalised", "boolean", "Hospitalised", classification="sensitive"),
            _field(
                "age_band",
                "string",
                "Age band at report",
                pii="age",
                required=True,
                enum_values=[label for label, _, _ in AGE_BANDS],
            ),
            _given(),
            _family(),
            _sex(),
            _dob(),
            _address(),
            _zip(),
            _phone(),
            _national_id(),
        ],
        "case_id",
    )
    return rows, table_schema


EMS_COMPLAINTS: tuple[tuple[str, int], ...] = (
    ("breathing problems", 14),
    ("chest pain", 12),
    ("fall", 16),
    ("overdose or poisoning", 8),
    ("psychiatric or behavioural", 9),
    ("seizure", 5),
    ("stroke", 4),
    ("unconscious or fainting", 9),
    ("sick person", 12),
    ("traffic injury", 6),
    ("burns", 1),
    ("other injury", 4),
)
_COMPLAINT_CUM = _cumulative([weight for _, weight in EMS_COMPLAINTS])
EMS_CALL_TYPES = ("Medical Incident", "Traffic Collision", "Structure Fire")


def _ems_incidents(
    rng: random.Random, residents: Residents, rates: VariationRates
) -> tuple[_Builder, dict[str, Any]]:
    rows = _Builder("incident_number")
    for index in range(len(residents)):
        age_now = residents.age_now[index]
        mean = 0.09 * (0.3 + 3.5 * residents.need[index]) * _age_factor(age_now) ** 1.5
        for _ in range(_poisson(rng, mean)):
            at = _moment(rng, _day(rng, residents.date_of_birth[index]))
            complaint = rng.choices(EMS_COMPLAINTS, cum_weights=_COMPLAINT_CUM)[0][0]
            seen = observe(rng, residents, index, at.date(), rates)
            age = residents.age_on(index, at.date())
            address, zip_code = seen.address, seen.zip
            if rng.random() < 0.3:  # the call was not at home
                area = rng.choices(ZIP_AREAS, cum_weights=_ZIP_CUM)[0]
                address, zip_code = _street_address(rng, area), area.zip
                seen.variations.append(Variation.address_elsewhere)
            transported = rng.random() < 0.7
            rows.add(
                index,
                seen.variations,
                incident_number=f"E{at:%y}-{len(rows.person_ids) + 1:07d}",
                received_at=at,
                call_type="Traffic Collision"
                if complaint == "traffic injury"
                else "Structure Fire"
                if complaint == "burns"
                else "Medical Incident",
                chief_complaint=complaint,
                priority=rng.choices((2, 3), weights=(35, 65))[0],
                patient_given_name=seen.given_name,
                patient_family_name=seen.family_name,
                patient_sex=residents.sex[index],
                patient_date_of_birth=seen.date_of_birth,
                # Crews estimate the age when nobody can give a date of birth.
                patient_age=age if seen.date_of_birth else max(0, age + _randrange(rng, -5, 6)),
                incident_address=spell_out_suffix(address).upper(),
                zip=zip_code,
                callback_phone=format_phone(residents.phone[index], "digits")
                if rng.random() < 0.5
                else None,
                transported=transported,
                destination=_pick(rng, HOSPITALS) if transported else None,
            )
    table_schema = _schema(
        [
            _field("incident_number", "string", "Incident number", required=True, unique=True),
            _field("received_at", "datetime", "Call received (local time)", required=True),
            _field("call_type", "string", "Call type", required=True, enum_values=EMS_CALL_TYPES),
            _field(
                "chief_complaint",
                "string",
                "Chief complaint",
                classification="sensitive",
                enum_values=[name for name, _ in EMS_COMPLAINTS],
            ),
            _field(
                "priority", "integer", "Dispatch priority (3 = emergency)", minimum=1, maximum=3
            ),
            _field(
                "patient_given_name",
                "string",
                "Patient given name",
                classification="personal",
                pii="given_name",
            ),
            _field(
                "patient_family_name",
                "string",
                "Patient family name",
                classification="personal",
                pii="family_name",
            ),
            _field(
                "patient_sex",
                "string",
                "Patient sex",
                classification="personal",
                pii="sex",
                enum_values=("F", "M", "X"),
            ),
            _field(
                "patient_date_of_birth",
                "date",
                "Patient date of birth",
                classification="personal",
                pii="dob",
            ),
            _field(
                "patient_age",
                "integer",
                "Patient age (estimated when no date of birth)",
                classification="personal",
                pii="age",
                minimum=0,
                maximum=120,
            ),
            _field(
                "incident_address",
                "string",
                "Incident address",
                classification="personal",
                pii="address",
            ),
            _zip(),
            _field(
                "callback_phone", "string", "Callback phone", classification="personal", pii="phone"
            ),
            _field("transported", "boolean", "Transported to hospital", required=True),
            _field("destination", "string", "Receiving hospital", enum_values=HOSPITALS),
        ],
        "incident_number",
    )
    return rows, table_schema


POLICE_CONTACT_TYPES: tuple[tuple[str, int], ...] = (
    ("traffic stop", 30),
    ("field interview", 12),
    ("victim", 22),
    ("witness", 10),
    ("arrest", 10),
    ("welfare check", 10),
    ("citation", 6),
)
_CONTACT_CUM = _cumulative([weight for _, weight in POLICE_CONTACT_TYPES])
OFFENCES = (
    "assault",
    "burglary",
    "larceny theft",
    "motor vehicle theft",
    "vandalism",
    "drug offence",
    "driving under the influence",
    "traffic violation",
    "disorderly conduct",
    "robbery",
    "domestic violence",
)
POLICE_OUTCOMES = ("no action", "warning", "citation", "arrest", "report taken", "referral")
POLICE_DISTRICTS = sorted({area.police_district for area in ZIP_AREAS})


def _police_contacts(
    rng: random.Random, residents: Residents, rates: VariationRates
) -> tuple[_Builder, dict[str, Any]]:
    rows = _Builder("contact_id")
    for index in range(len(residents)):
        if residents.age_now[index] < 14:
            continue
        mean = 0.07 * (0.3 + 3.5 * residents.need[index])
        for _ in range(_poisson(rng, mean)):
            at = _moment(rng, _day(rng, residents.date_of_birth[index]))
            kind = rng.choices(POLICE_CONTACT_TYPES, cum_weights=_CONTACT_CUM)[0][0]
            seen = observe(rng, residents, index, at.date(), rates)
            offence = (
                "traffic violation"
                if kind in {"traffic stop", "citation"} and rng.random() < 0.7
                else _pick(rng, OFFENCES)
                if kind in {"arrest", "victim", "citation", "field interview"}
                else None
            )
            outcome = {
                "arrest": "arrest",
                "citation": "citation",
                "victim": "report taken",
                "witness": "report taken",
                "welfare check": _pick(rng, ("no action", "referral")),
            }.get(kind, _pick(rng, ("no action", "warning", "citation")))
            rows.add(
                index,
                seen.variations,
                contact_id=f"P{at:%y}-{len(rows.person_ids) + 1:07d}",
                contact_at=at,
                contact_type=kind,
                offence_category=offence,
                outcome=outcome,
                district=_ZIP_DISTRICT[seen.zip],
                # The records system stores names in capitals.
                given_name=seen.given_name.upper(),
                family_name=seen.family_name.upper(),
                sex=residents.sex[index],
                date_of_birth=seen.date_of_birth,
                address=spell_out_suffix(seen.address).upper(),
                zip=seen.zip,
            )
    table_schema = _schema(
        [
            _field("contact_id", "string", "Contact number", required=True, unique=True),
            _field("contact_at", "datetime", "Contact time (local)", required=True),
            _field(
                "contact_type",
                "string",
                "Contact type",
                required=True,
                enum_values=[name for name, _ in POLICE_CONTACT_TYPES],
            ),
            _field(
                "offence_category",
                "string",
                "Offence category",
                classification="sensitive",
                enum_values=OFFENCES,
            ),
            _field("outcome", "string", "Outcome", required=True, enum_values=POLICE_OUTCOMES),
            _field(
                "district", "string", "Police district", required=True, enum_values=POLICE_DISTRICTS
            ),
            _given(),
            _family(),
            _sex(),
            _dob(),
            _address("Address of the person"),
            _zip(),
        ],
        "contact_id",
    )
    return rows, table_schema


HOUSING_PROGRAMMES = (
    "public housing",
    "housing choice voucher",
    "emergency rental assistance",
    "supportive housing",
    "senior housing",
)
HOUSING_STATUSES = ("submitted", "waitlisted", "approved", "denied", "withdrawn")


def _housing_applications(
    rng: random.Random, residents: Residents, rates: VariationRates
) -> tuple[_Builder, dict[str, Any]]:
    rows = _Builder("application_id")
    for index in range(len(residents)):
        need = residents.need[index]
        if residents.age_now[index] < 18 or rng.random() > 0.02 + 0.35 * need**1.5:
            continue
        for _ in range(1 + (rng.random() < 0.12)):
            submitted = _day(rng, residents.date_of_birth[index])
            seen = observe(
                rng, residents, index, submitted, rates, with_national_id=rng.random() < 0.97
            )
            age = residents.age_on(index, submitted)
            programme = _pick(rng, HOUSING_PROGRAMMES[: 5 if age >= 62 else 4])
            homeless = rng.random() < 0.6 * need
            rows.add(
                index,
                seen.variations,
                application_id=f"HA-{len(rows.person_ids) + 1:06d}",
                submitted_on=submitted,
                programme=programme,
                status=_pick(rng, HOUSING_STATUSES),
                household_size=1 + min(6, _poisson(rng, 1.2)),
                annual_income=int(rng.lognormvariate(10.6, 0.5) * (1 - 0.8 * need)) // 100 * 100,
                homeless=homeless,
                disability=rng.random() < 0.12 + 0.3 * need,
                given_name=seen.given_name,
                family_name=seen.family_name,
                sex=residents.sex[index],
                date_of_birth=seen.date_of_birth,
                national_id=seen.national_id,
                phone=format_phone(residents.phone[index], "dashes"),
                # Homeless applicants give the last address they had.
                address=seen.address,
                zip=seen.zip,
            )
    table_schema = _schema(
        [
            _field("application_id", "string", "Application number", required=True, unique=True),
            _field("submitted_on", "date", "Date submitted", required=True),
            _field(
                "programme", "string", "Programme", required=True, enum_values=HOUSING_PROGRAMMES
            ),
            _field("status", "string", "Status", required=True, enum_values=HOUSING_STATUSES),
            _field("household_size", "integer", "Household size", minimum=1, maximum=12),
            _field(
                "annual_income",
                "integer",
                "Household annual income (USD)",
                classification="sensitive",
                minimum=0,
            ),
            _field("homeless", "boolean", "Currently homeless", classification="sensitive"),
            _field(
                "disability",
                "boolean",
                "Household member with a disability",
                classification="sensitive",
            ),
            _given(),
            _family(),
            _sex(),
            _dob(),
            _national_id(),
            _phone(),
            _address("Current or last address"),
            _zip(),
        ],
        "application_id",
    )
    return rows, table_schema


CONCESSIONS = ("senior", "youth", "disabled", "low_income")


def _reduced_fare_cards(
    rng: random.Random, residents: Residents, rates: VariationRates
) -> tuple[_Builder, dict[str, Any]]:
    rows = _Builder("card_id")
    for index in range(len(residents)):
        issued = _day(rng, residents.date_of_birth[index])
        age = residents.age_on(index, issued)
        need = residents.need[index]
        concession = (
            "senior"
            if age >= 65 and rng.random() < 0.35
            else "youth"
            if 5 <= age <= 18 and rng.random() < 0.3
            else "disabled"
            if 18 < age < 65 and rng.random() < 0.01 + 0.05 * need
            else "low_income"
            if 18 < age < 65 and rng.random() < 0.25 * need
            else None
        )
        if concession is None:
            continue
        seen = observe(rng, residents, index, issued, rates)
        rows.add(
            index,
            seen.variations,
            card_id=f"CLP-{len(rows.person_ids) + 1:08d}",
            issued_on=issued,
            concession=concession,
            given_name=seen.given_name,
            family_name=seen.family_name,
            date_of_birth=seen.date_of_birth,
            zip=seen.zip,
            phone=format_phone(residents.phone[index], "e164") if rng.random() < 0.6 else None,
            email=residents.email[index] if rng.random() < 0.7 else None,
        )
    table_schema = _schema(
        [
            _field("card_id", "string", "Clipper card number", required=True, unique=True),
            _field("issued_on", "date", "Date issued", required=True),
            _field(
                "concession", "string", "Concession type", required=True, enum_values=CONCESSIONS
            ),
            _given(),
            _family(),
            _dob(),
            _zip(),
            _phone(),
            _field("email", "string", "Email", classification="personal", pii="email"),
        ],
        "card_id",
    )
    return rows, table_schema


RECORD_SET_SPECS: tuple[RecordSetSpec, ...] = (
    RecordSetSpec(
        "health",
        "cases",
        "Reportable disease case reports",
        "Case reports of notifiable conditions from clinicians and laboratories, one row per "
        "case, with the patient's identity as reported. Synthetic (sample city).",
        "health",
        ("surveillance", "communicable disease", "case reports"),
        "hub",
        VariationRates(dob_missing=0.04),
        _health_cases,
    ),
    RecordSetSpec(
        "fire_ems",
        "ems_incidents",
        "EMS patient incidents",
        "Emergency medical responses, one row per patient contact, with what the crew recorded "
        "about the patient (age estimated when unknown). Synthetic (sample city).",
        "health",
        ("ems", "ambulance", "emergency response"),
        "hub",
        VariationRates(name_typo=0.08, nickname=0.15, dob_missing=0.22, national_id_typo=0.0),
        _ems_incidents,
    ),
    RecordSetSpec(
        "police",
        "contacts",
        "Police contacts",
        "Stops, interviews, arrests, victims and witnesses: one row per person contacted. "
        "Synthetic (sample city).",
        "justice",
        ("police", "public safety", "contacts"),
        "private",
        VariationRates(name_typo=0.06, nickname=0.20, dob_missing=0.06, national_id_typo=0.0),
        _police_contacts,
    ),
    RecordSetSpec(
        "housing",
        "applications",
        "Housing assistance applications",
        "Applications for public housing, vouchers, rental assistance and supportive housing, "
        "with household circumstances. Synthetic (sample city).",
        "housing",
        ("housing", "homelessness", "assistance"),
        "hub",
        VariationRates(name_typo=0.02, nickname=0.03, dob_missing=0.01),
        _housing_applications,
    ),
    RecordSetSpec(
        "transport",
        "reduced_fare_cards",
        "Reduced-fare transit cards",
        "Holders of senior, youth, disabled and low-income Clipper cards. Synthetic (sample city).",
        "transport",
        ("transit", "fares", "concessions"),
        "private",
        # Eligibility is checked against the date of birth, so it is never missing here.
        VariationRates(dob_missing=0.0, national_id_typo=0.0),
        _reduced_fare_cards,
    ),
)


def generate_city(*, people: int = 20_000, seed: int = 2026) -> City:
    """The sample city for ``(people, seed)``: the same inputs always give the same city."""
    if people < 1:
        raise ValueError("a city needs at least one resident")
    residents = generate_residents(random.Random(f"civicshare-city:{seed}:residents"), people)
    record_sets = []
    for spec in RECORD_SET_SPECS:
        # One stream per record set, so changing one agency's generator leaves the others alone.
        rng = random.Random(f"civicshare-city:{seed}:{spec.agency}.{spec.slug}")
        builder, table_schema = spec.generate(rng, residents, spec.rates)
        record_sets.append(builder.build(spec, spec.rates, table_schema))
    return City(seed, people, residents.table(), tuple(record_sets))
