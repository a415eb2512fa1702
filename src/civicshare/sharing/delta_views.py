"""The Delta Sharing REST API under ``/delta-sharing`` (PROTOCOL.md), for share profiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials

from civicshare.api.deps import HubDep, bearer
from civicshare.errors import NotFound, Unauthenticated
from civicshare.hub import Hub
from civicshare.sharing import profiles
from civicshare.sharing.paging import paginate
from civicshare.sharing.profiles import Recipient
from civicshare.sharing.protocol import DeltaSharingRoute
from civicshare.sharing.signing import PAGE_TOKEN_LABEL

PREFIX = "/delta-sharing"

router = APIRouter(prefix=PREFIX, tags=["delta-sharing"], route_class=DeltaSharingRoute)


@dataclass(frozen=True)
class RecipientContext:
    hub: Hub
    recipient: Recipient

    @property
    def page_key(self) -> bytes:
        return self.hub.keys.derive(PAGE_TOKEN_LABEL)


def get_recipient(
    hub: HubDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> RecipientContext:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("a share profile's bearer token is required")
    failure: Unauthenticated | None = None
    # Its own transaction, committed even when authentication fails, so the failure is audited.
    with hub.db.session() as db:
        try:
            recipient = profiles.authenticate_recipient(db=db, secret=credentials.credentials)
        except Unauthenticated as exc:
            failure = exc
    if failure is not None:
        raise failure
    return RecipientContext(hub=hub, recipient=recipient)


RecipientDep = Annotated[RecipientContext, Depends(get_recipient)]
MaxResults = Annotated[int | None, Query(alias="maxResults")]
PageToken = Annotated[str | None, Query(alias="pageToken")]


def _listing(items: list[dict[str, Any]], next_page_token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"items": items}
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return body


def _shares(recipient: Recipient) -> list[str]:
    names = [profiles.share_name(recipient.agreement_id)]
    if recipient.agreement_id is not None:
        names.append(profiles.OPEN_DATA_SHARE)
    return names


def _require_share(recipient: Recipient, share: str) -> str:
    name = share.lower()
    if name not in _shares(recipient):
        raise NotFound(f"share '{share}' does not exist or is not shared with you")
    return name


@router.get("/shares")
def list_shares(
    ctx: RecipientDep, max_results: MaxResults = None, page_token: PageToken = None
) -> dict[str, Any]:
    page = paginate(
        _shares(ctx.recipient),
        key=ctx.page_key,
        scope=f"{ctx.recipient.profile_id}:shares",
        max_results=max_results,
        page_token=page_token,
    )
    return _listing([{"name": name} for name in page.items], page.next_page_token)


@router.get("/shares/{share}")
def get_share(share: str, ctx: RecipientDep) -> dict[str, Any]:
    return {"share": {"name": _require_share(ctx.recipient, share)}}


# Mounted after every other router, so it only answers paths nothing else claimed.
fallback_router = APIRouter(prefix=PREFIX, route_class=DeltaSharingRoute)


@fallback_router.api_route(
    "/{path:path}",
    methods=["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH"],
    include_in_schema=False,
)
def unknown_endpoint(path: str, request: Request) -> None:
    raise NotFound(f"{request.method} {PREFIX}/{path} is not a Delta Sharing endpoint")
