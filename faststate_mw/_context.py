"""Per-request context: the request, the session and the user, held in contextvars.

FastStateMiddleware sets one :class:`RequestContext` per HTTP request and resets it afterwards; the
``current_*`` helpers read it from any handler (sync handlers run in a thread with a copy of the
context, so they see it too). The session and the user are read lazily, so the context works whether
the app's SessionMiddleware runs before or after FastStateMiddleware.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from starlette.requests import Request

from ._exceptions import AuthenticationError, NoRequestContextError
from ._types import Scope

#: The role that grants every permission (see :meth:`UserContext.has_permission`).
ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class UserContext:
    """Who is making the request: an id plus the roles and permissions the app gave them."""

    #: the user's id (a string; USER-scope keys and owner fields compare with it)
    id: str
    #: a name to show, if the app has one
    username: str | None = None
    #: what ``@event(roles=[...])`` checks: at least one must match
    roles: frozenset[str] = field(default_factory=frozenset)
    #: what ``@event(permissions=[...])`` checks: all must be held
    permissions: frozenset[str] = field(default_factory=frozenset)

    #: the role that grants every permission (and passes owner_only); None turns that off
    admin_role: ClassVar[str | None] = ADMIN_ROLE

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", str(self.id))
        object.__setattr__(self, "roles", frozenset(self.roles))
        object.__setattr__(self, "permissions", frozenset(self.permissions))

    def has_role(self, role: str) -> bool:
        """True when the user has ``role``."""
        return role in self.roles

    def has_permission(self, permission: str) -> bool:
        """True when the user has ``permission``; the admin role grants every permission."""
        admin = UserContext.admin_role
        return permission in self.permissions or (admin is not None and admin in self.roles)

    @classmethod
    async def __from_request__(cls, req: Request) -> UserContext:
        """FastHTML's injection hook: ``def page(user: UserContext)`` gets the signed-in user;
        nobody signed in is an AuthenticationError (401, or the app's handler for it: a
        redirect to the login page). For optional sign-in use :func:`current_user`."""
        user = await current_context().load_user()
        if user is None:
            raise AuthenticationError("sign in to see this page")
        return user

    @classmethod
    def from_value(cls, value: Any) -> UserContext | None:
        """Build a user from what apps commonly put in ``scope["auth"]`` or the session.

        Accepts a UserContext, a str/int id, a mapping with ``id``/``user_id``/``username`` (and
        optional ``roles``/``permissions``), or a Starlette ``BaseUser``. Returns None for nothing.
        """
        if value is None or value == "" or value is False:
            return None
        if isinstance(value, UserContext):
            return value
        if isinstance(value, (str, int)):
            return cls(id=str(value), username=str(value))
        if isinstance(value, Mapping):
            uid = value.get("id", value.get("user_id", value.get("username")))
            if uid in (None, ""):
                return None
            return cls(
                id=str(uid),
                username=value.get("username"),
                roles=frozenset(_strings(value.get("roles", ()))),
                permissions=frozenset(_strings(value.get("permissions", ()))),
            )
        if getattr(value, "is_authenticated", False):  # starlette.authentication.BaseUser
            return cls(id=str(value.identity), username=str(value.display_name))
        return None


def _strings(values: Iterable[Any]) -> list[str]:
    if isinstance(values, str):
        return [values]
    return [str(v) for v in values]


#: ``user_loader(scope)``: returns (or awaits to) a UserContext, or anything
#: :meth:`UserContext.from_value` understands (an id, a mapping, a Starlette user), or None.
UserLoader = Callable[[Scope], Any]


def default_user_loader(scope: Scope) -> UserContext | None:
    """Read the user from ``scope["auth"]`` (FastHTML beforeware), ``scope["user"]``
    (Starlette's AuthenticationMiddleware, with ``scope["auth"].scopes`` as permissions) or
    ``session["auth"]``."""
    auth = scope.get("auth")
    starlette_user = scope.get("user")
    if starlette_user is not None and getattr(starlette_user, "is_authenticated", False):
        base = UserContext.from_value(starlette_user)
        scopes = getattr(auth, "scopes", None)
        if base is not None and scopes is not None:
            return UserContext(base.id, base.username, base.roles, frozenset(scopes))
        return base
    if auth is not None and not hasattr(auth, "scopes"):
        user = UserContext.from_value(auth)
        if user is not None:
            return user
    session = scope.get("session")
    if session is not None and isinstance(session, Mapping):  # None: no ABC check
        return UserContext.from_value(session.get("auth"))
    return None


class ContextOwner(Protocol):
    """What a RequestContext needs from the middleware that made it."""

    #: URL prefix of this app's event endpoints
    prefix: str
    #: where this app's pages load the Datastar client from (None: the CDN)
    datastar_src: str | None
    user_loader: UserLoader
    #: whether ``user_loader`` is a coroutine function (it must then be awaited up front)
    async_user_loader: bool

    def read_session(self, scope: Scope) -> tuple[str, str] | None:
        """The session id of the request's cookie and the binding it carries, if any."""

    def session_binding(self, session_id: str, user: UserContext | None) -> str:
        """What binds ``session_id`` to ``user`` (compared with the cookie's); empty for no
        user (a RequestContext takes an empty binding of no user as a match without asking)."""

    def new_session_id(self) -> str: ...

    async def session_cookie_header(
        self, ctx: RequestContext, session_id: str
    ) -> tuple[bytes, bytes]:
        """The ``Set-Cookie`` header that gives the browser the new ``session_id``, bound to
        ``ctx``'s user as it is now."""

    def session_ended(self, session_id: str, user: UserContext | None) -> None:
        """``session_id`` no longer belongs to this browser (now ``user``'s): its open
        streams stop delivering its states."""


_UNSET: Any = object()


class RequestContext:
    """The faststate view of one HTTP request."""

    __slots__ = (
        "_cookie",
        "_request",
        "_sid",
        "_user",
        "activated",
        "new_session_id",
        "owner",
        "page_states",
        "scope",
        "stream_rendered",
    )

    def __init__(self, scope: Scope, owner: ContextOwner) -> None:
        self.scope = scope
        self.owner = owner
        self._request: Request | None = None
        self._sid: str | None = _UNSET
        self._cookie: tuple[str, str] | None = _UNSET
        self._user: UserContext | None = _UNSET
        #: set when this request minted a session id the response must carry as a cookie
        self.new_session_id: str | None = None
        #: states rendered on this page (key -> token entry), for the page's live stream
        self.page_states: dict[str, list[Any]] = {}
        self.stream_rendered = False
        #: the store activated when this request began: one activated later, within the
        #: request, is the store its code uses (see ``current_store``)
        self.activated: Any = _active.get()

    @property
    def request(self) -> Request:
        if self._request is None:
            self._request = Request(self.scope)
        return self._request

    @property
    def session(self) -> dict[str, Any]:
        """The app's session dict (from its SessionMiddleware), or an empty dict if it has none."""
        sess = self.scope.get("session")
        return sess if isinstance(sess, dict) else {}

    def session_id(self, create: bool = True) -> str | None:
        """The signed faststate session id of this browser; minted (and later set as a cookie)
        on first use when ``create``. A cookie bound to another user than this request's (a
        sign-out, a sign-in, someone else signing in) is never used: its session ends and the
        browser gets a new id (see :func:`rotate_session`)."""
        sid = self._sid
        if sid is _UNSET:  # first asked: the cookie's id, if it is bound to this user
            found = self._cookie
            if found is _UNSET:
                found = self.session_cookie()
            sid = None
            if found is not None:
                sid, binding = found
                user = self.user
                # an anonymous cookie of an anonymous user (the common case) needs no hashing
                if (binding or user is not None) and not hmac.compare_digest(
                    binding, self.owner.session_binding(sid, user)
                ):
                    self.owner.session_ended(sid, user)
                    sid = None
            self._sid = sid
        if sid is None and create:
            sid = self._sid = self.new_session_id = self.owner.new_session_id()
        return sid

    async def take_session_cookie(self) -> tuple[bytes, bytes]:
        """The ``Set-Cookie`` header of the session id this request minted (call it when
        :attr:`new_session_id` is set): the response that starts next carries it, and no
        other response of this request sets it again."""
        sid = self.new_session_id
        assert sid is not None
        cookie = await self.owner.session_cookie_header(self, sid)
        self.new_session_id = None
        return cookie

    def session_cookie(self) -> tuple[str, str] | None:
        """The session id and user binding of the request's signed cookie, read once per
        request (None if absent or tampered with). Not yet checked against the user."""
        if self._cookie is _UNSET:
            self._cookie = self.owner.read_session(self.scope)
        return self._cookie

    def rotate_session(self) -> None:
        """Give this browser a new session id, bound to the user as the app now says (the
        cookie is set on this response). The old session's states stay behind, out of reach,
        and its open streams stop delivering them."""
        found = self.session_cookie()
        self.forget_user()
        for old in {found[0] if found else None, self._sid}:
            if isinstance(old, str):
                self.owner.session_ended(old, self._user_or_none())
        self._sid = self.new_session_id = self.owner.new_session_id()

    @property
    def user(self) -> UserContext | None:
        """The user, loaded once per request. An async ``user_loader`` must have been awaited
        through :meth:`load_user` first (the middleware does so for events and injection)."""
        if self._user is _UNSET:
            result = self.owner.user_loader(self.scope)
            if result is not None:  # None (nobody signed in, the most common answer) is None
                if _awaitable(result):
                    result = _finished(result)
                result = UserContext.from_value(result)
            self._user = result
        return self._user

    def _user_or_none(self) -> UserContext | None:
        try:
            return self.user
        except NoRequestContextError:  # an async loader that must wait: assume signed out
            return None

    async def load_user(self) -> UserContext | None:
        if self._user is _UNSET:
            result = self.owner.user_loader(self.scope)
            if result is not None:  # None (nobody signed in, the most common answer) is None
                if _awaitable(result):
                    result = await result
                result = UserContext.from_value(result)
            self._user = result
        return self._user

    def cached_user(self) -> UserContext | None:
        """The user if this request already loaded it, else None (never calls the loader)."""
        return None if self._user is _UNSET else self._user

    def forget_user(self) -> None:
        """Drop the cached user (after a login or logout inside this request)."""
        self._user = _UNSET


#: what a user loader returns most often: never awaitable (skips inspect's ABC check)
_PLAIN_USER_VALUES = frozenset({type(None), UserContext, str, int, dict})


def _awaitable(value: Any) -> bool:
    return type(value) not in _PLAIN_USER_VALUES and inspect.isawaitable(value)


def _finished(awaitable: Any) -> Any:
    """The result of an async user_loader that completes without waiting (no I/O); one that
    must wait cannot be awaited from sync code: a clear error."""
    send = getattr(awaitable, "send", None)
    if send is not None:
        try:
            send(None)
        except StopIteration as stop:
            return stop.value
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
    raise NoRequestContextError(
        "the user_loader is async: resolve the user with `await load_user()` "
        "(or use FastHTML injection / `Depends(MyState.dependency)`) first"
    )


_current: ContextVar[RequestContext | None] = ContextVar("faststate_context", default=None)
#: the store ``with store.activate():`` made current (a StateStore: that module sits above this
#: one). A request's own store is its context owner's, so the middleware sets no second
#: context variable per request.
_active: ContextVar[Any] = ContextVar("faststate_store", default=None)


def current_context() -> RequestContext:
    """The RequestContext of the running request; raises NoRequestContextError outside one."""
    ctx = _current.get()
    if ctx is None:
        raise NoRequestContextError(
            "no request context: this must run inside a request handled by FastStateMiddleware "
            "(add it with `app.add_middleware(FastStateMiddleware, secret_key=...)`)"
        )
    return ctx


def current_request() -> Request:
    """The Starlette Request being handled."""
    return current_context().request


def current_session() -> dict[str, Any]:
    """The app's session dict for the running request."""
    return current_context().session


def current_user() -> UserContext | None:
    """The user of the running request, or None when anonymous."""
    return current_context().user


async def load_user() -> UserContext | None:
    """Await the user of the running request (works with async user loaders)."""
    return await current_context().load_user()


def rotate_session() -> None:
    """Give the browser a new faststate session id, bound to the user the app now has: call it
    in a login (or logout) handler, after changing who is signed in, before the response
    starts. The old session's SESSION, TEMPORARY and COMPONENT states stay behind, out of reach
    of the new id, and its open live streams stop delivering them. (faststate also rotates
    by itself on the first request that finds the cookie bound to another user.)"""
    current_context().rotate_session()


__all__ = [
    "ADMIN_ROLE",
    "RequestContext",
    "UserContext",
    "UserLoader",
    "current_context",
    "current_request",
    "current_session",
    "current_user",
    "default_user_loader",
    "load_user",
    "rotate_session",
]
