"""Scopes decide which requests share one state instance, and so how its key is built.

Keys are hierarchical, readable strings: ``global:Counter``, ``session:<sid>:Counter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from .context import RequestContext


class StateScope(StrEnum):
    """Who shares one instance of a state."""

    GLOBAL = "global"  #: one instance for the whole app
    SESSION = "session"  #: one per browser session (the default)
    USER = "user"  #: one per authenticated user
    COMPONENT = "component"  #: one per component id, inside a session
    RECORD = "record"  #: one per record id
    TEMPORARY = "temporary"  #: short-lived, per session


#: Scopes whose key rule is implemented in this release.
SUPPORTED_SCOPES = frozenset({StateScope.GLOBAL, StateScope.SESSION})


@dataclass(frozen=True)
class StateConfig:
    """How a State class is shared and protected.

    Register it with ``state_registry.register(MyState, StateConfig(...))`` or declare it on the
    class as ``__faststate__ = StateConfig(...)``.
    """

    scope: StateScope = StateScope.SESSION
    requires_auth: bool = False
    permissions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    ttl: float | None = None
    auto_persist: bool = False
    #: public name used in event URLs and keys (default: the class name)
    name: str | None = None
    #: signal namespace on the page (default: the name with a lower-case first letter)
    namespace: str | None = None
    #: put this state's signals at the top level (``$count``), as the seeds did
    flat_signals: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.scope, StateScope):
            try:
                object.__setattr__(self, "scope", StateScope(self.scope))
            except ValueError:
                raise ConfigurationError(f"unknown scope {self.scope!r}") from None
        object.__setattr__(self, "permissions", tuple(self.permissions))
        object.__setattr__(self, "roles", tuple(self.roles))
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigurationError("StateConfig.ttl must be a positive number of seconds")
        if self.name is not None and not _is_identifier(self.name):
            raise ConfigurationError(f"state name {self.name!r} must be a Python-style identifier")


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and name.isascii()


def state_key(name: str, config: StateConfig, ctx: RequestContext) -> str:
    """The key of the instance of state ``name`` that this request reaches."""
    scope = config.scope
    if scope is StateScope.GLOBAL:
        return f"global:{name}"
    if scope is StateScope.SESSION:
        return f"session:{ctx.session_id()}:{name}"
    raise ConfigurationError(f"scope {scope.value!r} is not available in this release")


__all__ = ["SUPPORTED_SCOPES", "StateConfig", "StateScope", "state_key"]
