"""A read-only, CKAN-compatible view of the hub's open data (CKAN's Action API, version 3).

Packages are public datasets, organizations the agencies publishing them, and each package has
one datastore resource: its rows as the public may see them. Row reads go through the governed
query engine as the anonymous public, so they are authorised, treated and audited like any
other query; nothing private is reachable from here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shlex
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlglot
from sqlalchemy.orm import Session
from sqlglot import exp

from civicshare.agency.models import Agency, Role
from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset
from civicshare.errors import Invalid, NotFound
from civicshare.hub import Hub
from civicshare.permissions import Actor
from civicshare.query import service as query
from civicshare.query.formats import jsonable

# The anonymous public, as the query engine and the audit log see CKAN API callers.
PUBLIC = Actor(email="public@open-data-api", role=Role.viewer, kind="service")

_NAMESPACE = uuid.UUID("2b7c3d8e-5d6a-4f38-9b61-0c0f1e6b4a11")
DEFAULT_ROWS, MAX_ROWS = 10, 1000
DEFAULT_LIMIT, MAX_LIMIT = 100, 32000
SEARCH_FACETS = ("organization", "tags", "res_format", "license_id", "groups")
RESOURCE_FORMAT = "CSV"
_FQ_FIELDS = {"organization", "tags", "res_format", "license_id", "name", "groups"}
_SORT_FIELDS = {
    "score": None,
    "name": lambda d: d.ref,
    "title_string": lambda d: d.title.lower(),
    "metadata_modified": lambda d: d.updated_at,
    "metadata_created": lambda d: d.created_at,
}


# ---------------------------------------------------------------------------- names and ids


def package_name(dataset: Dataset) -> str:
    """CKAN names allow no dot: ``agency.dataset`` becomes ``agency--dataset``."""
    return f"{dataset.agency.slug}--{dataset.slug}"


def package_id(dataset: Dataset) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"package:{dataset.id}"))


def resource_id(dataset: Dataset) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"resource:{dataset.id}"))


def organization_id(agency: Agency) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"organization:{agency.id}"))


def public_datasets(db: Session) -> list[Dataset]:
    return catalog.list_datasets(db=db, actor=None)


def find_package(db: Session, ref: str) -> Dataset:
    """A public dataset by package id, name (``agency--dataset``) or ``agency.dataset``."""
    for dataset in public_datasets(db):
        if ref in {package_id(dataset), package_name(dataset), dataset.ref}:
            return dataset
    raise NotFound(f"package '{ref}' not found")


def find_resource(db: Session, ref: str) -> Dataset:
    for dataset in public_datasets(db):
        if ref in {resource_id(dataset), dataset.ref}:
            return dataset
    raise NotFound(f"resource '{ref}' not found")


# ---------------------------------------------------------------------------- dictionaries


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat()


def organization_dict(agency: Agency, *, package_count: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": organization_id(agency),
        "name": agency.slug,
        "title": agency.title,
        "display_name": agency.title,
        "description": "",
        "type": "organization",
        "is_organization": True,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
        "created": _timestamp(agency.created_at),
    }
    if package_count is not None:
        body["package_count"] = package_count
    return body


def resource_dict(dataset: Dataset, *, base_url: str) -> dict[str, Any]:
    rid = resource_id(dataset)
    return {
        "id": rid,
        "package_id": package_id(dataset),
        "name": f"{dataset.title} (CSV)",
        "description": "All rows of the latest version, as published.",
        "format": RESOURCE_FORMAT,
        "mimetype": "text/csv",
        "url": f"{base_url}/datastore/dump/{rid}",
        "url_type": "datastore",
        "datastore_active": True,
        "state": "active",
        "position": 0,
        "created": _timestamp(dataset.created_at),
        "last_modified": _timestamp(dataset.updated_at),
    }


def package_dict(dataset: Dataset, *, base_url: str) -> dict[str, Any]:
    keywords = list(dataset.keywords or [])
    extras = {
        "theme": dataset.theme,
        "spatial": dataset.spatial,
        "temporal_start": dataset.temporal_start.isoformat() if dataset.temporal_start else None,
        "temporal_end": dataset.temporal_end.isoformat() if dataset.temporal_end else None,
        "frequency": dataset.frequency,
        "civicshare_ref": dataset.ref,
    }
    return {
        "id": package_id(dataset),
        "name": package_name(dataset),
        "title": dataset.title,
        "notes": dataset.description,
        "type": "dataset",
        "state": "active",
        "private": False,
        "license_id": dataset.license or "notspecified",
        "license_title": dataset.license or "License not specified",
        "maintainer_email": dataset.contact,
        "author": dataset.agency.title,
        "owner_org": organization_id(dataset.agency),
        "organization": organization_dict(dataset.agency),
        "metadata_created": _timestamp(dataset.created_at),
        "metadata_modified": _timestamp(dataset.updated_at),
        "tags": [
            {"name": word, "display_name": word, "state": "active", "vocabulary_id": None}
            for word in keywords
        ],
        "num_tags": len(keywords),
        "groups": [{"name": dataset.theme, "title": dataset.theme}] if dataset.theme else [],
        "resources": [resource_dict(dataset, base_url=base_url)],
        "num_resources": 1,
        "extras": [{"key": k, "value": v} for k, v in extras.items() if v is not None],
    }


# ---------------------------------------------------------------------------- parameters


def int_param(params: Mapping[str, Any], name: str, default: int, *, maximum: int) -> int:
    value = params.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Invalid(f"{name}: Invalid integer", code="validation_error") from None
    if number < 0:
        raise Invalid(f"{name}: Must be a natural number", code="validation_error")
    return min(number, maximum)


def bool_param(params: Mapping[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"true", "1", "yes", "on"}


def str_list(value: Any, *, name: str) -> list[str]:
    """CKAN accepts lists as JSON arrays or as comma-separated strings."""
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise Invalid(f"{name}: expected a list of strings", code="validation_error")


# ---------------------------------------------------------------------------- packages


def package_list(*, db: Session, limit: int | None, offset: int) -> list[str]:
    names = sorted(package_name(dataset) for dataset in public_datasets(db))
    return names[offset : offset + limit] if limit is not None else names[offset:]


def package_show(*, db: Session, ref: str, base_url: str) -> dict[str, Any]:
    return package_dict(find_package(db, ref), base_url=base_url)


def _facet_values(dataset: Dataset) -> dict[str, list[str]]:
    return {
        "organization": [dataset.agency.slug],
        "tags": list(dataset.keywords or []),
        "res_format": [RESOURCE_FORMAT],
        "license_id": [dataset.license or "notspecified"],
        "groups": [dataset.theme] if dataset.theme else [],
        "name": [package_name(dataset)],
    }


def parse_fq(fq: str) -> list[tuple[str, str]]:
    """``field:value`` terms (values may be quoted), AND-ed; other Solr syntax is refused."""
    try:
        terms = shlex.split(fq.replace("+", " ").replace(" AND ", " "))
    except ValueError as exc:
        raise Invalid(f"fq: {exc}", code="search_query_error") from None
    parsed = []
    for term in terms:
        field, colon, value = term.partition(":")
        field = field.lstrip("+")
        if not colon or field not in _FQ_FIELDS or not value:
            raise Invalid(
                f"fq: unsupported term '{term}'; use field:value with one of "
                f"{', '.join(sorted(_FQ_FIELDS))}",
                code="search_query_error",
            )
        parsed.append((field, value.strip('"')))
    return parsed


def _sort_key(sort: str) -> tuple[str, bool]:
    field, _, direction = sort.strip().partition(" ")
    direction = direction.strip().lower() or "asc"
    if field not in _SORT_FIELDS or direction not in {"asc", "desc"}:
        raise Invalid(
            f"sort: unsupported '{sort}'; use one of {', '.join(_SORT_FIELDS)} with asc or desc",
            code="search_query_error",
        )
    return field, direction == "desc"


def package_search(*, db: Session, params: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    rows = int_param(params, "rows", DEFAULT_ROWS, maximum=MAX_ROWS)
    start = int_param(params, "start", 0, maximum=10**9)
    q = str(params.get("q") or "").strip()
    matches = _matching(db, "" if q in {"*:*", "*"} else q)
    for field, value in parse_fq(str(params.get("fq") or "")):
        matches = [d for d in matches if value in _facet_values(d)[field]]
    sort = str(params.get("sort") or ("score desc, metadata_modified desc" if q else "name asc"))
    matches = _sorted(matches, sort.split(",")[0])
    facet_fields = str_list(params.get("facet.field"), name="facet.field")
    unknown = [name for name in facet_fields if name not in SEARCH_FACETS]
    if unknown:
        raise Invalid(f"facet.field: unsupported {', '.join(unknown)}", code="search_query_error")
    limit = int_param(params, "facet.limit", 50, maximum=1000)
    counts = {name: _count(matches, name) for name in facet_fields}
    return {
        "count": len(matches),
        "sort": sort,
        "results": [package_dict(d, base_url=base_url) for d in matches[start : start + rows]],
        "facets": {name: dict(counter.most_common(limit)) for name, counter in counts.items()},
        "search_facets": {
            name: {
                "title": name,
                "items": [
                    {"name": value, "display_name": value, "count": count}
                    for value, count in counter.most_common(limit)
                ],
            }
            for name, counter in counts.items()
        },
    }


def _matching(db: Session, q: str) -> list[Dataset]:
    """Public datasets matching ``q`` (the catalog's full-text search), best first."""
    if not q:
        return public_datasets(db)
    by_ref = {dataset.ref: dataset for dataset in public_datasets(db)}
    found: list[Dataset] = []
    offset = 0
    while True:
        page = catalog.search(db=db, actor=None, q=q, limit=catalog.MAX_PAGE, offset=offset)
        found.extend(by_ref[item.ref] for item in page.items if item.ref in by_ref)
        offset += catalog.MAX_PAGE
        if offset >= page.total:
            return found


def _sorted(datasets: list[Dataset], sort: str) -> list[Dataset]:
    field, descending = _sort_key(sort)
    key = _SORT_FIELDS[field]
    if key is None:  # score: the search's own ranking
        return datasets
    return sorted(datasets, key=key, reverse=descending)


def _count(datasets: Iterable[Dataset], facet: str) -> Counter[str]:
    counter: Counter[str] = Counter()
    for dataset in datasets:
        counter.update(_facet_values(dataset)[facet])
    return counter


# ---------------------------------------------------------------------------- organizations


def _publishers(db: Session) -> dict[str, tuple[Agency, int]]:
    found: dict[str, tuple[Agency, int]] = {}
    for dataset in public_datasets(db):
        agency, count = found.get(dataset.agency.slug, (dataset.agency, 0))
        found[dataset.agency.slug] = (agency, count + 1)
    return found


def organization_list(*, db: Session, all_fields: bool) -> list[Any]:
    """Agencies that publish open data (an agency with none is not an open-data publisher)."""
    publishers = _publishers(db)
    names = sorted(publishers)
    if not all_fields:
        return names
    return [organization_dict(publishers[n][0], package_count=publishers[n][1]) for n in names]


def organization_show(
    *, db: Session, ref: str, include_datasets: bool, base_url: str
) -> dict[str, Any]:
    for slug, (agency, count) in _publishers(db).items():
        if ref in {slug, organization_id(agency)}:
            body = organization_dict(agency, package_count=count)
            if include_datasets:
                body["packages"] = [
                    package_dict(d, base_url=base_url)
                    for d in public_datasets(db)
                    if d.agency.slug == slug
                ]
            return body
    raise NotFound(f"organization '{ref}' not found")


# ---------------------------------------------------------------------------- datastore

_CKAN_TYPES = (
    (pa.types.is_boolean, "bool"),
    (pa.types.is_integer, "int"),
    (pa.types.is_floating, "numeric"),
    (pa.types.is_decimal, "numeric"),
    (pa.types.is_timestamp, "timestamp"),
    (pa.types.is_date, "date"),
    (pa.types.is_time, "time"),
)


def ckan_type(data_type: pa.DataType) -> str:
    for test, name in _CKAN_TYPES:
        if test(data_type):
            return name
    return "text"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class DatastoreQuery:
    dataset: Dataset
    columns: list[str]  # the columns the public may read, in order
    fields: list[str]
    where: list[str]
    order: list[str]
    limit: int
    offset: int

    def sql(self) -> str:
        select = ", ".join(_quote(name) for name in self.fields)
        text = f"SELECT {select} FROM {self.dataset.agency.slug}.{self.dataset.slug}"
        if self.where:
            text += " WHERE " + _all(self.where)
        if self.order:
            text += " ORDER BY " + ", ".join(self.order)
        return text + f" LIMIT {self.limit} OFFSET {self.offset}"

    def count_sql(self) -> str:
        text = f"SELECT count(*) AS total FROM {self.dataset.agency.slug}.{self.dataset.slug}"
        if self.where:
            text += " WHERE " + _all(self.where)
        return text


def _all(conditions: list[str]) -> str:
    """The conjunction of ``conditions``, as nested ``if()``: the governed engine's function
    allow-list does not (yet) admit AND/OR, which sqlglot models as functions."""
    combined = conditions[-1]
    for condition in reversed(conditions[:-1]):
        combined = f"if({condition}, {combined}, false)"
    return combined


def _governed(hub: Hub, sql: str, **options: Any) -> query.QueryResult:
    """One governed query as the public, in a unit of work of its own.

    ``run_query`` ends the transaction of the session it is given before it runs (and so drops
    whatever that session held): a call that runs several queries in one session kept only the
    audit record of the last one, so the rows it served went unrecorded.
    """
    with hub.db.session() as db:
        return query.run_query(db=db, hub=hub, actor=PUBLIC, sql=sql, purpose=None, **options)


def _public_columns(hub: Hub, dataset: Dataset) -> list[str]:
    """The columns the public sees (an empty read through the governed engine says which)."""
    probe = _governed(hub, f"SELECT * FROM {dataset.agency.slug}.{dataset.slug} LIMIT 0")
    assert probe.table is not None
    return list(probe.table.column_names)


def datastore_query(
    *, hub: Hub, params: Mapping[str, Any], columns: list[str] | None = None
) -> DatastoreQuery:
    rid = params.get("resource_id") or params.get("id")
    if not rid:
        raise Invalid("resource_id: Missing value", code="validation_error")
    # Read apart from the queries' units: on SQLite a writing session holds the write turn
    # from its first statement, which the queries' own units wait for.
    with hub.db.read_session() as db:
        dataset = find_resource(db, str(rid))
    known = columns if columns is not None else _public_columns(hub, dataset)
    fields = str_list(params.get("fields"), name="fields") or known
    _check_columns(fields, known, "fields")
    return DatastoreQuery(
        dataset=dataset,
        columns=known,
        fields=fields,
        where=_filters(params.get("filters"), known) + _full_text(params.get("q"), known),
        order=_order(params.get("sort"), known),
        limit=int_param(params, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT),
        offset=int_param(params, "offset", 0, maximum=10**12),
    )


def _check_columns(names: Iterable[str], known: list[str], parameter: str) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise Invalid(
            f"{parameter}: field(s) not in resource: {', '.join(unknown)}",
            code="validation_error",
        )


# Stands for NULL in filters, and separates columns in full-text matching; no text holds it.
_UNIT_SEPARATOR = "\x1f"


def _filters(filters: Any, known: list[str]) -> list[str]:
    """``{"column": value or [values]}``: each column must equal one of its values."""
    if filters in (None, "", {}):
        return []
    if isinstance(filters, str):
        try:
            filters = json.loads(filters)
        except ValueError:
            raise Invalid("filters: not a JSON object", code="validation_error") from None
    if not isinstance(filters, dict):
        raise Invalid("filters: not a JSON object", code="validation_error")
    _check_columns(filters, known, "filters")
    clauses = []
    for name, value in filters.items():
        values = value if isinstance(value, list) else [value]
        # Compared as text (CKAN filters are strings), NULL standing in as the separator.
        text = f"coalesce(CAST({_quote(name)} AS VARCHAR), {_literal(_UNIT_SEPARATOR)})"
        options = [_UNIT_SEPARATOR if v is None else str(v) for v in values]
        if not options:
            raise Invalid(f"filters: no value given for {name}", code="validation_error")
        clauses.append(f"{text} IN ({', '.join(_literal(v) for v in options)})")
    return clauses


def _full_text(q: Any, known: list[str]) -> list[str]:
    """``q`` as a string matches any column; as an object, the named columns."""
    if q in (None, "", {}):
        return []
    if isinstance(q, str) and q.strip().startswith("{"):
        with contextlib.suppress(ValueError):
            q = json.loads(q)
    if isinstance(q, dict):
        _check_columns(q, known, "q")
        return [
            f"CAST({_quote(name)} AS VARCHAR) ILIKE {_literal('%' + str(text) + '%')}"
            for name, text in q.items()
        ]
    pattern = _literal("%" + str(q).replace(_UNIT_SEPARATOR, "") + "%")
    columns = ", ".join(f"CAST({_quote(name)} AS VARCHAR)" for name in known)
    return [f"concat_ws({_literal(_UNIT_SEPARATOR)}, {columns}) ILIKE {pattern}"]


def _order(sort: Any, known: list[str]) -> list[str]:
    clauses = []
    for item in str_list(sort, name="sort"):
        name, _, direction = item.strip().partition(" ")
        direction = direction.strip().lower() or "asc"
        name = name.strip('"')
        if direction not in {"asc", "desc"}:
            raise Invalid(f"sort: unsupported direction in '{item}'", code="validation_error")
        _check_columns([name], known, "sort")
        clauses.append(f"{_quote(name)} {direction.upper()}")
    return clauses


def datastore_search(*, hub: Hub, params: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """Rows of a resource, and their total: each read is a governed query, audited as one."""
    request = datastore_query(hub=hub, params=params)
    include_total = bool_param(params, "include_total", True)
    result = _governed(hub, request.sql(), max_rows=request.limit)
    assert result.table is not None
    body: dict[str, Any] = {
        "resource_id": resource_id(request.dataset),
        "fields": [
            {"id": field.name, "type": ckan_type(field.type)} for field in result.table.schema
        ],
        "records": [jsonable(row) for row in result.table.to_pylist()],
        "limit": request.limit,
        "offset": request.offset,
        "include_total": include_total,
        "_links": {
            "start": f"{base_url}/action/datastore_search?resource_id="
            f"{resource_id(request.dataset)}",
            "next": f"{base_url}/action/datastore_search?resource_id="
            f"{resource_id(request.dataset)}&offset={request.offset + request.limit}",
        },
    }
    if include_total:
        counted = _governed(hub, request.count_sql())
        assert counted.table is not None
        body["total"] = int(counted.table.column(0)[0].as_py())
        body["total_was_estimated"] = False
    return body


def datastore_search_sql(*, db: Session, hub: Hub, params: Mapping[str, Any]) -> dict[str, Any]:
    """CKAN-style SQL (tables named by resource id, or ``agency.dataset``), run governed."""
    sql = params.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise Invalid("sql: Missing value", code="validation_error")
    rewritten = _resource_tables(db, sql)
    result = query.run_query(
        db=db, hub=hub, actor=PUBLIC, sql=rewritten, purpose=None, max_rows=MAX_LIMIT
    )
    assert result.table is not None
    return {
        "sql": sql,
        "fields": [{"id": f.name, "type": ckan_type(f.type)} for f in result.table.schema],
        "records": [jsonable(row) for row in result.table.to_pylist()],
        "records_truncated": result.truncated,
    }


def _resource_tables(db: Session, sql: str) -> str:
    """Replace ``"<resource id>"`` table names with the datasets' ``agency.dataset`` names."""
    by_resource = {resource_id(d): d for d in public_datasets(db)}
    try:
        tree = sqlglot.parse_one(sql, read="duckdb")
    except sqlglot.errors.ParseError:
        return sql  # the governed engine explains what is wrong with it
    for table in tree.find_all(exp.Table):
        dataset = by_resource.get(table.name)
        if dataset is not None and not table.args.get("db"):
            table.set("this", exp.to_identifier(dataset.slug))
            table.set("db", exp.to_identifier(dataset.agency.slug))
    return tree.sql(dialect="duckdb")


def datastore_dump(*, db: Session, hub: Hub, rid: str) -> bytes:
    """The resource as CSV (all rows the public may see, through the governed engine)."""
    dataset = find_resource(db, rid)
    result = query.run_query(
        db=db,
        hub=hub,
        actor=PUBLIC,
        sql=f"SELECT * FROM {dataset.agency.slug}.{dataset.slug}",
        purpose=None,
        fmt="csv",
    )
    assert result.content is not None
    return result.content
