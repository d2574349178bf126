"""Authorization: ``requires_auth`` on events and states, and the audit log of denials.

The rules are declared with ``requires_auth`` (``_events.py``) or ``StateConfig``; this module
holds the rule itself and the audit log. Rules, the same for a whole state
(``StateConfig(requires_auth=..., permissions=..., roles=...)``) and for one event
(``@requires_auth(...)`` or ``@event(requires_auth=..., ...)``):

- ``requires_auth``: a user must be signed in, else 401 (:class:`AuthenticationError`);
- ``permissions``: the user needs **all** of them, else 403 (:class:`AuthorizationError`);
- ``roles``: the user needs **at least one** of them, else 403;
- ``owner_only`` (events): the user's id must equal the state's owner field (``user_id`` or
  ``owner_id`` unless ``owner_field=`` names another), else 403.

A user with the admin role (``UserContext.admin_role``, default ``"admin"``; set it to None to turn
this off) has every permission and passes ``owner_only``; it does not gain other roles. Naming any
permission, role or ``owner_only`` implies ``requires_auth``. Every denial is logged on the
``faststate_mw.audit`` logger with the state key, event, user id and reason: at WARNING, except
a signed-out visitor's page visit (usually redirected to the login page), which is INFO.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._context import UserContext
from ._exceptions import AuthenticationError, AuthorizationError, ConfigurationError

audit_log = logging.getLogger("faststate_mw.audit")

OWNER_FIELDS = ("user_id", "owner_id")


@dataclass(frozen=True)
class AuthRule:
    """What a state or an event demands of the user."""

    requires_auth: bool = False
    permissions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    owner_only: bool = False
    owner_field: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "permissions", _names(self.permissions, "permissions"))
        object.__setattr__(self, "roles", _names(self.roles, "roles"))
        if self.permissions or self.roles or self.owner_only:
            object.__setattr__(self, "requires_auth", True)

    def merged(self, other: AuthRule) -> AuthRule:
        """Both rules at once (the stricter union)."""
        return AuthRule(
            requires_auth=self.requires_auth or other.requires_auth,
            permissions=tuple(dict.fromkeys(self.permissions + other.permissions)),
            roles=tuple(dict.fromkeys(self.roles + other.roles)),
            owner_only=self.owner_only or other.owner_only,
            owner_field=self.owner_field or other.owner_field,
        )

    def failure(self, user: UserContext | None, state: Any = None) -> str | None:
        """Why ``user`` may not pass (None when they may). ``state`` is needed for owner_only."""
        if not self.requires_auth:
            return None
        if user is None:
            return "authentication required"
        missing = [p for p in self.permissions if not user.has_permission(p)]
        if missing:
            return f"missing permission: {', '.join(missing)}"
        if self.roles and not any(user.has_role(r) for r in self.roles):
            return f"requires one of the roles: {', '.join(self.roles)}"
        if self.owner_only and state is not None and not _is_admin(user):
            owner = getattr(state, self.owner_field or "", None)
            if owner in (None, "") or str(owner) != user.id:
                return "only the owner may do this"
        return None

    def check(
        self,
        user: UserContext | None,
        *,
        state: Any = None,
        key: str = "",
        event: str = "",
        anonymous_level: int = logging.WARNING,
    ) -> None:
        """Raise AuthenticationError (401) or AuthorizationError (403), logged, when denied.
        A denial of a signed-in user is logged at WARNING; one of an anonymous visitor at
        ``anonymous_level`` (a page visit of a signed-out visitor, usually sent on to the login
        page, is no attack: INFO)."""
        reason = self.failure(user, state)
        if reason is None:
            return
        audit_log.log(
            anonymous_level if user is None else logging.WARNING,
            "denied key=%s event=%s user=%s reason=%s",
            key or "-",
            event or "-",
            user.id if user else "anonymous",
            reason,
            extra={"faststate_key": key, "faststate_event": event, "user_id": user and user.id},
        )
        if user is None:
            raise AuthenticationError("sign in to do this")
        raise AuthorizationError(f"not allowed: {reason}")


def _is_admin(user: UserContext) -> bool:
    return UserContext.admin_role is not None and UserContext.admin_role in user.roles


def _names(values: Iterable[str] | str, what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    out = tuple(values)
    if not all(isinstance(v, str) and v for v in out):
        raise ConfigurationError(f"{what} must be non-empty strings")
    return out


def resolve_owner_field(
    state_name: str, fields: Mapping[str, Any], rule: AuthRule, event: str
) -> str:
    """The owner field an owner_only event compares with; a configuration error if none."""
    if rule.owner_field is not None:
        if rule.owner_field not in fields:
            raise ConfigurationError(
                f"{state_name}.{event}: owner_field {rule.owner_field!r} is not a field"
            )
        return rule.owner_field
    for name in OWNER_FIELDS:
        if name in fields:
            return name
    raise ConfigurationError(
        f"{state_name}.{event} is owner_only but the state has no owner field "
        f"({' or '.join(OWNER_FIELDS)}); add one or pass owner_field="
    )


__all__ = ["OWNER_FIELDS", "AuthRule", "audit_log", "resolve_owner_field"]
