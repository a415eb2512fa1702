"""The catalog: registering datasets, evolving their schemas, and finding what a caller may see."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, text, true
from sqlalchemy.orm import Session

from civicshare.agency import service as agency_service
from civicshare.agency.models import check_slug
from civicshare.audit import service as audit
from civicshare.catalog.models import (
    Dataset,
    DatasetCreate,
    DatasetRead,
    DatasetSchema,
    DatasetUpdate,
    SearchResult,
    Visibility,
)
from civicshare.catalog.tableschema import TableSchema, breaking_changes
from civicshare.db import flush_or_conflict, utcnow
from civicshare.errors import Conflict, Invalid, NotFound
from civicshare.permissions import Action, Actor, authorize

FACETS = ("agency", "theme", "visibility", "classification")
MAX_PAGE = 500
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# ---------------------------------------------------------------------------- datasets


def create_dataset(*, db: Session, actor: Actor, data: DatasetCreate) -> Dataset:
    """Register a dataset with its first schema (version 1). Stewards of the agency or admins."""
    agency = agency_service.get_agency(db=db, slug=data.agency)
    authorize(actor, Action.dataset_create, agency_id=agency.id)
    ref = f"{agency.slug}.{data.slug}"
    if _find(db, agency.id, data.slug) is not None:
        raise Conflict(f"dataset '{ref}' already exists", code="dataset_exists")
    _check_public_is_not_protected(data.visibility, data.table_schema)
    dataset = Dataset(
        agency=agency,
        slug=data.slug,
        title=data.title,
        description=data.description,
        keywords=list(data.keywords),
        theme=data.theme,
        license=data.license,
        contact=str(data.contact) if data.contact else None,
        spatial=data.spatial,
        temporal_start=data.temporal_start,
        temporal_end=data.temporal_end,
        frequency=data.frequency.value if data.frequency else None,
        visibility=data.visibility.value,
        classification=data.table_schema.classification(),
        schema_version=1,
    )
    db.add(dataset)
    flush_or_conflict(db, f"dataset '{ref}' already exists", code="dataset_exists")
    _add_schema_version(db, dataset, data.table_schema, actor=actor, number=1, changes=[])
    _index(db, dataset, data.table_schema)
    audit.record(
        db,
        actor=actor,
        action="dataset.create",
        agency=agency.slug,
        resource=ref,
        details={
            "visibility": dataset.visibility,
            "classification": dataset.classification,
            "schema_hash": data.table_schema.schema_hash(),
        },
    )
    return dataset


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``agency.dataset`` into its two slugs, or say clearly what is wrong."""
    parts = ref.split(".")
    if len(parts) != 2:
        raise Invalid(
            f"'{ref}' is not a dataset reference; expected AGENCY.DATASET",
            code="bad_dataset_ref",
        )
    for part in parts:
        try:
            check_slug(part)
        except ValueError as exc:
            raise Invalid(f"'{ref}': {exc}", code="bad_dataset_ref") from None
    return parts[0], parts[1]


def get_dataset(*, db: Session, ref: str) -> Dataset:
    """The dataset ``agency.dataset`` (no visibility check: callers authorise what they do)."""
    agency_slug, slug = parse_ref(ref)
    agency = agency_service.get_agency(db=db, slug=agency_slug)
    dataset = _find(db, agency.id, slug)
    if dataset is None:
        raise NotFound(f"no dataset '{ref}'", code="dataset_not_found")
    return dataset


def get_visible_dataset(*, db: Session, actor: Actor | None, ref: str) -> Dataset:
    """The dataset if the caller may discover it; otherwise NotFound, so existence does not leak."""
    try:
        dataset = get_dataset(db=db, ref=ref)
    except NotFound:
        raise NotFound(f"no dataset '{ref}'", code="dataset_not_found") from None
    if not can_discover(actor, dataset):
        raise NotFound(f"no dataset '{ref}'", code="dataset_not_found")
    return dataset


