"""The public catalogue as DCAT-AP 3 JSON-LD (https://semiceu.github.io/DCAT-AP/releases/3.0.0/).

Only public datasets appear. Mandatory properties are always present (catalogue title,
description, publisher, datasets; dataset title and description; distribution access URL);
recommended ones (contact point, keywords, publisher, spatial and temporal coverage, theme,
frequency, licence, format) wherever the dataset says them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicshare.catalog.models import Dataset, Visibility
from civicshare.config import Settings

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "locn": "http://www.w3.org/ns/locn#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "dcatap": "http://data.europa.eu/r5r/",
}
_EU = "http://publications.europa.eu/resource/authority"
# An absolute http(s) IRI: a host, then no spaces, controls or characters RFC 3987 excludes.
_IRI = re.compile(r"https?://[^\s\x00-\x1f\x7f/?#<>\"{}|\\^`]+[^\s\x00-\x1f\x7f<>\"{}|\\^`]*")
# Free-text themes mapped onto the EU data-theme vocabulary DCAT-AP requires for dcat:theme.
THEMES = {
    "health": "HEAL",
    "environment": "ENVI",
    "transport": "TRAN",
    "mobility": "TRAN",
    "population": "SOCI",
    "demographics": "SOCI",
    "society": "SOCI",
    "housing": "SOCI",
    "justice": "JUST",
    "safety": "JUST",
    "public safety": "JUST",
    "government": "GOVE",
    "economy": "ECON",
    "education": "EDUC",
    "energy": "ENER",
    "agriculture": "AGRI",
    "science": "TECH",
    "regions": "REGI",
}
FREQUENCIES = {
    "continuous": "CONT",
    "hourly": "HOURLY",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "annual": "ANNUAL",
    "irregular": "IRREG",
    "never": "NEVER",
}


def public_catalog(*, db: Session, settings: Settings) -> dict[str, Any]:
    """The DCAT-AP catalogue of every public, unpurged dataset."""
    base = settings.public_url.rstrip("/")
    datasets = sorted(
        db.scalars(
            select(Dataset).where(
                Dataset.visibility == Visibility.public.value, Dataset.purged_at.is_(None)
            )
        ),
        key=lambda d: d.ref,
    )
    catalog: dict[str, Any] = {
        "@context": CONTEXT,
        "@id": f"{base}/api/v1/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": _text(f"{settings.hub_name} open data"),
        "dct:description": _text(
            f"Open datasets published by the agencies of the {settings.hub_name} hub."
        ),
        "dct:publisher": {
            "@id": f"{base}/",
            "@type": "foaf:Agent",
            "foaf:name": settings.hub_name,
        },
        "foaf:homepage": {"@id": f"{base}/"},
        "dcat:dataset": [_dataset(d, base) for d in datasets],
    }
    if datasets:
        catalog["dct:modified"] = _datetime(max(d.updated_at for d in datasets))
    return catalog


def _dataset(dataset: Dataset, base: str) -> dict[str, Any]:
    url = f"{base}/api/v1/datasets/{dataset.agency.slug}/{dataset.slug}"
    node: dict[str, Any] = {
        "@id": url,
        "@type": "dcat:Dataset",
        "dct:identifier": dataset.ref,
        "dct:title": _text(dataset.title),
        "dct:description": _text(dataset.description or dataset.title),
        "dct:publisher": _agency(dataset, base),
        "dcat:contactPoint": _contact(dataset),
        "dct:issued": _datetime(dataset.created_at),
        "dct:modified": _datetime(dataset.updated_at),
        "dcat:distribution": [_distribution(dataset, url)],
    }
    keywords = list(dataset.keywords or []) + ([dataset.theme] if dataset.theme else [])
    if keywords:
        node["dcat:keyword"] = [_text(k) for k in dict.fromkeys(keywords)]
    theme = THEMES.get((dataset.theme or "").lower())
    if theme:
        node["dcat:theme"] = {"@id": f"{_EU}/data-theme/{theme}"}
    if dataset.spatial:
        node["dct:spatial"] = {"@type": "dct:Location", "locn:geographicName": dataset.spatial}
    if dataset.temporal_start or dataset.temporal_end:
        node["dct:temporal"] = _period(dataset.temporal_start, dataset.temporal_end)
    if dataset.frequency in FREQUENCIES:
        node["dct:accrualPeriodicity"] = {
            "@id": f"{_EU}/frequency/{FREQUENCIES[dataset.frequency]}"
        }
    return node


def _distribution(dataset: Dataset, url: str) -> dict[str, Any]:
    node: dict[str, Any] = {
        "@id": f"{url}#api",
        "@type": "dcat:Distribution",
        "dct:title": _text(f"{dataset.title} (hub API)"),
        "dct:description": _text(
            "Metadata, schema and versions through the hub API; rows through its query API."
        ),
        "dcat:accessURL": {"@id": url},
        "dct:format": {"@id": f"{_EU}/file-type/JSON"},
    }
    if dataset.license:
        node["dct:license"] = _license(dataset.license)
    return node


def _agency(dataset: Dataset, base: str) -> dict[str, Any]:
    return {
        "@id": f"{base}/api/v1/agencies/{dataset.agency.slug}",
        "@type": "foaf:Agent",
        "foaf:name": dataset.agency.title,
    }


def _contact(dataset: Dataset) -> dict[str, Any]:
    agency = dataset.agency
    email = dataset.contact or agency.contact_email
    contact: dict[str, Any] = {
        "@type": "vcard:Kind",
        "vcard:fn": agency.contact_name or agency.title,
    }
    if email:
        contact["vcard:hasEmail"] = {"@id": f"mailto:{email}"}
    return contact


def _license(value: str) -> dict[str, Any]:
    # The licence is free text: only a well-formed URL may become an IRI, since JSON-LD
    # processors drop a node whose @id is not one (and the licence with it).
    if _IRI.fullmatch(value):
        return {"@id": value, "@type": "dct:LicenseDocument"}
    return {"@type": "dct:LicenseDocument", "rdfs:label": value}


def _period(start: dt.date | None, end: dt.date | None) -> dict[str, Any]:
    period: dict[str, Any] = {"@type": "dct:PeriodOfTime"}
    if start:
        period["dcat:startDate"] = {"@value": start.isoformat(), "@type": "xsd:date"}
    if end:
        period["dcat:endDate"] = {"@value": end.isoformat(), "@type": "xsd:date"}
    return period


def _text(value: str) -> dict[str, str]:
    return {"@value": value, "@language": "en"}


def _datetime(moment: dt.datetime) -> dict[str, str]:
    return {"@value": moment.astimezone(dt.UTC).isoformat(), "@type": "xsd:dateTime"}
