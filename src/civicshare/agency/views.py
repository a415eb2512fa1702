"""HTTP routes for agencies, users and tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from civicshare.agency import service
from civicshare.agency.models import (
    AgencyCreate,
    AgencyRead,
    TokenCreate,
    TokenCreated,
    TokenRead,
    UserCreate,
    UserRead,
)
from civicshare.api.deps import Ctx

router = APIRouter(tags=["agencies"])


@router.get("/agencies")
def list_agencies(ctx: Ctx) -> list[AgencyRead]:
    with ctx.read() as db:
        return [AgencyRead.of(a) for a in service.list_agencies(db=db, actor=ctx.actor)]


@router.post("/agencies", status_code=status.HTTP_201_CREATED)
def create_agency(body: AgencyCreate, ctx: Ctx) -> AgencyRead:
    with ctx.unit() as db:
        return AgencyRead.of(service.create_agency(db=db, actor=ctx.actor, data=body))


@router.get("/agencies/{slug}")
def get_agency(slug: str, ctx: Ctx) -> AgencyRead:
    with ctx.read() as db:
        return AgencyRead.of(service.get_agency(db=db, slug=slug))


@router.get("/users")
def list_users(ctx: Ctx, agency: Annotated[str | None, Query()] = None) -> list[UserRead]:
    with ctx.read() as db:
        return [UserRead.of(u) for u in service.list_users(db=db, actor=ctx.actor, agency=agency)]


@router.get("/users/me")
def whoami(ctx: Ctx) -> UserRead:
    with ctx.read() as db:
        return UserRead.of(service.get_user(db=db, email=ctx.actor.email))


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(body: UserCreate, ctx: Ctx) -> UserRead:
    with ctx.unit() as db:
        return UserRead.of(service.create_user(db=db, actor=ctx.actor, data=body))


@router.get("/tokens")
def list_tokens(ctx: Ctx, user: Annotated[str | None, Query()] = None) -> list[TokenRead]:
    with ctx.read() as db:
        tokens = service.list_tokens(db=db, actor=ctx.actor, email=user)
        return [TokenRead.of(t) for t in tokens]


@router.post("/tokens", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, ctx: Ctx) -> TokenCreated:
    with ctx.unit() as db:
        token, secret = service.create_token(
            db=db, actor=ctx.actor, data=body, default_ttl_days=ctx.hub.settings.token_ttl_days
        )
        return TokenCreated(**TokenRead.of(token).model_dump(), token=secret)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: str, ctx: Ctx) -> TokenRead:
    with ctx.unit() as db:
        return TokenRead.of(service.revoke_token(db=db, actor=ctx.actor, token_id=token_id))
