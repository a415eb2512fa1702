"""Schema inference reviewed file by file: the expectations come from SOURCES.md, by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from civicshare.catalog.tableschema import TableSchema
from civicshare.ingest.infer import infer_schema, sql_name, sql_names
from tests.conftest import REALDATA


def fields_by_title(schema: TableSchema) -> dict[str, Any]:
    return {(f.title or f.name): f for f in schema.fields}


def check(schema: TableSchema, expected: dict[str, tuple[str, str | None]]) -> None:
    fields = fields_by_title(schema)
    for title, (kind, fmt) in expected.items():
        assert fields[title].type == kind, title
        if fmt is not None:
            assert fields[title].format == fmt, title


def infer(relative: str) -> TableSchema:
    return infer_schema(REALDATA / relative)


def test_nyc311_csv() -> None:
    schema = infer("nyc311/data/311_Service_Requests.csv")
    check(
        schema,
        {
            "Unique Key": ("integer", None),
            "Created Date": ("datetime", "%m/%d/%Y %I:%M:%S %p"),
            "Closed Date": ("datetime", "%m/%d/%Y %I:%M:%S %p"),
            "Incident Zip": ("string", None),  # ZIPs keep leading zeros
            "Latitude": ("number", None),
            "Longitude": ("number", None),
        },
    )
    assert schema.primaryKey == ["unique_key"]
    fields = fields_by_title(schema)
    assert fields["Incident Address"].pii == "address"
    assert fields["Incident Address"].classification == "personal"
    assert fields["Latitude"].pii == "geo_point"
    assert fields["Location"].pii == "geo_point"  # "(40.69, -73.84)" text
    assert fields["Address Type"].pii is None  # a category, not an address
    assert "BROOKLYN" in fields["Borough"].constraints.enum
    assert fields["Agency Name"].pii is None  # an organisation's name, not a person's


def test_nyc311_socrata_json() -> None:
    schema = infer("nyc311/data/fhrw-4uyv.json")
    check(
        schema,
        {
            "unique_key": ("integer", None),
            "created_date": ("datetime", "%Y-%m-%dT%H:%M:%S.%f"),
            "location.coordinates": ("geopoint", "array"),
            "latitude": ("number", None),
        },
    )
    fields = fields_by_title(schema)
    assert fields[":@computed_region_92fq_4b7q"].name == "computed_region_92fq_4b7q"
    assert fields["location.coordinates"].name == "location_coordinates"
    assert fields["location.coordinates"].classification == "personal"


def test_la311_us_timestamps_with_am_pm() -> None:
    schema = infer("la311/Project/python/src/static/MyLA311_Service_Request_Data_2017_Subset.csv")
    check(
        schema,
        {
            "CreatedDate": ("datetime", "%m/%d/%Y %I:%M:%S %p"),
            "ZipCode": ("string", None),
            "Latitude": ("number", None),
        },
    )
    assert schema.primaryKey == ["srnumber"]
    fields = fields_by_title(schema)
    assert set(fields["Anonymous"].constraints.enum) == {"N", "Y"}
    assert fields["ApproximateAddress"].pii is None  # Y/N flag


def test_nyc_covid_trends() -> None:
    check(
        infer("nyc-doh-covid/trends/caserate-by-modzcta.csv"),
        {"week_ending": ("date", "%m/%d/%Y"), "CASERATE_CITY": ("number", None)},
    )
    schema = infer("nyc-doh-covid/trends/covid-like-illness-by-boro.csv")
    check(schema, {"Date": ("date", "default"), "Admit_5_12": ("number", None)})
    # the suppressed cells
    assert "NA" in (fields_by_title(schema)["Admit_5_12"].missingValues or schema.missingValues)
    assert set(fields_by_title(schema)["Borough"].constraints.enum) == {
        "Bronx",
        "Brooklyn",
        "Manhattan",
        "Queens",
        "Staten Island",
    }
    check(
        infer("nyc-doh-covid/trends/data-by-day.csv"),
        {"date_of_interest": ("date", "%m/%d/%Y"), "CASE_COUNT": ("integer", None)},
    )
    totals = infer("nyc-doh-covid/totals/data-by-modzcta.csv")
    check(
        totals,
        {
            "MODIFIED_ZCTA": ("string", None),
            "lat": ("number", None),
            "COVID_CASE_RATE": ("number", None),
            "COVID_DEATH_COUNT": ("integer", None),
        },
    )
    check(
        infer("nyc-doh-covid/Geography-resources/ZCTA-to-MODZCTA.csv"),
        {"ZCTA": ("string", None), "MODZCTA": ("string", None)},
    )


def test_air_quality_sensors() -> None:
    for relative in (
        "nyc-airquality-nyccas/hist/csv/2025/10.csv",
        "nyc-airquality-nyccas/hist/json/2025/10.json",
    ):
        schema = infer(relative)
        check(
            schema,
            {
                "ID": ("integer", None),
                "SiteID": ("string", None),
                "ObservationTimeUTC": ("datetime", "%Y-%m-%d %H:%M:%S.%f"),
                "Value": ("number", None),
            },
        )
        assert schema.primaryKey == ["id"]
    sites = infer("nyc-airquality-nyccas/hist/csv/location.csv")
    check(sites, {"StartTime": ("datetime", "%Y-%m-%d %H:%M"), "Latitude": ("number", None)})
    assert sites.primaryKey == []  # SiteIDs repeat after relocations
    stations = infer("nyc-airquality-nyccas/portal/station-new.csv")
    check(stations, {"Latitude": ("number", None)})


def test_seattle_bike_counts_are_numbers_although_written_as_strings() -> None:
    schema = infer("seattle-bike-counters/raw/58th-st.json")
    check(
        schema,
        {
            "date": ("datetime", "%Y-%m-%dT%H:%M:%S.%f"),
            "east": ("integer", None),
            "west": ("integer", None),
        },
    )


def test_sf_fire_calls() -> None:
    schema = infer("sf-fire-ems-calls/Fire_Department_Calls_for_Service.csv")
    check(
        schema,
        {
            "Call Number": ("integer", None),
            "Call Date": ("date", "%m/%d/%Y"),
            "Received DtTm": ("datetime", "%m/%d/%Y %I:%M:%S %p"),
            "Hospital DtTm": ("datetime", "%m/%d/%Y %I:%M:%S %p"),
            "ALS Unit": ("boolean", None),
            "Zipcode of Incident": ("string", None),
        },
    )
    fields = fields_by_title(schema)
    assert fields["Neighborhood  District"].name == "neighborhood_district"
    assert fields["Location"].pii == "geo_point"
    assert fields["Address"].classification == "personal"
    assert schema.primaryKey == ["rowid"]


def test_avon_windows_1252_incidents() -> None:
    schema = infer("avon-fire-incidents/afrs_attended_incidents_july_2014.csv")
    check(
        schema,
        {
            "Day": ("integer", None),
            "Year": ("year", None),
            "Time of Call": ("time", "%H:%M:%S"),
            "X Coordinate": ("string", None),  # masked: 376***
            "No. of injuries": ("integer", None),
        },
    )
    fields = fields_by_title(schema)
    assert set(fields["Incident Category"].constraints.enum) == {
        "False Alarm",
        "Fire",
        "Special Service",
    }
    assert fields["Is Property Derelict?"].name == "is_property_derelict"
    # One value in the sample is a constant of this file (July), not a closed list: as an enum
    # it would reject every later month.
    assert fields["Month"].constraints.enum is None


def test_housing_and_health() -> None:
    check(
        infer("nyc-housing-health/neighborhood-reports/data/viz/Housing_and_Health.json"),
        {
            "start_date": ("date", "default"),
            "unmodified_data_value_geo_entity": ("number", None),
            "geo_entity_id": ("integer", None),
            "data_value_geo_entity": ("string", None),
        },
    )
    check(
        infer("nyc-housing-health/neighborhood-reports/data/Housing_and_Health_data.csv"),
        {"end_date": ("date", "default"), "data_value": ("number", None)},
    )


def test_population_csv_agrees_with_its_own_table_schema() -> None:
    schema = infer("population-datapackage/data/population.csv")
    check(schema, {"Country Code": ("string", None), "Year": ("year", None)})
    assert fields_by_title(schema)["Value"].type in {"integer", "number"}


def test_personal_values_are_found_by_content(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    rows = [
        f"P{i},person{i}@example.org,(212) 555-{1000 + i},1980-02-{1 + i % 28:02d}"
        for i in range(30)
    ]
    path.write_text("ref,contact,callback,date_of_birth\n" + "\n".join(rows) + "\n")
    fields = {f.name: f for f in infer_schema(path).fields}
    assert (fields["contact"].format, fields["contact"].pii) == ("email", "email")
    assert fields["callback"].pii == "phone"
    assert (fields["date_of_birth"].type, fields["date_of_birth"].pii) == ("date", "dob")
    assert all(
        fields[n].classification == "personal" for n in ("contact", "callback", "date_of_birth")
    )


def test_a_placeholder_is_missing_only_in_the_columns_it_stands_in(tmp_path: Path) -> None:
    # "NA" suppresses a rate, but is Namibia in the country column: it must stay a value there.
    path = tmp_path / "rates.csv"
    rows = [f"{c},{'NA' if c == 'NA' else 1.5 + i}" for i, c in enumerate(["NA", "ZA", "BW"] * 10)]
    path.write_text("country,rate\n" + "\n".join(rows) + "\n")
    schema = infer_schema(path)
    fields = {f.name: f for f in schema.fields}
    assert fields["rate"].type == "number"
    assert "NA" in (fields["rate"].missingValues or schema.missingValues)
    assert "NA" not in (fields["country"].missingValues or schema.missingValues)


def test_iso_timestamps_with_fractions_and_a_zone_are_datetimes(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("at\n2020-01-01T00:00:00.123Z\n2021-05-01T10:20:30.5+02:00\n")
    field = infer_schema(path).fields[0]
    assert (field.type, field.format) == ("datetime", "default")


def test_integers_too_long_for_64_bits_stay_text(tmp_path: Path) -> None:
    # As numbers (float64) they would lose their last digits: 12345678901234567890 → …68000.
    path = tmp_path / "ids.csv"
    path.write_text("id\n12345678901234567890\n12345678901234567891\n")
    schema = infer_schema(path)
    assert schema.fields[0].type == "string"
    assert schema.primaryKey == ["id"]


def test_nineteen_digit_integers_within_64_bits_are_integers(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("id\n9223372036854775807\n1000000000000000000\n")
    assert infer_schema(path).fields[0].type == "integer"


def test_day_first_dates_are_recognised(tmp_path: Path) -> None:
    path = tmp_path / "uk.csv"
    path.write_text("when\n31/12/2020\n01/02/2021\n")
    assert infer_schema(path).fields[0].format == "%d/%m/%Y"


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("Neighborhood  District", "neighborhood_district"),
        (":@computed_region_x", "computed_region_x"),
        ("X Coordinate (State Plane)", "x_coordinate_state_plane"),
        ("2020 total", "c_2020_total"),
        ("select", "select_"),
        ("???", "field"),
    ],
)
def test_sql_names(title: str, name: str) -> None:
    assert sql_name(title) == name


def test_sql_names_are_unique() -> None:
    assert sql_names(["A b", "a_b", "A-B"]) == ["a_b", "a_b_2", "a_b_3"]
