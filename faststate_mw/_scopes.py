"""Scopes decide which requests share one state instance, and so how its key is built.

Keys are hierarchical, readable strings::

    global:Counter                 one for the app
    session:<sid>:Counter          one per browser session
    user:<uid>:Profile             one per authenticated user
    component:<sid>:Widget:<cid>   one per component id, inside a session
    record:Product:<rid>           one per record id
    temporary:<sid>:Wizard         one per session, short-lived
    tenant:<tid>:Settings          a custom scope (see :class:`ScopeRule`)

Every part that comes from a client or a user (user ids, record ids, custom owners) is
percent-encoded, so it can never contain ``:`` and no id can produce another scope's or another
owner's key. Component ids are validated instead (they also name signals on the page).
"""

from __future__ import annotations

import re
import secrets
import warnings
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from ._auth import OWNER_FIELDS
from ._context import RequestContext, UserContext
from ._exceptions import AuthenticationError, ConfigurationError, InvalidPayload, MissingIdentifier


class StateScope(StrEnum):
    """Who shares one instance of a state."""

    GLOBAL = "global"  #: one instance for the whole app
    SESSION = "session"  #: one per browser session (the default)
    USER = "user"  #: one per authenticated user, across sessions and devices
    COMPONENT = "component"  #: one per component id, inside a session
    RECORD = "record"  #: one per record id, shared by everyone on that record
    TEMPORARY = "temporary"  #: one per session, dropped after a short idle time


#: Default idle time to live, in seconds, by scope (None: kept until removed).
DEFAULT_TTLS: dict[str, float | None] = {
    StateScope.GLOBAL: None,
    StateScope.SESSION: 24 * 3600.0,
    StateScope.USER: None,
    StateScope.COMPONENT: 24 * 3600.0,
    StateScope.RECORD: None,
    StateScope.TEMPORARY: 15 * 60.0,
}

#: Idle ttl, in seconds, of a RECORD state without a ``load`` hook (and no ttl of its own): any
#: client can make up record ids, so what it creates must not be kept forever.
RECORD_TTL_WITHOUT_LOAD = 3600.0

MAX_ID_LENGTH = 256
_COMPONENT_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def escape_id(value: Any, what: str = "id") -> str:
    """Percent-encode an id for use inside a key; reject empty or over-long ids (400)."""
    text = str(value)
    if not text:
        raise MissingIdentifier(f"empty {what}")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidPayload(f"{what} longer than {MAX_ID_LENGTH} characters")
    return quote(text, safe="")


def validate_component_id(value: str) -> str:
    """Component ids name signals on the page: a letter or ``_``, then letters, digits, ``_``."""
    if not isinstance(value, str) or not _COMPONENT_ID.fullmatch(value):
        raise InvalidPayload(
            "component id must be 1-64 characters: a letter or '_' then letters, digits or '_'"
        )
    return value


def new_component_id() -> str:
    """A fresh random component id."""
    return "c" + secrets.token_hex(6)


class ScopeRule:
    """How one scope builds keys. Subclass it and :func:`register_scope` it to add a scope.

    ``owner(ctx)`` returns the part of the key that says whose instance it is (None for a single
    app-wide instance). The key is ``<name>:<escaped owner>:<StateName>``. It decides who reaches
    what: never take it from anything a client chooses freely. Example, a tenant scope taken from
    a header that a proxy in front of the app sets (and drops the client's own)::

        class TenantScope(ScopeRule):
            name = "tenant"

            def owner(self, ctx):
                return ctx.request.headers.get("x-tenant") or ctx.request.url.hostname

        register_scope(TenantScope())
        class Settings(State):
            __faststate__ = StateConfig(scope="tenant")
    """

    #: the scope's name: ``StateConfig(scope=name)`` and the first part of its keys
    name: str = ""
    #: idle time to live used when the StateConfig sets none
    default_ttl: float | None = None
    #: the id that selects an instance inside the owner ("component", "record"), if any
    identity: str | None = None
    #: whether building a key may read the user (custom rules: assume so)
    needs_user: bool = True

    def owner(self, ctx: RequestContext) -> str | None:
        """Whose instance this request reaches (None: no owner, a 400)."""
        raise NotImplementedError

    def owner_matches(self, key: str, state_name: str, user: UserContext | None) -> bool:
        """Whether ``user`` may still see ``key`` (checked when a live stream's user changes).
        Scopes keyed by something other than the user keep their keys. A rule that reads the
        user (``needs_user``) and does not override this loses its keys on a stream whose user
        id changes (a sign-out, another user signing in), since it cannot tell."""
        return True

    def keeps(
        self, key: str, state_name: str, previous: UserContext | None, user: UserContext | None
    ) -> bool:
        """Whether a live stream keeps ``key`` when its user changes from ``previous`` to
        ``user`` (see :meth:`owner_matches`)."""
        if not self.owner_matches(key, state_name, user):
            return False
        if not self.needs_user or type(self).owner_matches is not ScopeRule.owner_matches:
            return True
        return (previous.id if previous else None) == (user.id if user else None)

    def on_create(self, inst: Any, ctx: RequestContext | None) -> None:
        """A new instance was made for ``ctx`` (before anyone sees it)."""

    def key(self, state_name: str, ctx: RequestContext | None, ident: str | None) -> str:
        """The store key of ``state_name``'s instance for ``ctx`` (and ``ident``, the record or
        component id): ``<name>:<escaped owner>:<state_name>``. Override :meth:`owner`, not this."""
        if ctx is None:
            raise MissingIdentifier(f"scope {self.name!r} needs a request to build its key")
        owner = self.owner(ctx)
        if owner is None:
            raise MissingIdentifier(f"scope {self.name!r}: this request has no owner")
        return f"{self.name}:{escape_id(owner, self.name)}:{state_name}"


