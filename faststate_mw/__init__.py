"""faststate_mw: server-side reactive state for Datastar apps on Starlette, FastHTML and FastAPI."""

from __future__ import annotations

from typing import Any, TypeVar

from ._config import StateConfig
from ._context import (
    UserContext,
    current_request,
    current_session,
    current_user,
    default_user_loader,
    load_user,
    rotate_session,
)
from ._events import EventAction, Expr, event, expr, requires_auth
from ._exceptions import (
    ArgumentError,
    AuthenticationError,
    AuthorizationError,
    BackendUnavailable,
    ConfigurationError,
    CSRFError,
    EventFailed,
    EventTimeout,
    FastStateError,
    InvalidPayload,
    MethodNotAllowed,
    MissingIdentifier,
    NoRequestContextError,
    PayloadTooLarge,
    RecordNotFound,
    RequestError,
    RequestTimeout,
    StoredStateError,
    TooManyRequests,
    UnknownEvent,
    UserError,
)
from ._limits import Limits
from ._markup import (
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
from ._metrics import Metrics
from ._middleware import FastStateMiddleware
from ._recorder import ChangeRecord, EventRecord, Recorder
from ._scopes import DEFAULT_TTLS, ScopeRule, StateScope, register_scope
from ._state import State
from ._store import StateStore, current_store
from ._viewspec import view, view_element_id
from ._writable import Writable, client_writable, server_owned
from .backends import Backend

__version__ = "0.1.0"

_S = TypeVar("_S", bound=State)


def _get_state(request: Any, state_cls: type[_S]) -> _S:
    """The seeds' helper, kept as a thin alias of ``state_cls.current()``. ``request`` is unused:
    the middleware's context already knows the request."""
    return state_cls.current()


__all__ = [
    "DATASTAR_CDN",
    "DEFAULT_TTLS",
    "ArgumentError",
    "AuthenticationError",
    "AuthorizationError",
    "Backend",
    "BackendUnavailable",
    "CSRFError",
    "ChangeRecord",
    "ConfigurationError",
    "EventAction",
    "EventFailed",
    "EventRecord",
    "EventTimeout",
    "Expr",
    "FastStateError",
    "FastStateMiddleware",
    "InvalidPayload",
    "Limits",
    "MethodNotAllowed",
    "Metrics",
    "MissingIdentifier",
    "NoRequestContextError",
    "PayloadTooLarge",
    "RecordNotFound",
    "Recorder",
    "RequestError",
    "RequestTimeout",
    "ScopeRule",
    "State",
    "StateConfig",
    "StateScope",
    "StateStore",
    "StoredStateError",
    "TooManyRequests",
    "UnknownEvent",
    "UserContext",
    "UserError",
    "Writable",
    "attr",
    "attrs_html",
    "bind",
    "client_writable",
    "current_request",
    "current_session",
    "current_store",
    "current_user",
    "datastar_script",
    "default_user_loader",
    "error_attrs",
    "event",
    "expr",
    "init",
    "load_user",
    "on",
    "register_scope",
    "requires_auth",
    "rotate_session",
    "server_owned",
    "show",
    "signals",
    "text",
    "view",
    "view_element_id",
]
