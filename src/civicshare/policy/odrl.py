"""Exporting an agreement as an ODRL 2.2 ``Agreement`` in JSON-LD, for other data-space tools."""

from __future__ import annotations

from typing import Any

from civicshare.policy.models import Agreement

ODRL_CONTEXT = "http://www.w3.org/ns/odrl.jsonld"
XSD_DATETIME = "xsd:dateTime"


def odrl_agreement(agreement: Agreement, *, base_url: str) -> dict[str, Any]:
    """One permission per dataset: the purpose, the validity window and any daily count limit
    are constraints; aggregate-only becomes the ``aggregate`` action and treatments a duty to
    ``anonymize``."""
    base = base_url.rstrip("/")
    constraints: list[dict[str, Any]] = [
        {"leftOperand": "purpose", "operator": "eq", "rightOperand": agreement.purpose},
        _moment("gteq", agreement.valid_from.isoformat()),
        _moment("lt", agreement.valid_until.isoformat()),
    ]
    if agreement.max_queries_per_day is not None:
        constraints.append(
            {
                "leftOperand": "count",
                "operator": "lteq",
                "rightOperand": {"@value": agreement.max_queries_per_day, "@type": "xsd:integer"},
                "unit": "http://www.wikidata.org/entity/Q573",  # day
            }
        )
    action = "aggregate" if agreement.aggregate_only else "read"
    permissions = []
    for grant in agreement.grants:
        permission: dict[str, Any] = {
            "target": f"{base}/api/v1/datasets/{grant.dataset.ref}",
            "assigner": f"{base}/api/v1/agencies/{agreement.provider.slug}",
            "assignee": f"{base}/api/v1/agencies/{agreement.recipient.slug}",
            "action": action,
            "constraint": constraints,
        }
        if any(spec != "clear" for _name, spec in grant.columns) or agreement.aggregate_only:
            permission["duty"] = [{"action": "anonymize"}]
        permissions.append(permission)
    return {
        "@context": [ODRL_CONTEXT, {"dct": "http://purl.org/dc/terms/"}],
        "@type": "Agreement",
        "uid": f"{base}/api/v1/agreements/{agreement.public_id}",
        "assigner": f"{base}/api/v1/agencies/{agreement.provider.slug}",
        "assignee": f"{base}/api/v1/agencies/{agreement.recipient.slug}",
        "dct:title": agreement.title,
        "dct:description": agreement.purpose_text or None,
        "permission": permissions,
    }


def _moment(operator: str, value: str) -> dict[str, Any]:
    return {
        "leftOperand": "dateTime",
        "operator": operator,
        "rightOperand": {"@value": value, "@type": XSD_DATETIME},
    }
