"""Frictionless Table Schema with the classification extension."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from civicshare.catalog.tableschema import TableSchema, breaking_changes
from tests.conftest import REALDATA


def schema(*fields: dict[str, Any], **extra: Any) -> TableSchema:
    return TableSchema.model_validate({"fields": list(fields), **extra})


def test_reads_the_population_data_package_schema() -> None:
    package = json.loads((REALDATA / "population-datapackage" / "datapackage.json").read_text())
    parsed = TableSchema.model_validate(package["resources"][0]["schema"])
    assert parsed.field_names == ["Country Name", "Country Code", "Year", "Value"]
    assert parsed.field("Year").type == "year"
    assert parsed.missingValues == [""]
    assert all(f.classification == "internal" for f in parsed.fields)
    arrow = parsed.arrow_schema()
    assert arrow.names == parsed.field_names
    assert [f.type for f in arrow] == [pa.string(), pa.string(), pa.int32(), pa.float64()]


def test_every_frictionless_type_maps_to_an_arrow_type() -> None:
    types = ["string", "integer", "number", "boolean", "date", "datetime", "time", "year",
             "yearmonth", "duration", "geopoint", "object", "array", "any"]  # fmt: skip
    parsed = schema(*({"name": t, "type": t} for t in types))
    arrow = parsed.arrow_schema()
    assert arrow.field("datetime").type == pa.timestamp("us")
    assert arrow.field("date").type == pa.date32()
    assert arrow.field("geopoint").type == pa.struct([("lon", pa.float64()), ("lat", pa.float64())])
    assert len(arrow) == len(types)


def test_extension_fields_and_constraints_round_trip() -> None:
    parsed = schema(
        {
            "name": "email",
            "type": "string",
            "format": "email",
            "classification": "personal",
            "pii": "email",
            "constraints": {"required": True, "unique": True, "maxLength": 320},
        },
        {"name": "kind", "type": "string", "constraints": {"enum": ["a", "b"]}},
        primaryKey="email",
    )
    assert parsed.primaryKey == ["email"]
    assert parsed.classification() == "personal"
    assert parsed.arrow_schema().field("email").nullable is False
    assert parsed.arrow_schema().field("email").metadata[b"pii"] == b"email"
    assert TableSchema.model_validate(parsed.canonical()) == parsed


def test_hash_ignores_key_order_and_explicit_defaults() -> None:
    implicit = schema({"name": "a", "type": "integer"})
    explicit = TableSchema.model_validate(
        {
            "missingValues": [""],
            "fields": [
                {"type": "integer", "classification": "internal", "name": "a", "format": "default"}
            ],
        }
    )
    assert implicit.schema_hash() == explicit.schema_hash()
    assert implicit.schema_hash() != schema({"name": "a", "type": "number"}).schema_hash()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"fields": []}, "at least 1"),
        ({"fields": [{"name": "a", "type": "text"}]}, "type"),
        ({"fields": [{"name": "a", "constraints": {"minimun": 1}}]}, "minimun"),
        ({"fields": [{"name": "a"}, {"name": "a"}]}, "duplicate field names: a"),
        # SQL (DuckDB) folds identifier case: `patient` would read the `Patient` column.
        (
            {"fields": [{"name": "Patient"}, {"name": "patient"}, {"name": "PATIENT"}]},
            "field names differ only in letter case: Patient, patient, PATIENT",
        ),
        ({"fields": [{"name": "a"}], "primaryKey": ["b"]}, "unknown fields: b"),
        ({"fields": [{"name": "a", "classification": "secret"}]}, "classification"),
        ({"fields": [{"name": "a", "pii": "shoe_size"}]}, "unknown pii kind"),
        ({"fields": [{"name": "a", "constraints": {"pattern": "(["}}]}, "regular expression"),
        ({"fields": [{"name": "a", "constraints": {"minimum": 5, "maximum": 1}}]}, "minimum"),
        ({"fields": [{"name": " a"}]}, "edge spaces"),
    ],
)
def test_malformed_schemas_are_refused_clearly(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        TableSchema.model_validate(document)
    assert message in str(error.value)


BASE = schema(
    {"name": "id", "type": "integer", "constraints": {"required": True}},
    {"name": "n", "type": "integer", "constraints": {"minimum": 0, "maximum": 100}},
    {"name": "kind", "type": "string", "constraints": {"enum": ["a", "b"]}},
    {"name": "note", "type": "string", "constraints": {"maxLength": 50}},
)


def changed(name: str, **updates: Any) -> TableSchema:
    document = BASE.canonical()
    for field in document["fields"]:
        if field["name"] == name:
            constraints = {**field["constraints"], **updates.pop("constraints", {})}
            field.update(updates, constraints=constraints)
    return TableSchema.model_validate(document)


@pytest.mark.parametrize(
    ("new", "reason"),
    [
        (TableSchema(fields=BASE.fields[:3]), "field 'note' removed"),
        (changed("n", type="string"), None),  # widening to text is compatible
        (changed("n", type="number"), None),
        (changed("note", type="integer"), "field 'note' type narrowed from string to integer"),
        (changed("n", constraints={"minimum": 1}), "field 'n' minimum raised"),
        (changed("n", constraints={"minimum": -5}), None),
        (changed("n", constraints={"maximum": 99}), "field 'n' maximum lowered"),
        (changed("n", constraints={"maximum": 1000}), None),
        (changed("kind", constraints={"enum": ["a"]}), "field 'kind' enum restricted"),
        (changed("kind", constraints={"enum": ["a", "b", "c"]}), None),
        (changed("note", constraints={"required": True}), "field 'note' became required"),
        (changed("note", constraints={"maxLength": 10}), "field 'note' maxLength lowered"),
        (changed("note", constraints={"pattern": "^x"}), "field 'note' pattern added or changed"),
        (changed("note", classification="sensitive"), None),
        (
            TableSchema(fields=[*BASE.fields, {"name": "x", "constraints": {"required": True}}]),  # type: ignore[list-item]
            "required field 'x' added",
        ),
        (TableSchema(fields=[*BASE.fields, {"name": "x"}]), None),  # type: ignore[list-item]
        (TableSchema(fields=BASE.fields, primaryKey=["id"]), "primaryKey changed to ['id']"),
    ],
)
def test_breaking_changes(new: TableSchema, reason: str | None) -> None:
    assert breaking_changes(BASE, new) == ([reason] if reason else [])


def test_dropping_the_primary_key_is_a_breaking_change() -> None:
    # Upserts, deletes and consent exclusions find records by the primary key.
    keyed = TableSchema(fields=BASE.fields, primaryKey=["id"])
    assert breaking_changes(keyed, BASE) == ["primaryKey removed (was ['id'])"]
    assert breaking_changes(keyed, keyed) == []


@given(st.lists(st.sampled_from(["string", "integer", "number", "date", "boolean"]), min_size=1))
def test_a_schema_never_breaks_itself(types: list[str]) -> None:
    parsed = schema(*({"name": f"f{i}", "type": t} for i, t in enumerate(types)))
    assert breaking_changes(parsed, parsed) == []
    assert TableSchema.model_validate(parsed.canonical()).schema_hash() == parsed.schema_hash()
