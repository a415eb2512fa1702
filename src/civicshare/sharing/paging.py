"""``maxResults``/``pageToken`` paging of the protocol's list endpoints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from civicshare.errors import Invalid
from civicshare.sharing.signing import read_page_token, sign_page_token

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_page_token: str | None


def paginate(
    items: Sequence[T],
    *,
    key: bytes,
    scope: str,
    max_results: int | None,
    page_token: str | None,
) -> Page[T]:
    """One page of ``items``; tokens are signed and only valid for the same ``scope``."""
    if max_results is not None and max_results < 0:
        raise Invalid("maxResults must be non-negative", code="invalid_max_results")
    size = DEFAULT_PAGE_SIZE if max_results is None else min(max_results, MAX_PAGE_SIZE)
    offset = 0 if not page_token else read_page_token(key, page_token, scope=scope)
    end = offset + size
    following = sign_page_token(key, scope=scope, offset=end) if end < len(items) else None
    return Page(items=items[offset:end], next_page_token=following)
