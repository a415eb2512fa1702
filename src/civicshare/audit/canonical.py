"""RFC 8785 canonical JSON for audit records, on the C encoder when that is provably the same.

``rfc8785.dumps`` walks the value in Python; for a record it costs more than the two SQL
statements that store it. For the values records are made of (ASCII strings, integers in the
safe range, booleans, null, lists and objects with string keys, no floats) ``json.dumps`` with
sorted keys and no spaces writes exactly the RFC 8785 bytes: both escape the same characters the
same way, and for ASCII keys sorting by code point is sorting by UTF-16 unit as RFC 8785 asks.
Anything else (a float, non-ASCII text, a huge integer) goes to ``rfc8785``.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

SAFE_INTEGER = 2**53 - 1  # beyond it an integer is not exact in JSON's double (RFC 8785 §3.2.2.3)


def dumps(value: Any) -> bytes:
    """The RFC 8785 bytes of ``value`` (raises like ``rfc8785.dumps`` for what it rejects)."""
    if _plain(value):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if text.isascii():
            return text.encode("ascii")
    return rfc8785.dumps(value)


def _plain(value: Any) -> bool:
    """No floats, no integers outside the safe range, only string keys (text is checked after)."""
    if value is None or isinstance(value, (str, bool)):
        return True
    if isinstance(value, int):
        return -SAFE_INTEGER <= value <= SAFE_INTEGER
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    return False
