"""My agency: a steward creates datasets from a sample file, uploads data, reads the history.

The pages only parse forms and render; inference is ``ingest.infer``, creation
``catalog.create_dataset``, uploads ``ingest.ingest_file`` and quarantines ``ingest.get_ingest``,
which decide who may do and see what. Uploaded files are read the way the API's ingest route
reads them: the multipart parser spools them into an unnamed temporary file sealed under a
key held only in memory (``api.uploads``), handed to the services as a stream. Addresses
that take files end in ``/upload`` so the hub's upload size limit (not the small form limit)
applies to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from civicshare.catalog import service as catalog
from civicshare.catalog.models import Dataset, DatasetCreate, DatasetRead, Frequency, Visibility
from civicshare.catalog.tableschema import CLASSIFICATION_ORDER, PII_KINDS, TableSchema
from civicshare.errors import (
    BadRequest,
    CivicshareError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from civicshare.ingest import infer
from civicshare.ingest import service as ingest
from civicshare.ingest.models import MODES, IngestDetail, IngestReport
from civicshare.ingest.validate import RULES
from civicshare.permissions import Action, Actor, is_allowed
from civicshare.storage import service as storage
from civicshare.web import security
from civicshare.web.context import Visitor, VisitorDep, get_visitor
from civicshare.web.forms import FieldErrors
from civicshare.web.render import PortalRoute, error_page, redirect, render

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

BASE = "/my-agency"
# Each proposed field adds a handful of inputs; this bounds what the form parser accepts.
MAX_FORM_FIELDS = 5000
MAX_TEXT = 20_000
DEFAULT_ERROR_PERCENT = "5"
# The sample ingested with a new dataset gets the CLI's default tolerance.
SAMPLE_ERROR_RATE = 0.05
# Errors the file readers raise about a file's contents, shown next to the file input.
FILE_ERRORS = (Invalid, UnsupportedMediaType)


# ---------------------------------------------------------------------------- form reading


async def read_upload_form(visitor: Visitor) -> FormData:
    """The multipart form of a logged-in person, after the CSRF check.

    Problems of the body itself (too large while streaming, malformed multipart) become the
    portal's error pages instead of a framework error.
    """
    visitor.require_actor()
    # htmx sends the token as a header: a forged request is refused before its file is read.
    early = visitor.request.headers.get(security.CSRF_HEADER) is not None
    if early:
        await visitor.check_csrf()
    try:
        form = await visitor.request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except HTTPException as exc:
        if exc.status_code == 413:
            raise _too_large(visitor) from None
        raise BadRequest("the form could not be read; reload the page and retry") from None
    if not early:
        await visitor.check_csrf()
    return form


def _too_large(visitor: Visitor) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the file is larger than this hub accepts ({_size(upload_limit(visitor))}); "
        "split it or ask the hub administrator",
        code="payload_too_large",
    )


def upload_limit(visitor: Visitor) -> int:
    return visitor.hub.settings.max_upload_bytes


def _size(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def _texts(form: FormData) -> dict[str, str]:
    return {key: str(value)[:MAX_TEXT] for key, value in form.items() if isinstance(value, str)}


def _file(form: FormData, errors: FieldErrors) -> UploadFile | None:
    value = form.get("file")
    if not isinstance(value, UploadFile) or not value.filename:
        errors.add("file", "Choose a file to upload.")
        return None
    return value


class UploadLimitPages:
    """Answers an over-the-limit portal upload with a page, before the API's JSON refusal.

    The hub refuses bodies over its upload limit by their declared length before any handler
    runs; for the portal's upload forms that refusal is an HTML message the person can read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(BASE + "/") and path.endswith("/upload"):
            declared = dict(scope["headers"]).get(b"content-length", b"")
            limit = scope["app"].state.hub.settings.max_upload_bytes
            if declared.isdigit() and int(declared) > limit:
                response = await run_in_threadpool(_refusal_page, Request(scope, receive), path)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal_page(request: Request, path: str) -> Response:
    """The upload form's own page with the size error next to the file field (status 413)."""
    visitor = get_visitor(request)
    errors = FieldErrors()
    errors.add("file", _too_large(visitor).message[:1].upper() + _too_large(visitor).message[1:])
    try:
        _actor, agency = _agency_of(visitor)
        if path == f"{BASE}/new/upload":
            return _new_page(visitor, agency, {}, None, errors, status=413)
        slug = path.removeprefix(BASE + "/").removesuffix("/upload")
        return _dataset_page(visitor, slug, _upload_defaults(), None, errors, status=413)
    except CivicshareError as exc:
        return error_page(request, exc)


