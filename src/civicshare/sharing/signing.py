"""Signed, short-lived file URLs and tamper-proof page tokens.

Delta Sharing clients fetch data files without their bearer token, so the URL itself must say
who may read what until when. A file URL carries a grant — recipient profile, agreement, dataset,
version, file kind and part, the policy fingerprint of the content, its size, an expiry — and an
HMAC-SHA256 over it under a key derived from the hub's master key. Verification is constant-time
and any change to any byte fails it. Grants are only signed statements: the server re-checks on
every request that the profile and agreement are still live, so revocation stops issued URLs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from civicshare.errors import Forbidden, Invalid

FILE_URL_LABEL = b"sharing:file-url:v1"
PAGE_TOKEN_LABEL = b"sharing:page-token:v1"

FileKind = Literal["snapshot", "cdf"]


@dataclass(frozen=True)
class FileGrant:
    """What one signed URL lets its holder read, and until when (Unix seconds)."""

    profile: str  # public id of the share profile (the recipient)
    agreement: str | None  # the agreement's public id; None for the open-data share
    dataset: int
    version: int
    kind: FileKind
    part: int
    fingerprint: str  # policy fingerprint of the content (see materialize.py)
    size: int
    expires: int
    base_version: int | None = None  # for a change file: the version it is compared with


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def sign_grant(key: bytes, grant: FileGrant) -> str:
    payload = json.dumps(asdict(grant), separators=(",", ":"), sort_keys=True).encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def verify_grant(key: bytes, token: str, *, now: float) -> FileGrant:
    """The grant of a genuine, unexpired token; ``Forbidden`` if altered or expired."""
    payload = _verified_payload(
        key, token, what="file URL", error=Forbidden, code="invalid_signature"
    )
    try:
        grant = FileGrant(**json.loads(payload))
    except (TypeError, ValueError) as exc:  # only a key holder could sign such a payload
        raise Forbidden("the file URL is not valid", code="invalid_signature") from exc
    if grant.expires <= now:
        raise Forbidden("the file URL has expired; query the table again", code="url_expired")
    return grant


def _verified_payload(
    key: bytes, token: str, *, what: str, error: type[Forbidden] | type[Invalid], code: str
) -> bytes:
    encoded_payload, dot, encoded_mac = token.partition(".")
    if not dot or not encoded_payload or not encoded_mac:
        raise error(f"the {what} is malformed", code=code)
    try:
        payload = _unb64(encoded_payload)
        given = _unb64(encoded_mac)
    except (ValueError, binascii.Error) as exc:
        raise error(f"the {what} is malformed", code=code) from exc
    if not hmac.compare_digest(given, _mac(key, payload)):
        raise error(f"the {what} signature does not match", code=code)
    return payload


def sign_page_token(key: bytes, *, scope: str, offset: int) -> str:
    """A page token bound to the listing it came from (``scope``) and to the recipient's key."""
    payload = json.dumps({"s": scope, "o": offset}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(key, payload))}"


def read_page_token(key: bytes, token: str, *, scope: str) -> int:
    """The offset a page token stands for; ``Invalid`` if forged, altered or from another list."""
    payload = _verified_payload(
        key, token, what="page token", error=Invalid, code="invalid_page_token"
    )
    try:
        data: dict[str, Any] = json.loads(payload)
        offset = data["o"]
        token_scope = data["s"]
    except (ValueError, KeyError, TypeError) as exc:
        raise Invalid("the page token is malformed", code="invalid_page_token") from exc
    if token_scope != scope or not isinstance(offset, int) or offset < 0:
        raise Invalid("the page token belongs to another listing", code="invalid_page_token")
    return offset
