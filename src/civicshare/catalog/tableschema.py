"""Frictionless Table Schema, extended per field with a classification and a PII kind.

A plain Frictionless schema (https://specs.frictionlessdata.io/table-schema/) validates as is:
fields without a ``classification`` are ``internal``. Unknown properties are refused rather than
ignored, so a misspelt constraint (``minimun``) is an error, not a silently unchecked rule.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import rfc8785
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from civicshare.errors import Invalid

FieldType = Literal[
    "string",
    "integer",
    "number",
    "boolean",
    "date",
    "datetime",
    "time",
    "year",
    "yearmonth",
    "duration",
    "geopoint",
    "object",
    "array",
    "any",
]
Classification = Literal["public", "internal", "personal", "sensitive"]
# Ordered from least to most protected: a dataset is as protected as its most protected field.
CLASSIFICATION_ORDER: tuple[Classification, ...] = ("public", "internal", "personal", "sensitive")
PII_KINDS = frozenset(
    {
        "name",
        "given_name",
        "family_name",
        "dob",
        "age",
        "sex",
        "gender",
        "address",
        "zip",
        "phone",
        "email",
        "national_id",
        "medical_record",
        "license_plate",
        "ip_address",
        "geo_point",
        "other",
    }
)
Scalar = Annotated[int | float | str, Field(union_mode="left_to_right")]


def without_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text; refused here it is a clear error on every backend.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


PlainText = Annotated[str, AfterValidator(without_nul)]


class Constraints(BaseModel):
    """The Frictionless field constraints the hub enforces."""

    model_config = ConfigDict(extra="forbid")

    required: bool = False
    unique: bool = False
    enum: list[Any] | None = Field(default=None, min_length=1)
    pattern: str | None = None
    minimum: Scalar | None = None
    maximum: Scalar | None = None
    minLength: int | None = Field(default=None, ge=0)
    maxLength: int | None = Field(default=None, ge=0)

    @field_validator("pattern")
    @classmethod
    def _compilable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Constraints:
        if (
            self.minLength is not None
            and self.maxLength is not None
            and self.minLength > self.maxLength
        ):
            raise ValueError("minLength is greater than maxLength")
        bounds = (self.minimum, self.maximum)
        if None not in bounds and type(bounds[0]) is type(bounds[1]) and bounds[0] > bounds[1]:  # type: ignore[operator]
            raise ValueError("minimum is greater than maximum")
        return self


class SchemaField(BaseModel):
    """One column: its Frictionless type, format and constraints, plus its sensitivity."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=128)
    type: FieldType = "string"
    format: str = "default"
    title: PlainText | None = None
    description: PlainText | None = None
    example: Any = None
    rdfType: str | None = None
    constraints: Constraints = Field(default_factory=Constraints)
    classification: Classification = "internal"
    pii: str | None = None
    # Frictionless parsing hints, used by ingestion.
    trueValues: list[str] | None = None
    falseValues: list[str] | None = None
    bareNumber: bool | None = None
    groupChar: str | None = None
    decimalChar: str | None = None
    missingValues: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _printable(cls, value: str) -> str:
        if value != value.strip() or any(ord(ch) < 32 for ch in value):
            raise ValueError("field names must not have control characters or edge spaces")
        return value

    @field_validator("pii")
    @classmethod
    def _known_pii(cls, value: str | None) -> str | None:
        if value is not None and value not in PII_KINDS:
            raise ValueError(f"unknown pii kind '{value}'; expected one of {sorted(PII_KINDS)}")
        return value

    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    def arrow_field(self) -> pa.Field:
        metadata: dict[str, str] = {"classification": self.classification, "type": self.type}
        if self.pii:
            metadata["pii"] = self.pii
        return pa.field(
            self.name,
            self.arrow_type(),
            nullable=not self.constraints.required,
            metadata=metadata,
        )