# ---------------------------------------------------------------------------- my agency


def _agency_of(visitor: Visitor) -> tuple[Actor, str]:
    actor = visitor.require_actor()
    if actor.agency_slug is None:
        raise Forbidden("you belong to no agency, so there is no agency page for you")
    return actor, actor.agency_slug


def _is_steward(actor: Actor) -> bool:
    return is_allowed(actor, Action.ingest_run, agency_id=actor.agency_id)


@router.get(BASE)
def agency_home(visitor: VisitorDep) -> Response:
    actor, agency = _agency_of(visitor)
    with visitor.read() as db:
        found = catalog.list_datasets(db=db, actor=actor, agency=agency)
        rows = [
            {
                "dataset": DatasetRead.of(d),
                "versions": len(storage.list_versions(db=db, dataset=d)),
            }
            for d in found
            if d.agency_id == actor.agency_id
        ]
    context = {"agency": agency, "rows": rows, "steward": _is_steward(actor)}
    return render(visitor, "agency.html", context)


# ---------------------------------------------------------------------------- create a dataset


@dataclass
class Proposal:
    """The schema inferred from the sample, shown for review with the steward's choices."""

    schema: TableSchema
    choices: dict[str, infer.FieldChoice]


def _creator(visitor: Visitor) -> tuple[Actor, str]:
    """A person who may create datasets in their agency (``create_dataset`` checks it again)."""
    actor, agency = _agency_of(visitor)
    if not is_allowed(actor, Action.dataset_create, agency_id=actor.agency_id):
        raise Forbidden("only a data steward of the agency can create datasets")
    return actor, agency


@router.get(BASE + "/new")
def new_dataset(visitor: VisitorDep) -> Response:
    _actor, agency = _creator(visitor)
    values = {"visibility": "private", "ingest_sample": "1"}
    return _new_page(visitor, agency, values, None, FieldErrors())


@router.post(BASE + "/new/upload")
async def new_dataset_submit(visitor: VisitorDep) -> Response:
    actor, agency = _creator(visitor)  # before the file is read: nobody else gets inference
    form = await read_upload_form(visitor)
    values = _texts(form)
    errors = FieldErrors()
    upload = _file(form, errors)
    proposal = await run_in_threadpool(_propose, upload, errors) if upload else None
    if proposal is not None and not values.get("slug") and upload and upload.filename:
        values["slug"] = infer.sql_name(upload.filename.rsplit(".", 1)[0])[:63]
    if "name_0" not in values:  # the first proposal: the defaults of the editor's choices
        values.setdefault("ingest_sample", "1")
        values.setdefault("visibility", "private")
    if values.get("step") != "create" or proposal is None:
        # The first step (or a file that could not be read): show the proposal for review.
        status = 422 if errors else 200
        return _new_page(visitor, agency, values, proposal, errors, status=status)
    reviewed = _reviewed(proposal, values, errors)
    data = _dataset_create(values, agency, reviewed, errors) if reviewed else None
    if data is None or errors:
        return _new_page(visitor, agency, values, proposal, errors, status=422)
    assert upload is not None
    outcome = await run_in_threadpool(_create, visitor, actor, data, upload, values, errors)
    if outcome is None:
        return _new_page(visitor, agency, values, proposal, errors, status=422)
    return redirect(visitor, outcome)


