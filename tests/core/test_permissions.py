"""Role checks: deny by default, one rule per action."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civicshare.agency.models import Role
from civicshare.errors import Forbidden
from civicshare.permissions import RULES, Action, Actor, authorize, is_allowed

roles = st.sampled_from(list(Role))
agency_ids = st.one_of(st.none(), st.integers(min_value=1, max_value=5))


def actor(role: Role, agency_id: int | None = 1, scopes: frozenset[str] | None = None) -> Actor:
    return Actor(email=f"{role.value}@x.example.org", role=role, agency_id=agency_id, scopes=scopes)


def test_every_action_has_a_rule() -> None:
    assert {str(a) for a in Action} <= set(RULES)


@given(role=roles, agency=agency_ids, name=st.text(min_size=1, max_size=30))
def test_unknown_actions_are_denied_to_everyone(role: Role, agency: int | None, name: str) -> None:
    if name in RULES:
        return
    assert not is_allowed(actor(role), name, agency_id=agency)


@given(role=roles, own=st.integers(1, 5), other=st.integers(1, 5))
def test_non_admins_never_act_on_other_agencies_users(role: Role, own: int, other: int) -> None:
    subject = actor(role, agency_id=own)
    allowed = is_allowed(subject, Action.user_create, agency_id=other)
    if role is Role.admin:
        assert allowed
    elif own != other:
        assert not allowed
    else:
        assert allowed == (role is Role.steward)


@given(role=roles, action=st.sampled_from(list(Action)), agency=agency_ids)
def test_scopes_only_narrow(role: Role, action: Action, agency: int | None) -> None:
    unscoped = is_allowed(actor(role), action, agency_id=agency)
    scoped = is_allowed(actor(role, scopes=frozenset({"agency.read"})), action, agency_id=agency)
    assert not scoped or unscoped
    if action is not Action.agency_read:
        assert not scoped


def test_forbidden_names_the_action_but_no_secret() -> None:
    with pytest.raises(Forbidden) as caught:
        authorize(actor(Role.analyst), Action.user_create, agency_id=1)
    assert caught.value.code == "permission_denied"
    assert "user.create" in caught.value.message
