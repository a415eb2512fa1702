"""``POST /api/v1/query``: a governed SQL query, answered as JSON, CSV, Arrow or Parquet."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from civicshare.api.deps import Ctx
from civicshare.query.service import MAX_TIMEOUT_SECONDS, run_query

router = APIRouter(tags=["query"])


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, description="One SELECT over agency.dataset names")
    purpose: str | None = Field(default=None, description="The purpose the query serves")
    format: str = Field(default="json", description="json | csv | arrow | parquet")
    max_rows: int | None = Field(default=None, gt=0)
    explain: bool = Field(default=False, description="Show the policy and rewritten SQL only")
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SECONDS)


@router.post("/query", response_model=None)
def query(body: QueryRequest, ctx: Ctx) -> dict[str, Any] | Response:
    with ctx.unit() as db:
        result = run_query(
            db=db,
            hub=ctx.hub,
            actor=ctx.actor,
            sql=body.sql,
            purpose=body.purpose,
            fmt=body.format,
            max_rows=body.max_rows,
            explain=body.explain,
            timeout=body.timeout,
        )
    headers = {
        "X-Civicshare-Audit-Index": str(result.audit_index),
        "X-Civicshare-Truncated": "true" if result.truncated else "false",
        "X-Civicshare-Suppressed-Cells": str(len(result.suppressed)),
    }
    if result.content is None:
        return result.response()
    return Response(result.content, media_type=result.media_type, headers=headers)
