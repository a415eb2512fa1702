"""Signed file URLs and page tokens: genuine ones verify, any alteration or expiry does not."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicshare.errors import Forbidden, Invalid
from civicshare.sharing.signing import (
    FileGrant,
    read_page_token,
    sign_grant,
    sign_page_token,
    verify_grant,
)

KEY = b"k" * 32
GRANT = FileGrant(
    profile="shp_0123456789abcdef",
    agreement=7,
    dataset=3,
    version=2,
    kind="snapshot",
    part=0,
    fingerprint="ab" * 32,
    size=1234,
    expires=2_000_000_000,
)


def test_a_genuine_url_verifies_to_its_grant() -> None:
    assert verify_grant(KEY, sign_grant(KEY, GRANT), now=1_900_000_000) == GRANT


def test_an_expired_url_is_refused_with_its_own_code() -> None:
    with pytest.raises(Forbidden) as caught:
        verify_grant(KEY, sign_grant(KEY, GRANT), now=GRANT.expires)
    assert caught.value.code == "url_expired"


def test_another_hubs_key_does_not_verify() -> None:
    with pytest.raises(Forbidden) as caught:
        verify_grant(b"x" * 32, sign_grant(KEY, GRANT), now=0)
    assert caught.value.code == "invalid_signature"


@given(
    field=st.sampled_from(["profile", "agreement", "dataset", "version", "part", "size", "expires"])
)
def test_a_grant_with_any_field_changed_does_not_carry_the_old_signature(field: str) -> None:
    token = sign_grant(KEY, GRANT)
    value = getattr(GRANT, field)
    changed = dataclasses.replace(
        GRANT, **{field: value + "x" if isinstance(value, str) else value + 1}
    )
    forged = sign_grant(b"attacker" * 4, changed).split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(Forbidden):
        verify_grant(KEY, forged, now=0)


@given(position=st.integers(min_value=0), replacement=st.sampled_from("AQgw_-"))
def test_changing_any_character_of_the_url_token_is_refused(
    position: int, replacement: str
) -> None:
    token = sign_grant(KEY, GRANT)
    index = position % len(token)
    if token[index] == replacement or token[index] == ".":
        return
    tampered = token[:index] + replacement + token[index + 1 :]
    try:
        verified = verify_grant(KEY, tampered, now=0)
    except Forbidden:
        return
    # base64 padding bits can absorb a change without changing the decoded bytes.
    assert verified == GRANT


@pytest.mark.parametrize("token", ["", ".", "abc", "abc.", ".abc", "!!!.???", "a.b.c"])
def test_malformed_url_tokens_are_refused(token: str) -> None:
    with pytest.raises(Forbidden):
        verify_grant(KEY, token, now=0)


def test_page_tokens_round_trip_within_their_listing_only() -> None:
    token = sign_page_token(KEY, scope="shp_1:shares", offset=100)
    assert read_page_token(KEY, token, scope="shp_1:shares") == 100
    with pytest.raises(Invalid) as caught:
        read_page_token(KEY, token, scope="shp_2:shares")
    assert caught.value.code == "invalid_page_token"


@pytest.mark.parametrize("token", ["garbage", "e30.AAAA", "x" * 500])
def test_forged_page_tokens_are_refused(token: str) -> None:
    with pytest.raises(Invalid) as caught:
        read_page_token(KEY, token, scope="s")
    assert caught.value.code == "invalid_page_token"