class _Global(ScopeRule):
    name = StateScope.GLOBAL
    needs_user = False

    def key(self, state_name: str, ctx: RequestContext | None, ident: str | None) -> str:
        return f"global:{state_name}"


class _Session(ScopeRule):
    name = StateScope.SESSION
    needs_user = False
    default_ttl = DEFAULT_TTLS[StateScope.SESSION]

    def owner(self, ctx: RequestContext) -> str | None:
        return ctx.session_id()

    def key(self, state_name: str, ctx: RequestContext | None, ident: str | None) -> str:
        if ctx is None:
            raise MissingIdentifier("a session-scoped state needs a request")
        return f"{self.name}:{ctx.session_id()}:{state_name}"


class _Temporary(_Session):
    name = StateScope.TEMPORARY
    default_ttl = DEFAULT_TTLS[StateScope.TEMPORARY]


class _User(ScopeRule):
    name = StateScope.USER

    def owner(self, ctx: RequestContext) -> str | None:
        user = ctx.user
        if user is None:
            raise AuthenticationError("sign in to use this state")
        return user.id

    def owner_matches(self, key: str, state_name: str, user: UserContext | None) -> bool:
        return user is not None and key == f"{self.name}:{escape_id(user.id)}:{state_name}"

    def on_create(self, inst: Any, ctx: RequestContext | None) -> None:
        """A new instance belongs to its user: fill an empty owner field."""
        user = ctx.user if ctx is not None else None
        if user is None:
            return
        for name in OWNER_FIELDS:
            if name in type(inst).model_fields and getattr(inst, name) in (None, "", 0):
                setattr(inst, name, user.id)
                return


class _Component(ScopeRule):
    name = StateScope.COMPONENT
    needs_user = False
    default_ttl = DEFAULT_TTLS[StateScope.COMPONENT]
    identity = "component_id"

    def key(self, state_name: str, ctx: RequestContext | None, ident: str | None) -> str:
        if ctx is None:
            raise MissingIdentifier("a component state needs a request (its session)")
        if ident is None:
            raise MissingIdentifier("a component state needs a component id")
        cid = validate_component_id(ident)
        return f"component:{ctx.session_id()}:{state_name}:{cid}"


class _Record(ScopeRule):
    name = StateScope.RECORD
    needs_user = False
    identity = "record_id"

    def key(self, state_name: str, ctx: RequestContext | None, ident: str | None) -> str:
        if ident is None:
            raise MissingIdentifier(
                f"{state_name} is a record state: the URL needs a record_id (or id) in its path "
                "or query"
            )
        return f"record:{state_name}:{escape_id(ident, 'record id')}"


_RULES: dict[str, ScopeRule] = {}


def _qualified(cls: type) -> tuple[str, str]:
    """A class's module and name: a class defined again (a reload) is the same rule."""
    return cls.__module__, cls.__qualname__


def register_scope(rule: ScopeRule) -> ScopeRule:
    """Add a custom scope, named by a lower-case identifier that is not a built-in scope's.
    Registering a name again replaces its rule (with a warning when the class differs)."""
    if not rule.name or not re.fullmatch(r"[a-z][a-z0-9_]*", rule.name):
        raise ConfigurationError("a scope name must be a lower-case identifier")
    if rule.name in set(StateScope):
        raise ConfigurationError(f"{rule.name!r} is a built-in scope")
    old = _RULES.get(rule.name)
    if old is not None and _qualified(type(old)) != _qualified(type(rule)):
        warnings.warn(
            f"scope {rule.name!r} re-registered: {type(rule).__qualname__} replaces "
            f"{type(old).__module__}.{type(old).__qualname__}",
            stacklevel=2,
        )
    _RULES[rule.name] = rule
    return rule


for _rule in (_Global(), _Session(), _Temporary(), _User(), _Component(), _Record()):
    _RULES[_rule.name] = _rule


def scope_rule(scope: str) -> ScopeRule:
    """The rule of a built-in or registered scope; a ConfigurationError if unknown."""
    try:
        return _RULES[scope]
    except KeyError:
        raise ConfigurationError(
            f"unknown scope {scope!r}; register custom scopes with register_scope()"
        ) from None


__all__ = [
    "DEFAULT_TTLS",
    "RECORD_TTL_WITHOUT_LOAD",
    "ScopeRule",
    "StateScope",
    "escape_id",
    "register_scope",
    "scope_rule",
]