def update_dataset(*, db: Session, actor: Actor, dataset: Dataset, data: DatasetUpdate) -> Dataset:
    """Change descriptive metadata or visibility."""
    authorize(actor, Action.dataset_update, agency_id=dataset.agency_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True, mode="json")
    if "visibility" in changes:
        _check_public_is_not_protected(
            Visibility(changes["visibility"]), current_schema(db=db, dataset=dataset)
        )
    start = changes.get("temporal_start", dataset.temporal_start)
    end = changes.get("temporal_end", dataset.temporal_end)
    if start and end and str(start) > str(end):
        raise Invalid("temporal_start is after temporal_end", code="validation_error")
    for name in changes:
        setattr(dataset, name, getattr(data, name).value if name in _ENUMS else getattr(data, name))
    if "contact" in changes:
        dataset.contact = str(data.contact)
    dataset.updated_at = utcnow()
    db.flush()
    _index(db, dataset, current_schema(db=db, dataset=dataset))
    audit.record(
        db,
        actor=actor,
        action="dataset.update",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        details={"fields": sorted(changes)},
    )
    return dataset


_ENUMS = frozenset({"visibility", "frequency"})


def _find(db: Session, agency_id: int, slug: str) -> Dataset | None:
    return db.scalar(select(Dataset).where(Dataset.agency_id == agency_id, Dataset.slug == slug))


def _check_public_is_not_protected(visibility: Visibility, schema: TableSchema) -> None:
    protected = [field.name for field in schema.protected_fields()]
    if visibility is Visibility.public and protected:
        raise Invalid(
            "a public dataset cannot have personal or sensitive fields",
            code="public_dataset_has_protected_fields",
            details={"fields": protected},
        )


# ---------------------------------------------------------------------------- schemas


def current_schema(*, db: Session, dataset: Dataset) -> TableSchema:
    return _schema_row(db, dataset, dataset.schema_version).parsed()


def schema_at(*, db: Session, dataset: Dataset, number: int) -> TableSchema:
    return _schema_row(db, dataset, number).parsed()


def schema_by_hash(*, db: Session, dataset: Dataset, schema_hash: str) -> TableSchema:
    row = db.scalar(
        select(DatasetSchema)
        .where(DatasetSchema.dataset_id == dataset.id, DatasetSchema.schema_hash == schema_hash)
        .order_by(DatasetSchema.number.desc())
        .limit(1)
    )
    if row is None:
        raise NotFound(
            f"no schema {schema_hash[:12]}… for '{dataset.ref}'", code="schema_not_found"
        )
    return row.parsed()


def schema_versions(*, db: Session, dataset: Dataset) -> list[DatasetSchema]:
    return list(
        db.scalars(
            select(DatasetSchema)
            .where(DatasetSchema.dataset_id == dataset.id)
            .order_by(DatasetSchema.number)
        )
    )


def update_schema(
    *,
    db: Session,
    actor: Actor,
    dataset: Dataset,
    table_schema: TableSchema,
    breaking: bool = False,
) -> DatasetSchema:
    """Add a schema version. A breaking change is refused unless ``breaking`` acknowledges it."""
    authorize(actor, Action.dataset_update, agency_id=dataset.agency_id)
    current = current_schema(db=db, dataset=dataset)
    if table_schema.schema_hash() == current.schema_hash():
        return _schema_row(db, dataset, dataset.schema_version)
    changes = breaking_changes(current, table_schema)
    if changes and not breaking:
        raise Conflict(
            "the new schema would break existing data or consumers; "
            "resubmit with breaking=true (CLI: --breaking) to accept",
            code="breaking_schema_change",
            details={"changes": changes},
        )
    _check_public_is_not_protected(Visibility(dataset.visibility), table_schema)
    number = dataset.schema_version + 1
    row = _add_schema_version(
        db, dataset, table_schema, actor=actor, number=number, changes=changes
    )
    dataset.schema_version = number
    dataset.classification = table_schema.classification()
    dataset.updated_at = utcnow()
    db.flush()
    _index(db, dataset, table_schema)
    audit.record(
        db,
        actor=actor,
        action="dataset.schema_update",
        agency=dataset.agency.slug,
        resource=dataset.ref,
        details={
            "schema_version": number,
            "schema_hash": row.schema_hash,
            "breaking": bool(changes),
            "changes": changes,
        },
    )
    return row


