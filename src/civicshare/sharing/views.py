"""HTTP routes of the sharing domain: share profiles under ``/api/v1``, and the open protocols
(Delta Sharing at ``/delta-sharing``) as ``extra_routers`` with prefixes of their own."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from civicshare.api.deps import Ctx
from civicshare.sharing import ckan_views, delta_views, profiles
from civicshare.sharing.models import (
    ShareProfile,
    ShareProfileCreate,
    ShareProfileCreated,
    ShareProfileRead,
)

router = APIRouter(tags=["sharing"])


def endpoint_for(request: Request) -> str:
    """The Delta Sharing endpoint as the caller reaches this hub."""
    return str(request.base_url).rstrip("/") + delta_views.PREFIX


def _created(profile: ShareProfile, secret: str, request: Request) -> ShareProfileCreated:
    return ShareProfileCreated(
        profile=ShareProfileRead.of(profile),
        profile_file=profiles.profile_file(profile, secret, endpoint=endpoint_for(request)),
    )


@router.post("/agreements/{agreement_id}/share-profiles", status_code=status.HTTP_201_CREATED)
def create_agreement_profile(
    agreement_id: str, request: Request, ctx: Ctx, body: ShareProfileCreate | None = None
) -> ShareProfileCreated:
    """A Delta Sharing profile for an agreement's share (the provider agency's steward)."""
    with ctx.unit() as db:
        profile, secret = profiles.issue_agreement_profile(
            db=db, actor=ctx.actor, agreement_id=agreement_id, data=body or ShareProfileCreate()
        )
        return _created(profile, secret, request)


@router.get("/agreements/{agreement_id}/share-profiles")
def list_agreement_profiles(agreement_id: str, ctx: Ctx) -> list[ShareProfileRead]:
    """Every share profile of an agreement (never their tokens)."""
    with ctx.read() as db:
        found = profiles.list_profiles(db=db, actor=ctx.actor, agreement_id=agreement_id)
        return [ShareProfileRead.of(profile) for profile in found]


@router.post("/sharing/profiles/open-data", status_code=status.HTTP_201_CREATED)
def create_open_data_profile(
    request: Request, ctx: Ctx, body: ShareProfileCreate | None = None
) -> ShareProfileCreated:
    """A Delta Sharing profile for the open-data share (public datasets)."""
    with ctx.unit() as db:
        profile, secret = profiles.issue_open_data_profile(
            db=db, actor=ctx.actor, data=body or ShareProfileCreate()
        )
        return _created(profile, secret, request)


@router.get("/sharing/profiles")
def list_profiles(ctx: Ctx) -> list[ShareProfileRead]:
    """The share profiles you created (administrators: all)."""
    with ctx.read() as db:
        return [ShareProfileRead.of(p) for p in profiles.list_profiles(db=db, actor=ctx.actor)]


@router.delete("/sharing/profiles/{profile_id}")
def revoke_profile(profile_id: str, ctx: Ctx) -> ShareProfileRead:
    """Revoke a share profile at once: its token and every file URL issued to it stop working."""
    with ctx.unit() as db:
        profile = profiles.revoke_own_profile(db=db, actor=ctx.actor, public_id=profile_id)
        return ShareProfileRead.of(profile)


extra_routers = [
    delta_views.router,
    delta_views.files_router,
    delta_views.fallback_router,
    ckan_views.router,
]
