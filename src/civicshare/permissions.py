"""Who may do what: the one place where roles are checked.

Every protected action has a rule here (a small function of the actor and the agency the action
touches). Services call ``authorize(actor, Action.X, agency_id=...)``; handlers never look at
roles themselves. Deny by default: an action without a rule is refused.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from civicshare.agency.models import Role
from civicshare.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    """The authenticated principal of a request or CLI command."""

    email: str
    role: Role
    user_id: int | None = None
    agency_id: int | None = None
    agency_slug: str | None = None
    kind: str = "person"
    token_id: str | None = None
    scopes: frozenset[str] | None = None
    # Set when the CLI administrator acts as someone else (`--as EMAIL`).
    acting_admin: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    def belongs_to(self, agency_id: int | None) -> bool:
        return agency_id is not None and self.agency_id == agency_id

    def audit_view(self) -> dict[str, Any]:
        """How the actor appears in audit records: identity, never credentials."""
        view: dict[str, Any] = {"email": self.email, "role": self.role.value, "kind": self.kind}
        if self.agency_slug:
            view["agency"] = self.agency_slug
        if self.token_id:
            view["token"] = self.token_id
        if self.acting_admin:
            view["acting_admin"] = self.acting_admin
        return view


CLI_ADMIN = Actor(email="hub-admin@cli", role=Role.admin, kind="system")


class Action(enum.StrEnum):
    # Each domain keeps its actions (and their rules below) under its own heading.
    # -- agency
    agency_create = "agency.create"
    agency_read = "agency.read"
    user_create = "user.create"
    user_read = "user.read"
    user_update = "user.update"
    token_create_own = "token.create_own"
    token_manage_any = "token.manage_any"
    # -- audit
    audit_read_all = "audit.read_all"
    audit_read_agency = "audit.read_agency"
    audit_read_own = "audit.read_own"
    # -- catalog
    dataset_create = "dataset.create"
    dataset_update = "dataset.update"
    dataset_purge = "dataset.purge"
    # -- storage
    storage_write = "storage.write"
    storage_gc = "storage.gc"
    key_rotate = "key.rotate"

    # -- ingest
    ingest_run = "ingest.run"
    ingest_read = "ingest.read"
    # -- policy
    agreement_request = "policy.agreement_request"
    agreement_decide = "policy.agreement_decide"
    agreement_read = "policy.agreement_read"
    objection_manage = "policy.objection_manage"
    objection_read = "policy.objection_read"
    # -- query
    query_run = "query.run"

    # -- web

    # -- sharing
    share_profile_create = "sharing.profile_create"
    share_profile_manage = "sharing.profile_manage"
    open_data_profile_create = "sharing.open_data_profile_create"


Rule = Callable[[Actor, int | None], bool]


def _admin_only(actor: Actor, _agency_id: int | None) -> bool:
    return actor.is_admin


def _anyone(_actor: Actor, _agency_id: int | None) -> bool:
    return True


def _admin_or_agency_steward(actor: Actor, agency_id: int | None) -> bool:
    return actor.is_admin or (actor.role is Role.steward and actor.belongs_to(agency_id))


def _admin_or_agency_staff(actor: Actor, agency_id: int | None) -> bool:
    staff = {Role.steward, Role.auditor}
    return actor.is_admin or (actor.role in staff and actor.belongs_to(agency_id))


def _person_or_service(actor: Actor, _agency_id: int | None) -> bool:
    return actor.kind in {"person", "service", "system"}


def _admin_or_agency_member(actor: Actor, agency_id: int | None) -> bool:
    members = {Role.steward, Role.analyst}
    return actor.is_admin or (actor.role in members and actor.belongs_to(agency_id))


def _admin_auditor_or_agency_member(actor: Actor, agency_id: int | None) -> bool:
    if actor.is_admin or actor.role is Role.auditor:
        return True
    return actor.role in {Role.steward, Role.analyst} and actor.belongs_to(agency_id)


def _auditor_or_admin(actor: Actor, _agency_id: int | None) -> bool:
    return actor.is_admin or actor.role is Role.auditor


RULES: dict[str, Rule] = {
    # -- agency
    Action.agency_create: _admin_only,
    Action.agency_read: _anyone,
    Action.user_create: _admin_or_agency_steward,
    Action.user_read: _admin_or_agency_staff,
    Action.user_update: _admin_or_agency_steward,
    Action.token_create_own: _person_or_service,
    Action.token_manage_any: _admin_only,
    # -- audit
    Action.audit_read_all: _auditor_or_admin,
    Action.audit_read_agency: _admin_or_agency_staff,
    Action.audit_read_own: _person_or_service,
    # -- catalog
    Action.dataset_create: _admin_or_agency_steward,
    Action.dataset_update: _admin_or_agency_steward,
    Action.dataset_purge: _admin_or_agency_steward,
    # -- storage
    Action.storage_write: _admin_or_agency_steward,
    Action.storage_gc: _admin_only,
    Action.key_rotate: _admin_only,
    # -- ingest
    Action.ingest_run: _admin_or_agency_steward,
    Action.ingest_read: _admin_or_agency_staff,
    # -- policy
    Action.agreement_request: _admin_or_agency_member,
    Action.agreement_decide: _admin_or_agency_steward,
    Action.agreement_read: _admin_auditor_or_agency_member,
    Action.objection_manage: _admin_or_agency_steward,
    Action.objection_read: _admin_or_agency_staff,
    # -- query
    # Which rows and columns a query may read is decided per dataset by policy.policy_view.
    Action.query_run: _person_or_service,
    # -- web
    # -- sharing
    # The provider agency's steward issues and revokes profiles for its agreements.
    Action.share_profile_create: _admin_or_agency_steward,
    Action.share_profile_manage: _admin_or_agency_steward,
    Action.open_data_profile_create: _person_or_service,
}


def scope_allows(actor: Actor, action: str) -> bool:
    """A token with scopes may only do actions whose name or domain is listed."""
    if actor.scopes is None:
        return True
    domain = action.split(".", 1)[0]
    return action in actor.scopes or domain in actor.scopes


def is_allowed(actor: Actor, action: Action | str, *, agency_id: int | None = None) -> bool:
    rule = RULES.get(str(action))
    if rule is None:
        return False
    return scope_allows(actor, str(action)) and bool(rule(actor, agency_id))


def authorize(actor: Actor, action: Action | str, *, agency_id: int | None = None) -> None:
    """Raise ``Forbidden`` unless the actor may perform ``action`` on ``agency_id``'s things."""
    if not is_allowed(actor, action, agency_id=agency_id):
        raise Forbidden(
            f"{actor.role.value} {actor.email} may not {action}",
            code="permission_denied",
            details={"action": str(action)},
        )