def _add_schema_version(
    db: Session,
    dataset: Dataset,
    table_schema: TableSchema,
    *,
    actor: Actor,
    number: int,
    changes: list[str],
) -> DatasetSchema:
    row = DatasetSchema(
        dataset_id=dataset.id,
        number=number,
        table_schema=table_schema.canonical(),
        schema_hash=table_schema.schema_hash(),
        breaking=bool(changes),
        changes=changes,
        created_by=actor.email,
    )
    db.add(row)
    flush_or_conflict(
        db, f"the schema of '{dataset.ref}' changed concurrently; retry", code="concurrent_update"
    )
    return row


def _schema_row(db: Session, dataset: Dataset, number: int) -> DatasetSchema:
    row = db.scalar(
        select(DatasetSchema).where(
            DatasetSchema.dataset_id == dataset.id, DatasetSchema.number == number
        )
    )
    if row is None:
        raise NotFound(f"'{dataset.ref}' has no schema version {number}", code="schema_not_found")
    return row


# ---------------------------------------------------------------------------- visibility


def can_discover(actor: Actor | None, dataset: Dataset) -> bool:
    """Whether the caller may see that the dataset exists (``None`` is the public)."""
    if actor is None:
        return dataset.visibility == Visibility.public
    if actor.is_admin or dataset.visibility in {Visibility.public, Visibility.hub}:
        return True
    return actor.belongs_to(dataset.agency_id)


def _visible_to(actor: Actor | None) -> ColumnElement[bool]:
    """The SQL form of ``can_discover``."""
    if actor is None:
        return Dataset.visibility == Visibility.public.value
    if actor.is_admin:
        return true()
    shared = Dataset.visibility.in_([Visibility.public.value, Visibility.hub.value])
    if actor.agency_id is None:
        return shared
    return or_(shared, Dataset.agency_id == actor.agency_id)


def list_datasets(
    *,
    db: Session,
    actor: Actor | None,
    agency: str | None = None,
    include_purged: bool = False,
) -> list[Dataset]:
    """Every dataset the caller may discover, by reference."""
    query = select(Dataset).where(_visible_to(actor))
    if agency is not None:
        query = query.where(Dataset.agency_id == agency_service.get_agency(db=db, slug=agency).id)
    if not include_purged:
        query = query.where(Dataset.purged_at.is_(None))
    datasets = list(db.scalars(query))
    return sorted(datasets, key=lambda d: d.ref)


# ---------------------------------------------------------------------------- search


