"""faststate_mw: server-side reactive state for Datastar apps on Starlette, FastHTML and FastAPI."""

from __future__ import annotations

from typing import Any, TypeVar

from .auth import requires_auth
from .context import (
    UserContext,
    current_request,
    current_session,
    current_user,
    default_user_loader,
    load_user,
)
from .events import EventAction, event
from .exceptions import (
    ArgumentError,
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    CSRFError,
    EventFailed,
    FastStateError,
    InvalidPayload,
    MethodNotAllowed,
    MissingIdentifier,
    NoRequestContextError,
    PayloadTooLarge,
    RecordNotFound,
    RequestError,
    UnknownEvent,
)
from .markup import (
    DATASTAR_CDN,
    attr,
    attrs_html,
    bind,
    datastar_script,
    error_attrs,
    init,
    on,
    show,
    signals,
    text,
)
from .middleware import FastStateMiddleware
from .registry import StateRegistry, state_registry
from .scopes import ScopeRule, StateConfig, StateScope, register_scope
from .state import State, server_owned

__version__ = "0.1.0"

S = TypeVar("S", bound=State)


def _get_state(request: Any, state_cls: type[S]) -> S:
    """The seeds' helper, kept as a thin alias of ``state_cls.current()``. ``request`` is unused:
    the middleware's context already knows the request."""
    return state_cls.current()


__all__ = [
    "DATASTAR_CDN",
    "ArgumentError",
    "AuthenticationError",
    "AuthorizationError",
    "CSRFError",
    "ConfigurationError",
    "EventAction",
    "EventFailed",
    "FastStateError",
    "FastStateMiddleware",
    "InvalidPayload",
    "MethodNotAllowed",
    "MissingIdentifier",
    "NoRequestContextError",
    "PayloadTooLarge",
    "RecordNotFound",
    "RequestError",
    "ScopeRule",
    "State",
    "StateConfig",
    "StateRegistry",
    "StateScope",
    "UnknownEvent",
    "UserContext",
    "_get_state",
    "attr",
    "attrs_html",
    "bind",
    "current_request",
    "current_session",
    "current_user",
    "datastar_script",
    "default_user_loader",
    "error_attrs",
    "event",
    "init",
    "load_user",
    "on",
    "register_scope",
    "requires_auth",
    "server_owned",
    "show",
    "signals",
    "state_registry",
    "text",
]