class ForeignKeyReference(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resource: str
    fields: list[str]

    @field_validator("fields", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ForeignKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: list[str]
    reference: ForeignKeyReference

    @field_validator("fields", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class TableSchema(BaseModel):
    """A dataset's declared standard: the fields every stored row conforms to."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    fields: list[SchemaField] = Field(min_length=1)
    primaryKey: list[str] = Field(default_factory=list)
    foreignKeys: list[ForeignKey] = Field(default_factory=list)
    missingValues: list[str] = Field(default_factory=lambda: [""])
    schema_uri: str | None = Field(default=None, alias="$schema")

    @field_validator("primaryKey", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        # Frictionless allows a single field name as a string.
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _coherent(self) -> TableSchema:
        names = [field.name for field in self.fields]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate field names: {', '.join(duplicates)}")
        # Datasets are queried in SQL, where `patient` names the `Patient` column too: two such
        # fields would let a query (or an agreement granting one) read the other.
        folded = [name.lower() for name in names]
        clashing = [
            name for name, fold in zip(names, folded, strict=True) if folded.count(fold) > 1
        ]
        if clashing:
            raise ValueError(f"field names differ only in letter case: {', '.join(clashing)}")
        unknown = [name for name in self.primaryKey if name not in names]
        if unknown:
            raise ValueError(f"primaryKey names unknown fields: {', '.join(unknown)}")
        if len(set(self.primaryKey)) != len(self.primaryKey):
            raise ValueError("primaryKey repeats a field")
        for key in self.foreignKeys:
            missing = [name for name in key.fields if name not in names]
            if missing:
                raise ValueError(f"foreignKeys name unknown fields: {', '.join(missing)}")
        return self

    @property
    def field_names(self) -> list[str]:
        return [field.name for field in self.fields]

    def field(self, name: str) -> SchemaField:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(name)

    def arrow_schema(self) -> pa.Schema:
        """The stored, standardised Arrow types of the fields."""
        return pa.schema([field.arrow_field() for field in self.fields])

    def canonical(self) -> dict[str, Any]:
        """The schema as JSON with defaults filled in, so equal schemas have equal hashes."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def schema_hash(self) -> str:
        """SHA-256 of the RFC 8785 canonical JSON of the schema."""
        return hashlib.sha256(rfc8785.dumps(self.canonical())).hexdigest()

    def classification(self) -> Classification:
        """The most protected classification of any field."""
        ranks = [CLASSIFICATION_ORDER.index(field.classification) for field in self.fields]
        return CLASSIFICATION_ORDER[max(ranks)]

    def protected_fields(self) -> list[SchemaField]:
        return [f for f in self.fields if f.classification in {"personal", "sensitive"}]


GEOPOINT = pa.struct([pa.field("lon", pa.float64()), pa.field("lat", pa.float64())])

# Stored types. Text-like values without an exact Arrow counterpart (ISO durations, which may
# count months, and JSON objects/arrays) are kept as their canonical text form.
ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "time": pa.time64("us"),
    "year": pa.int32(),
    "yearmonth": pa.string(),
    "duration": pa.string(),
    "geopoint": GEOPOINT,
    "object": pa.string(),
    "array": pa.string(),
    "any": pa.string(),
}


# ---------------------------------------------------------------------------- schema evolution

# A type change is compatible when every value of the old type is a value of the new one.
_WIDENINGS: dict[str, frozenset[str]] = {
    "integer": frozenset({"number"}),
    "year": frozenset({"integer", "number"}),
}
_TEXT_TYPES = frozenset({"string", "any"})


def breaking_changes(old: TableSchema, new: TableSchema) -> list[str]:
    """Why ``new`` could reject or misread data that ``old`` accepted (empty: compatible)."""
    changes: list[str] = []
    old_fields = {field.name: field for field in old.fields}
    new_fields = {field.name: field for field in new.fields}
    for name in old_fields.keys() - new_fields.keys():
        changes.append(f"field '{name}' removed")
    for name in new_fields.keys() - old_fields.keys():
        if new_fields[name].constraints.required:
            changes.append(f"required field '{name}' added")
    for name in sorted(old_fields.keys() & new_fields.keys()):
        changes.extend(_field_changes(old_fields[name], new_fields[name]))
    if new.primaryKey and new.primaryKey != old.primaryKey:
        changes.append(f"primaryKey changed to {new.primaryKey}")
    elif old.primaryKey and not new.primaryKey:
        # Upserts, deletes and consent exclusions find records by it.
        changes.append(f"primaryKey removed (was {old.primaryKey})")
    return sorted(changes)


def _field_changes(old: SchemaField, new: SchemaField) -> list[str]:
    name = old.name
    if old.type != new.type and not (
        new.type in _TEXT_TYPES or new.type in _WIDENINGS.get(old.type, frozenset())
    ):
        return [f"field '{name}' type narrowed from {old.type} to {new.type}"]
    changes = []
    if old.type == new.type and old.format != new.format:
        changes.append(f"field '{name}' format changed from {old.format} to {new.format}")
    changes.extend(f"field '{name}' {reason}" for reason in _tightened(old.constraints, new))
    return changes


def _tightened(old: Constraints, new_field: SchemaField) -> list[str]:
    new = new_field.constraints
    reasons = []
    if new.required and not old.required:
        reasons.append("became required")
    if new.unique and not old.unique:
        reasons.append("became unique")
    if new.enum is not None and (
        old.enum is None or not set(map(str, old.enum)) <= set(map(str, new.enum))
    ):
        reasons.append("enum restricted")
    if new.pattern is not None and new.pattern != old.pattern:
        reasons.append("pattern added or changed")
    if _raised(old.minimum, new.minimum):
        reasons.append("minimum raised")
    if _lowered(old.maximum, new.maximum):
        reasons.append("maximum lowered")
    if _raised(old.minLength, new.minLength):
        reasons.append("minLength raised")
    if _lowered(old.maxLength, new.maxLength):
        reasons.append("maxLength lowered")
    return reasons


def _raised(old: Any, new: Any) -> bool:
    """True when ``new`` is a stricter lower bound than ``old`` (``None`` means unbounded)."""
    if new is None:
        return False
    if old is None:
        return True
    try:
        return bool(new > old)
    except TypeError:  # bounds of different kinds (number vs date text): treat as a change
        return str(new) != str(old)


def _lowered(old: Any, new: Any) -> bool:
    """True when ``new`` is a stricter upper bound than ``old`` (``None`` means unbounded)."""
    if new is None:
        return False
    if old is None:
        return True
    try:
        return bool(new < old)
    except TypeError:
        return str(new) != str(old)


# ---------------------------------------------------------------------------- schema files


def read_schema_file(
    path: Path, *, resource: str | None = None
) -> tuple[TableSchema, dict[str, Any]]:
    """A Table Schema from a JSON file holding either the schema or a Data Package.

    Returns the schema and, for a Data Package, its descriptive metadata (title, description,
    keywords, licence) so registration can reuse it.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise Invalid(
            f"cannot read the schema file {path.name}: {exc.strerror}",
            code="schema_file_unreadable",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Invalid(
            f"{path.name} is not valid JSON: {exc}", code="schema_file_malformed"
        ) from None
    if not isinstance(document, dict):
        raise Invalid(f"{path.name} must hold a JSON object", code="schema_file_malformed")
    metadata: dict[str, Any] = {}
    if "resources" in document:
        document, metadata = _package_resource(document, resource, path.name)
    return parse_schema(document), metadata


def parse_schema(document: Any) -> TableSchema:
    """Validate a Table Schema document, turning validation errors into one clear ``Invalid``."""
    try:
        return TableSchema.model_validate(document)
    except ValidationError as exc:
        problems = [
            {
                "at": ".".join(str(part) for part in error["loc"]) or "schema",
                "problem": error["msg"],
            }
            for error in exc.errors()
        ]
        first = problems[0]
        raise Invalid(
            f"invalid Table Schema: {first['at']}: {first['problem']}",
            code="invalid_schema",
            details=problems,
        ) from None


def _package_resource(
    package: dict[str, Any], name: str | None, filename: str
) -> tuple[Any, dict[str, Any]]:
    resources = [r for r in package.get("resources") or [] if isinstance(r, dict)]
    candidates = [r for r in resources if name is None or r.get("name") == name]
    if not candidates:
        raise Invalid(f"{filename} has no resource named '{name}'", code="schema_file_malformed")
    if len(candidates) > 1:
        names = ", ".join(str(r.get("name")) for r in candidates)
        raise Invalid(
            f"{filename} has several resources ({names}); choose one with --resource",
            code="schema_file_malformed",
        )
    chosen = candidates[0]
    if not isinstance(chosen.get("schema"), dict):
        raise Invalid(
            f"resource '{chosen.get('name')}' of {filename} has no inline schema",
            code="schema_file_malformed",
        )
    licenses = package.get("licenses") or []
    metadata = {
        "title": package.get("title"),
        "description": package.get("description"),
        "keywords": [str(k) for k in package.get("keywords") or []],
        "license": (licenses[0].get("path") or licenses[0].get("name")) if licenses else None,
    }
    return chosen["schema"], {k: v for k, v in metadata.items() if v}