def search(
    *,
    db: Session,
    actor: Actor | None,
    q: str | None = None,
    agency: str | None = None,
    theme: str | None = None,
    visibility: str | None = None,
    classification: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> SearchResult:
    """Full-text search over metadata and field names, with facet counts of the matches.

    Only datasets the caller may discover are matched or counted.
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise Invalid(f"limit must be 1..{MAX_PAGE} and offset ≥ 0", code="bad_page")
    if any("\x00" in value for value in (agency, theme, visibility, classification) if value):
        # No stored value holds NUL (and PostgreSQL refuses one in a query parameter).
        return SearchResult(total=0, items=[], facets=_facets([]))
    query = select(Dataset).where(_visible_to(actor), Dataset.purged_at.is_(None))
    ranking: dict[int, float] | None = None
    words = _WORD.findall(q or "")
    if words:
        ranking = _rank_matches(db, words)
        query = query.where(Dataset.id.in_(list(ranking)))
    filters: dict[str, Any] = {
        "theme": theme,
        "visibility": visibility,
        "classification": classification,
    }
    for name, value in filters.items():
        if value is not None:
            query = query.where(getattr(Dataset, name) == value)
    matches = list(db.scalars(query))
    if agency is not None:
        matches = [d for d in matches if d.agency.slug == agency]
    if ranking is not None:
        scores = ranking
        matches.sort(key=lambda d: (-scores[d.id], d.ref))
    else:
        matches.sort(key=lambda d: d.ref)
    return SearchResult(
        total=len(matches),
        items=[DatasetRead.of(d) for d in matches[offset : offset + limit]],
        facets=_facets(matches),
    )


def _facets(datasets: Sequence[Dataset]) -> dict[str, dict[str, int]]:
    values: dict[str, Counter[str]] = {name: Counter() for name in FACETS}
    for dataset in datasets:
        values["agency"][dataset.agency.slug] += 1
        values["visibility"][dataset.visibility] += 1
        values["classification"][dataset.classification] += 1
        if dataset.theme:
            values["theme"][dataset.theme] += 1
    return {name: dict(sorted(counter.items())) for name, counter in values.items()}


def _rank_matches(db: Session, words: list[str]) -> dict[int, float]:
    """Dataset id -> relevance (higher is better) for datasets matching every word (prefixes).

    A word matches as a prefix of a stemmed word (`sensors` finds `sensor`) or of a word as
    written (`hospita` finds `hospital`, whose stem `hospit` it does not prefix).
    """
    words = list(dict.fromkeys(word.lower() for word in words))
    if db.get_bind().dialect.name == "sqlite":
        return _rank_sqlite(db, words)
    return _rank_postgres(db, words)


_FTS_TABLES = ("dataset_fts", "dataset_fts_words")  # stemmed (porter), as written


def _rank_sqlite(db: Session, words: list[str]) -> dict[int, float]:
    # Each word quoted (so FTS5 operators in user text are inert) and prefix-matched.
    terms = ['"' + word.replace('"', "") + '"*' for word in words]
    either = " UNION ".join(f"SELECT rowid FROM {t} WHERE {t} MATCH :term" for t in _FTS_TABLES)
    matching: set[int] | None = None
    for term in terms:
        found = {int(row[0]) for row in db.execute(text(either), {"term": term})}
        matching = found if matching is None else matching & found
        if not matching:
            return {}
    scores: dict[int, float] = {}
    for table in _FTS_TABLES:
        rows = db.execute(
            text(f"SELECT rowid, bm25({table}, 10.0, 1.0) FROM {table} WHERE {table} MATCH :any"),
            {"any": " OR ".join(terms)},
        )
        for row in rows:
            rowid, score = int(row[0]), -float(row[1])
            scores[rowid] = max(scores.get(rowid, score), score)
    return {rowid: scores.get(rowid, 0.0) for rowid in matching or ()}


def _rank_postgres(db: Session, words: list[str]) -> dict[int, float]:
    stemmed = func.to_tsvector("english", Dataset.search_text)
    written = func.to_tsvector("simple", Dataset.search_text)
    condition = and_(
        *(
            or_(
                stemmed.op("@@")(func.to_tsquery("english", f"{word}:*")),
                written.op("@@")(func.to_tsquery("simple", f"{word}:*")),
            )
            for word in words
        )
    )
    rank = func.ts_rank(written, func.to_tsquery("simple", " | ".join(f"{w}:*" for w in words)))
    return {
        int(row[0]): float(row[1]) for row in db.execute(select(Dataset.id, rank).where(condition))
    }


def _index(db: Session, dataset: Dataset, schema: TableSchema) -> None:
    """Refresh the searchable text: metadata and field names, never data values."""
    fields = []
    for field in schema.fields:
        fields.extend([field.name, field.name.replace("_", " "), field.title or ""])
        fields.append(field.description or "")
    body = " ".join(
        [
            dataset.slug.replace("_", " "),
            dataset.agency.slug.replace("_", " "),
            dataset.agency.title,
            dataset.description,
            " ".join(dataset.keywords or []),
            dataset.theme or "",
            dataset.spatial or "",
            *fields,
        ]
    )
    dataset.search_text = f"{dataset.title} {body}"
    db.flush()
    if db.get_bind().dialect.name == "sqlite":
        for table in _FTS_TABLES:
            db.execute(text(f"DELETE FROM {table} WHERE rowid = :id"), {"id": dataset.id})
            db.execute(
                text(f"INSERT INTO {table}(rowid, title, body) VALUES (:id, :title, :body)"),
                {"id": dataset.id, "title": dataset.title, "body": body},
            )
