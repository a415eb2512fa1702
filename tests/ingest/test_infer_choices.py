"""A steward's choices applied to an inferred schema, and inference from an open stream."""

from __future__ import annotations

import io

import pytest

from civicshare.errors import Invalid
from civicshare.ingest.infer import FieldChoice, adjust_schema, infer_schema

CSV = b"ID,Station,Email\n1,a,x@example.org\n2,b,y@example.org\n3,a,\n"


def test_a_stream_is_inferred_like_a_file() -> None:
    schema = infer_schema(io.BytesIO(CSV), filename="upload.csv")
    assert schema.field_names == ["id", "station", "email"]
    assert schema.field("email").pii == "email"
    assert schema.field("email").classification == "personal"
    assert schema.primaryKey == ["id"]


def test_choices_replace_classification_pii_and_constraints_only() -> None:
    proposal = infer_schema(io.BytesIO(CSV), filename="upload.csv")
    choices = {
        "station": FieldChoice(classification="public", pii=None, required=True, unique=False),
        "email": FieldChoice(classification="sensitive", pii=None, required=False, unique=True),
    }
    adjusted = adjust_schema(proposal, choices=choices)
    station, email = adjusted.field("station"), adjusted.field("email")
    assert (station.classification, station.constraints.required) == ("public", True)
    assert station.constraints.enum == proposal.field("station").constraints.enum
    assert (email.classification, email.pii, email.constraints.unique) == ("sensitive", None, True)
    assert adjusted.field("id") == proposal.field("id")  # no choice: as proposed
    assert adjusted.primaryKey == proposal.primaryKey


@pytest.mark.parametrize(
    "choice",
    [
        FieldChoice(classification="secret", pii=None, required=False, unique=False),
        FieldChoice(classification="public", pii="shoe_size", required=False, unique=False),
    ],
)
def test_an_impossible_choice_names_its_field(choice: FieldChoice) -> None:
    proposal = infer_schema(io.BytesIO(CSV), filename="upload.csv")
    with pytest.raises(Invalid) as raised:
        adjust_schema(proposal, choices={"station": choice})
    assert raised.value.code == "invalid_field_choice"
    assert raised.value.details == {"field": "station"}
