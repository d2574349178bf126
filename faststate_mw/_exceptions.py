"""The error tree of faststate_mw.

Every error a request can cause carries an HTTP ``status`` and a short machine ``code``; the
middleware turns them into replies (see README, "Errors") and never into a 500 or a traceback::

    FastStateError
    ├── ConfigurationError          bad setup, raised at import / registration time
    ├── NoRequestContextError       State.current() outside a request handled by the middleware
    ├── RequestError (400)          bad input from a client; the state is left unchanged
    │   ├── InvalidPayload (400)    malformed or non-object JSON
    │   ├── MissingIdentifier (400) a scope needs an id the request does not carry
    │   ├── UnknownEvent (404)      no such state or event
    │   ├── RecordNotFound (404)    a load hook found no such record
    │   ├── MethodNotAllowed (405)
    │   ├── PayloadTooLarge (413)   a body, or a state after the change, over its size cap
    │   ├── RequestTimeout (408)    the request body did not arrive within the read timeout
    │   ├── TooManyRequests (429)   a rate or count limit was hit (``Retry-After`` when known)
    │   ├── ArgumentError (422)     arguments missing, unknown or of the wrong type
    │   └── UserError (400)         raised by an event to show its message to the user
    ├── CSRFError (403)             a state-changing event without Datastar's header or same origin
    ├── AuthenticationError (401)   no user where one is required
    ├── AuthorizationError (403)    a user without the required right
    ├── EventFailed (500)           the event itself raised; the state was rolled back
    ├── EventTimeout (504)          the event ran past the event timeout; cancelled, rolled back
    ├── StoredStateError (500)      a stored state cannot be read back (names the key)
    └── BackendUnavailable (503)    the storage / pub-sub backend is down; nothing was written
"""

from __future__ import annotations

import math
from typing import Any


class FastStateError(Exception):
    """Base of every faststate_mw error."""

    status: int = 500
    code: str = "error"

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra HTTP headers of the error reply (e.g. ``Retry-After``)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        """The public, JSON-safe form of the error sent to clients."""
        out: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


class ConfigurationError(FastStateError, ValueError):
    """The app's setup is wrong (raised when a state or event is defined or registered)."""

    code = "configuration_error"


class NoRequestContextError(FastStateError, RuntimeError):
    """A request-bound helper was used outside a request handled by FastStateMiddleware."""

    code = "no_request_context"


class RequestError(FastStateError):
    """The client sent something we cannot act on; nothing was changed."""

    status = 400
    code = "bad_request"


class InvalidPayload(RequestError):
    """Malformed or non-object JSON, or a body that is not JSON."""

    code = "invalid_payload"


class MissingIdentifier(RequestError):
    """The state's scope needs an id (record, component) the request does not carry."""

    code = "missing_identifier"


class UnknownEvent(RequestError):
    """No state or event by that name."""

    status = 404
    code = "unknown_event"


class RecordNotFound(RequestError):
    """Raise it from a ``load`` hook when the record does not exist."""

    status = 404
    code = "record_not_found"


class MethodNotAllowed(RequestError):
    """The event exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    """The request body is over the middleware's ``max_body_size``."""

    status = 413
    code = "payload_too_large"


class RequestTimeout(RequestError):
    """The request body trickled in slower than the middleware's ``body_timeout`` allows."""

    status = 408
    code = "request_timeout"


class TooManyRequests(RequestError):
    """A limit was hit: the event rate, or how many streams / component ids / sessions a client
    may hold (see README, "Limits"). ``retry_after``: seconds until a retry can succeed."""

    status = 429
    code = "too_many_requests"

    def __init__(
        self, message: str, *, retry_after: float | None = None, detail: Any = None
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(max(1, math.ceil(self.retry_after))).encode())]


class ArgumentError(RequestError):
    """Event arguments are missing or of the wrong type."""

    status = 422
    code = "invalid_arguments"


class UserError(RequestError):
    """Raise it in an event to show the user why it did nothing: ``raise UserError("Out of
    stock")``. The state is rolled back and the message reaches the page as
    ``$_faststate.error`` (an API client gets it with status 400). Any other exception is an
    internal error: the page only reads "event failed" and the details go to the log. Subclass
    it to choose another 4xx ``status`` or ``code``."""

    code = "user_error"


class CSRFError(FastStateError):
    """A state-changing request without Datastar's header and JSON body, from another origin."""

    status = 403
    code = "csrf_rejected"


class AuthenticationError(FastStateError):
    """A user is required and there is none."""

    status = 401
    code = "authentication_required"


class AuthorizationError(FastStateError):
    """The user lacks a required permission, role or ownership."""

    status = 403
    code = "forbidden"


class EventFailed(FastStateError):
    """The event raised; the state was rolled back and the cause logged server-side."""

    status = 500
    code = "event_failed"


class EventTimeout(FastStateError):
    """The event ran longer than the event timeout: it was cancelled, its change rolled back and
    the state's lock released."""

    status = 504
    code = "event_timeout"


class StoredStateError(FastStateError):
    """A stored state could not be read back (corrupt JSON); the message names its key."""

    status = 500
    code = "stored_state_invalid"


class BackendUnavailable(FastStateError):
    """The backend (e.g. Redis) cannot be reached; the request changed nothing."""

    status = 503
    code = "backend_unavailable"


__all__ = [
    "ArgumentError",
    "AuthenticationError",
    "AuthorizationError",
    "BackendUnavailable",
    "CSRFError",
    "ConfigurationError",
    "EventFailed",
    "EventTimeout",
    "FastStateError",
    "InvalidPayload",
    "MethodNotAllowed",
    "MissingIdentifier",
    "NoRequestContextError",
    "PayloadTooLarge",
    "RecordNotFound",
    "RequestError",
    "RequestTimeout",
    "StoredStateError",
    "TooManyRequests",
    "UnknownEvent",
    "UserError",
]