def _propose(upload: UploadFile, errors: FieldErrors) -> Proposal | None:
    try:
        schema = infer.infer_schema(upload.file, filename=upload.filename)
    except FILE_ERRORS as exc:
        errors.add("file", f"This file cannot be read: {exc.message}")
        return None
    choices = {
        f.name: infer.FieldChoice(
            classification=f.classification,
            pii=f.pii,
            required=f.constraints.required,
            unique=f.constraints.unique,
        )
        for f in schema.fields
    }
    return Proposal(schema=schema, choices=choices)


def _reviewed(
    proposal: Proposal, values: dict[str, str], errors: FieldErrors
) -> TableSchema | None:
    """The proposal with the choices made in the form; None (with errors) if they do not fit."""
    names = [values.get(f"name_{i}") for i in range(len(proposal.schema.fields))]
    if names != proposal.schema.field_names:
        errors.add("file", "The file's columns differ from the reviewed ones; review them again.")
        return None
    choices: dict[str, infer.FieldChoice] = {}
    for i, field in enumerate(proposal.schema.fields):
        classification = values.get(f"classification_{i}", "")
        pii = values.get(f"pii_{i}", "") or None
        if classification not in CLASSIFICATION_ORDER:
            errors.add(f"classification_{i}", "Choose a classification.")
        if pii is not None and pii not in PII_KINDS:
            errors.add(f"pii_{i}", "Choose a kind of personal data from the list.")
        choices[field.name] = infer.FieldChoice(
            classification=classification,
            pii=pii,
            required=bool(values.get(f"required_{i}")),
            unique=bool(values.get(f"unique_{i}")),
        )
    proposal.choices = choices
    if errors:
        return None
    try:
        return infer.adjust_schema(proposal.schema, choices=choices)
    except Invalid as exc:
        errors.add("fields", exc.message)
        return None


def _dataset_create(
    values: dict[str, str], agency: str, schema: TableSchema, errors: FieldErrors
) -> DatasetCreate | None:
    keywords = [k.strip() for k in values.get("keywords", "").split(",") if k.strip()]
    try:
        return DatasetCreate(
            agency=agency,
            slug=values.get("slug", "").strip(),
            title=values.get("title", "").strip(),
            description=values.get("description", "").strip(),
            keywords=keywords,
            theme=values.get("theme", "").strip() or None,
            license=values.get("license", "").strip() or None,
            contact=values.get("contact", "").strip() or None,
            frequency=values.get("frequency") or None,
            visibility=values.get("visibility", ""),
            table_schema=schema,
        )
    except ValidationError as exc:
        errors.add_validation(exc)
        return None


def _create(
    visitor: Visitor,
    actor: Actor,
    data: DatasetCreate,
    upload: UploadFile,
    values: dict[str, str],
    errors: FieldErrors,
) -> str | None:
    """Create the dataset (and ingest the sample) in one transaction; the next page's address."""
    report: IngestReport | None = None
    failure: CivicshareError | None = None
    try:
        with visitor.unit() as db:
            dataset = catalog.create_dataset(db=db, actor=actor, data=data)
            if values.get("ingest_sample"):
                report = _ingest(
                    db, visitor, actor, dataset, upload, "append", None, SAMPLE_ERROR_RATE
                )
    except (Conflict, Invalid, UnsupportedMediaType, Forbidden) as exc:
        failure = exc
    if failure is not None:
        errors.add(_create_field(failure), _with_fields(failure))
        return None
    target = f"{BASE}/{data.slug}"
    return f"{target}/ingests/{report.id}" if report is not None else target


def _with_fields(error: CivicshareError) -> str:
    """The message, naming the columns it is about so the steward knows which to change."""
    named = error.details.get("fields") if isinstance(error.details, dict) else None
    if isinstance(named, list) and named:
        return f"{error.message}: {', '.join(str(name) for name in named)}"
    return error.message


def _create_field(error: CivicshareError) -> str:
    by_code = {
        "dataset_exists": "slug",
        "public_dataset_has_protected_fields": "visibility",
    }
    return by_code.get(error.code, "file" if isinstance(error, FILE_ERRORS) else "form")


def _new_page(
    visitor: Visitor,
    agency: str,
    values: dict[str, str],
    proposal: Proposal | None,
    errors: FieldErrors,
    *,
    status: int = 200,
) -> Response:
    fields = []
    if proposal is not None:
        for i, field in enumerate(proposal.schema.fields):
            choice = proposal.choices[field.name]
            fields.append({"index": i, "field": field, "choice": choice})
    context = {
        "agency": agency,
        "values": values,
        "proposal": proposal,
        "fields": fields,
        "primary_key": proposal.schema.primaryKey if proposal else [],
        "classifications": CLASSIFICATION_ORDER,
        "pii_kinds": sorted(PII_KINDS),
        "visibilities": [v.value for v in Visibility],
        "frequencies": [f.value for f in Frequency],
        "errors": errors,
        "max_bytes": upload_limit(visitor),
        "max_size": _size(upload_limit(visitor)),
    }
    return render(visitor, "agency_new.html", context, status=status)


# ---------------------------------------------------------------------------- a dataset


def _own_dataset(visitor: Visitor, db: Session, slug: str) -> Dataset:
    actor, agency = _agency_of(visitor)
    dataset = catalog.get_visible_dataset(db=db, actor=actor, ref=f"{agency}.{slug[:63]}")
    if dataset.agency_id != actor.agency_id:  # pragma: no cover - the ref names the agency
        raise NotFound(f"no dataset '{slug[:63]}' in your agency", code="dataset_not_found")
    return dataset


@router.get(BASE + "/{slug}")
def dataset_page(visitor: VisitorDep, slug: str) -> Response:
    return _dataset_page(visitor, slug, _upload_defaults(), None, FieldErrors())


def _upload_defaults() -> dict[str, Any]:
    return {"mode": "append", "max_error_percent": DEFAULT_ERROR_PERCENT, "key": []}


def _dataset_page(
    visitor: Visitor,
    slug: str,
    values: dict[str, Any],
    detail: IngestDetail | None,
    errors: FieldErrors,
    *,
    status: int = 200,
) -> Response:
    actor, _agency = _agency_of(visitor)
    with visitor.read() as db:
        dataset = _own_dataset(visitor, db, slug)
        schema = catalog.current_schema(db=db, dataset=dataset)
        versions = storage.list_versions(db=db, dataset=dataset)
        schemas = catalog.schema_versions(db=db, dataset=dataset)
        # Upload reports are for the agency's stewards and auditors (``ingest.read``).
        try:
            ingests: list[IngestReport] | None = ingest.list_ingests(
                db=db, actor=actor, dataset=dataset
            )
        except Forbidden:
            ingests = None
        read = DatasetRead.of(dataset)
    by_version = {r.version: r for r in ingests or [] if r.version is not None}
    context = {
        "dataset": read,
        "schema": schema,
        "versions": [
            {"version": v, "ingest": by_version.get(v.number)}
            for v in sorted(versions, key=lambda v: v.number, reverse=True)
        ],
        "schemas": sorted(schemas, key=lambda s: s.number, reverse=True),
        "ingests": sorted(ingests, key=lambda r: r.started_at, reverse=True) if ingests else [],
        "may_read_reports": ingests is not None,
        "steward": _is_steward(actor),
        "modes": MODES,
        "values": values,
        "detail": detail,
        "rules": RULES,
        "errors": errors,
        "max_bytes": upload_limit(visitor),
        "max_size": _size(upload_limit(visitor)),
    }
    return render(visitor, "agency_dataset.html", context, status=status)


@router.post(BASE + "/{slug}/upload")
async def upload_data(visitor: VisitorDep, slug: str) -> Response:
    form = await read_upload_form(visitor)
    actor, _agency = _agency_of(visitor)
    values: dict[str, Any] = {**_upload_defaults(), **_texts(form)}
    values["key"] = [str(k)[:128] for k in form.getlist("key") if isinstance(k, str)]
    errors = FieldErrors()
    upload = _file(form, errors)
    rate = _error_rate(values.get("max_error_percent", ""), errors)
    if values["mode"] not in MODES:
        errors.add("mode", "Choose how the file changes the data.")
    if values["mode"] in ("upsert", "delete") and not values["key"]:
        values["key"] = []  # the schema's primary key, if any, is the service's default
    if errors or upload is None or rate is None:
        return _dataset_page(visitor, slug, values, None, errors, status=422)
    detail = await run_in_threadpool(_upload, visitor, actor, slug, upload, values, rate, errors)
    if detail is None:
        return _dataset_page(visitor, slug, values, None, errors, status=422)
    return _dataset_page(visitor, slug, _upload_defaults(), detail, errors)


def _error_rate(raw: str, errors: FieldErrors) -> float | None:
    try:
        percent = float(raw.strip().rstrip("%"))
    except ValueError:
        percent = math.nan
    if not 0 <= percent <= 100:  # also false for nan
        errors.add("max_error_percent", "Enter a percentage between 0 and 100.")
        return None
    return percent / 100


def _upload(
    visitor: Visitor,
    actor: Actor,
    slug: str,
    upload: UploadFile,
    values: dict[str, Any],
    rate: float,
    errors: FieldErrors,
) -> IngestDetail | None:
    """Ingest the file, then read its report with the quarantine (values as the actor may)."""
    failure: CivicshareError | None = None
    try:
        with visitor.unit() as db:
            dataset = _own_dataset(visitor, db, slug)
            keys = values["key"] or None
            report = _ingest(db, visitor, actor, dataset, upload, values["mode"], keys, rate)
    except (Invalid, UnsupportedMediaType, Gone) as exc:
        failure = exc
    if failure is not None:
        errors.add(_upload_field(failure), failure.message)
        return None
    return _detail(visitor, actor, slug, report.id)


def _ingest(
    db: Session,
    visitor: Visitor,
    actor: Actor,
    dataset: Dataset,
    upload: UploadFile,
    mode: str,
    key: list[str] | None,
    rate: float,
) -> IngestReport:
    return ingest.ingest_file(
        db=db,
        hub=visitor.hub,
        actor=actor,
        dataset=dataset,
        source=upload.file,
        filename=upload.filename or "upload",
        mode=mode,
        key=key,
        max_error_rate=rate,
    )


def _upload_field(error: CivicshareError) -> str:
    by_code = {
        "bad_mode": "mode",
        "bad_key": "key",
        "key_required": "key",
        "bad_error_rate": "max_error_percent",
    }
    return by_code.get(error.code, "file")


def _detail(visitor: Visitor, actor: Actor, slug: str, ingest_id: str) -> IngestDetail:
    # Its own transaction: reading a quarantine is audited, committed here.
    with visitor.unit() as db:
        dataset = _own_dataset(visitor, db, slug)
        return ingest.get_ingest(
            db=db, hub=visitor.hub, actor=actor, dataset=dataset, ingest_id=ingest_id[:64]
        )


@router.get(BASE + "/{slug}/ingests/{ingest_id}")
def ingest_page(visitor: VisitorDep, slug: str, ingest_id: str) -> Response:
    actor, _agency = _agency_of(visitor)
    detail = _detail(visitor, actor, slug, ingest_id)
    with visitor.unit() as db:
        read = DatasetRead.of(_own_dataset(visitor, db, slug))
    context = {"dataset": read, "detail": detail, "rules": RULES}
    return render(visitor, "agency_ingest.html", context)
