"""FastStateMiddleware: the ASGI entry. It owns its store and settings and passes them down."""

from __future__ import annotations

import contextlib
import inspect
import logging
from pathlib import Path
from typing import Any

from ._config import catalog, info_of
from ._context import RequestContext, UserContext, UserLoader, _current, default_user_loader
from ._devtools import Devtools
from ._dispatch import EventRoute, serve_event
from ._exceptions import ConfigurationError, FastStateError, UnknownEvent
from ._http import Reply, send_error
from ._inject import PageInjector
from ._lifespan import Lifespan
from ._limits import Limits
from ._markup import DATASTAR_CDN, datastar_script
from ._metrics_http import serve_metrics
from ._routes import check_routes
from ._session import SessionCookie
from ._store import StateStore
from ._streams import TokenSigner, serve_stream, stream_element
from ._types import ASGIApp, Message, Receive, Scope, Send
from .backends import Backend

log = logging.getLogger("faststate_mw")


class FastStateMiddleware:
    """Puts request, session and user into contextvars and serves ``@event`` endpoints.

    ``app.add_middleware(FastStateMiddleware, secret_key="...")``. It may sit before or after the
    app's SessionMiddleware: event requests pass through the middlewares the app declares inside
    this one (``app.user_middleware``), so events see the same session and user as pages.

    Options: ``store``, the :class:`StateStore` this app keeps its states in (default: a new one
    made from ``backend``, ``sweep_interval``, ``heartbeat``, ``write_timeout``, ``max_queue``,
    which are therefore refused beside ``store=``: set them on the store);
    ``prefix`` of event URLs (default ``/_faststate``); ``user_loader(scope)`` (sync or async)
    returning a UserContext or None; ``max_body_size`` in bytes (default 1 MiB);
    ``session_cookie`` name, ``max_age``, ``https_only`` and ``same_site`` of the signed cookie
    that identifies a browser session; ``datastar_js``, a file to self-host the Datastar client
    at ``<prefix>/datastar.js`` (see :func:`faststate_mw.datastar_script`); ``backend``, a URL
    (``memory://``, ``sqlite:///path.db``, ``redis://host:6379/0``) or a Backend object;
    ``debug``: log warnings about mistakes found in pages, such as ``data-on-click`` attributes
    Datastar 1.0 ignores (default: when the Starlette app runs with ``debug=True``);
    ``inject_client``: add the Datastar client's tag to a page with states that loads none
    (no ``<script>`` naming datastar; default True).
    ``metrics_path`` (e.g. ``"/metrics"``, default off) serves the store's Prometheus metrics
    (turning them on) to requests with ``Authorization: Bearer <metrics_token>`` or, without a
    token, to signed-in users with ``metrics_role`` (default ``"admin"``).
    ``limits``, the bounds on what clients can make the app hold (:class:`Limits`, README
    "Limits"; with ``store=``, set them on the store).
    ``devtools_path`` (e.g. ``"/_faststate/devtools"``, default off) serves a live devtools
    page (turning the store's recorder on) to signed-in users with ``devtools_role`` (default
    ``"admin"``), listing the last ``devtools_events`` events (default 50).

    It handles the ASGI lifespan: at startup it connects the backend (a clear error when it
    cannot) and starts the background tasks; at shutdown it ends open streams, saves what the
    backend would otherwise lose and closes the backend. Without lifespan it starts on the first
    request. A FastStateError raised by a page handler becomes a clean 4xx reply unless the app
    maps it with its own exception handler.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str,
        *,
        store: StateStore | None = None,
        prefix: str = "/_faststate",
        user_loader: UserLoader = default_user_loader,
        max_body_size: int = 1024 * 1024,
        session_cookie: str = "faststate_sid",
        max_age: int | None = 14 * 24 * 3600,
        https_only: bool = False,
        same_site: str = "lax",
        datastar_js: str | Path | None = None,
        sweep_interval: float | None = None,
        heartbeat: float | None = None,
        write_timeout: float | None = None,
        max_queue: int | None = None,
        backend: Backend | str | None = None,
        debug: bool | None = None,
        inject_client: bool = True,
        metrics_path: str | None = None,
        metrics_token: str | None = None,
        metrics_role: str = "admin",
        limits: Limits | None = None,
        devtools_path: str | None = None,
        devtools_role: str = "admin",
        devtools_events: int = 50,
    ) -> None:
        _check_settings(secret_key, prefix, max_body_size)
        self.app = app
        #: warn about mistakes found in pages (None: when the Starlette app's ``debug`` is on)
        self.debug = debug
        #: add the Datastar client to pages with states that load none (see PageInjector)
        self.inject_client = inject_client
        self._told_client = False
        #: where this app's states live (see :class:`StateStore`)
        self.store = _app_store(
            store,
            backend,
            sweep_interval=sweep_interval,
            heartbeat=heartbeat,
            write_timeout=write_timeout,
            max_queue=max_queue,
            limits=limits,
        )
        if metrics_path is not None:
            _check_metrics(metrics_path, metrics_token)
            self.store.enable_metrics()
        self._metrics_path = metrics_path
        self._metrics_auth = (metrics_token, metrics_role)
        self._devtools = None
        if devtools_path is not None:
            reserved = [prefix, f"{prefix}/stream", f"{prefix}/datastar.js", metrics_path or ""]
            self._devtools = Devtools(
                self.store, devtools_path, devtools_role, devtools_events, reserved
            )
        self.prefix = prefix
        self.user_loader = user_loader
        self.async_user_loader = inspect.iscoroutinefunction(user_loader) or (
            inspect.iscoroutinefunction(getattr(user_loader, "__call__", None))  # noqa: B004
        )
        self.max_body_size = max_body_size
        self.cookie = SessionCookie(
            secret_key,
            name=session_cookie,
            max_age=max_age,
            https_only=https_only,
            same_site=same_site,
        )
        self.signer = TokenSigner(secret_key)
        self._event_prefix = prefix + "/"
        self._stream_path = prefix + "/stream"
        self._datastar_path = prefix + "/datastar.js"
        self._datastar_js = _read_datastar_js(datastar_js)
        #: where pages load the Datastar client from when this middleware self-hosts it
        self.datastar_src = self._datastar_path if self._datastar_js is not None else None
        self._inner_apps: dict[int, ASGIApp | None] = {}
        #: the last app found to run no middleware inside this one (most apps: the only one)
        self._plain_app: Any = None
        #: the events found by path, valid while the catalog's version is ``_routes_version``
        #: (only found ones: unknown paths, which a client chooses, are never kept)
        self._routes: dict[str, EventRoute] = {}
        self._routes_version = -1
        #: paths under the prefix (or custom) served before any event route is looked up
        self._served_first = frozenset(
            p
            for p in (self._stream_path, self._datastar_path, metrics_path, devtools_path)
            if p is not None
        )
        #: the ASGI lifespan of this app's store (start, stop signals, close)
        self._lifespan = Lifespan(app, self.store)

    # -- ContextOwner: what a RequestContext asks of its app --------------------------------------
    def read_session(self, scope: Scope) -> tuple[str, str] | None:
        """The session id of the request's signed cookie and its user binding (None if absent
        or tampered with)."""
        return self.cookie.read(scope)

    def session_binding(self, session_id: str, user: UserContext | None) -> str:
        """What binds ``session_id`` to ``user`` in the cookie."""
        return self.cookie.binding(session_id, user.id if user is not None else None)

    def new_session_id(self) -> str:
        """A fresh session id (the response then sets the cookie)."""
        return self.cookie.new_id()

    def session_ended(self, session_id: str, user: UserContext | None) -> None:
        """The session was rotated away from: its open streams stop delivering its states."""
        self.store.end_session(session_id, user)

    def refresh_user(self, user_id: str, user: Any) -> int:
        """Shortcut for ``self.store.refresh_user``."""
        return self.store.refresh_user(user_id, user)

    # -- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        store = self.store
        if not store.started:  # a server without lifespan: start on the first request
            check_routes(scope.get("app"))
            await store.start()
        ctx = RequestContext(scope, self)
        token = _current.set(ctx)
        try:
            path: str = scope["path"]
            # an event path served before (never the stream's nor another path served first)
            route = self._routes.get(path) if self._routes_version == catalog.version else None
            if route is not None:
                app = scope.get("app")
                inner = None if app is self._plain_app else self._inner_app(scope)
                if inner is None:  # no middleware to run inside this one: its reply sets a
                    # new session's cookie itself (no send wrapper to call)
                    await serve_event(
                        scope, receive, send, ctx, store, route, self.max_body_size, True
                    )
                else:
                    await inner(scope, receive, self._page_send(ctx, send))
            elif path == self._stream_path:
                # a stream never mints a session, so it needs no cookie-setting send wrapper
                await (self._inner_app(scope) or self._serve)(scope, receive, send)
            elif (
                path.startswith(self._event_prefix)
                or path in catalog.custom_routes()
                or path == self._metrics_path
                or (self._devtools is not None and path == self._devtools.path)
            ):
                inner = self._inner_app(scope)
                route = self._event_route(path) if inner is None else None
                if route is not None:  # an event, with no middleware to run inside this one
                    limit = self.max_body_size
                    await serve_event(scope, receive, send, ctx, store, route, limit, True)
                else:
                    await (inner or self._serve)(scope, receive, self._page_send(ctx, send))
            else:
                await self._page(scope, receive, send, ctx)
        finally:
            _current.reset(token)

    async def _page(self, scope: Scope, receive: Receive, send: Send, ctx: RequestContext) -> None:
        started = False
        page_send = self._page_send(ctx, send)

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await page_send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except FastStateError as err:
            # e.g. State.current() of a USER state without a user, in a page handler the app
            # has no exception handler for: a clean 4xx instead of a 500
            if started:
                raise
            await send_error(scope, Reply(page_send), err)
        await self._recheck_streams(ctx)

    def _debug(self, scope: Scope) -> bool:
        if self.debug is not None:
            return self.debug
        return bool(getattr(scope.get("app"), "debug", False))

    def _page_send(self, ctx: RequestContext, send: Send) -> Send:
        """``send`` that sets a new session's cookie and adds the live-stream element to an
        HTML page that rendered states."""
        injector: PageInjector | None = None

        async def page_send(message: Message) -> None:
            nonlocal injector
            kind = message["type"]
            if kind == "http.response.start":
                if ctx.page_states and not ctx.stream_rendered and _is_html(message):
                    with contextlib.suppress(Exception):  # the token names the session: its
                        await ctx.load_user()  # binding to the user is checked first
                    # (may mint the session id: before the cookie below)
                    element = stream_element(ctx, self.prefix, self.signer, self.store.hub.epoch)
                    client = datastar_script().encode() if self.inject_client else b""
                    injector = PageInjector(element.encode(), client, self._debug(ctx.scope))
                if ctx.new_session_id is not None:
                    cookie = await ctx.take_session_cookie()
                    message = {**message, "headers": [*message.get("headers", []), cookie]}
                if injector is not None:
                    if injector.start(message):
                        return  # held until the body is seen
                    injector = None
            elif kind == "http.response.body" and injector is not None:
                for out in injector.body(message):
                    await send(out)
                if injector.added_client and not self._told_client:
                    self._told_client = True
                    log.info(
                        "a page with live states (%s) loads no Datastar client (no <script> naming "
                        "datastar): adding it; if it loads the client under another name, pass "
                        "inject_client=False",
                        ctx.scope.get("path"),
                    )
                return
            await send(message)

        return page_send

    async def session_cookie_header(self, ctx: RequestContext, sid: str) -> tuple[bytes, bytes]:
        """The ``Set-Cookie`` header of ``sid``, a session id this request minted, bound to the
        request's user as it is now (what :meth:`RequestContext.take_session_cookie` asks)."""
        try:
            user = await ctx.load_user()
        except Exception:  # the app's loader failed: an anonymous binding rotates next time
            user = None
        return self.cookie.set_cookie(sid, self.session_binding(sid, user))

    async def _recheck_streams(self, ctx: RequestContext) -> None:
        """After a request of a session with open streams (or, with a shared backend, of a
        signed-in session: its streams may be on other workers): if its user changed, those
        streams stop delivering what the user may no longer see (a new role), and every
        state of the session when it is no longer the user the session is bound to (a
        sign-out or sign-in: the next request rotates the session id)."""
        found = self.read_session(ctx.scope)
        if found is None:
            return
        sid, binding = found
        sessions = self.store.hub.sessions
        # a signed-in session's streams may be on another worker of a shared backend: a
        # sign-out on this request must reach them too (the user is read again for it)
        if sid not in sessions and not (binding and self.store.backend.shared):
            return
        ctx.forget_user()
        try:
            user = await ctx.load_user()
        except Exception:
            return
        if binding != self.session_binding(sid, user):  # signed out or in: the session ends
            self.session_ended(sid, user)
            return
        self.store.hub.recheck_session(sid, user)

    def _inner_app(self, scope: Scope) -> ASGIApp | None:
        """The event endpoint wrapped in the middlewares the app runs inside this one, so that
        events see the app's session (FastHTML puts its SessionMiddleware innermost); None
        when it runs none there (the endpoint is ``self._serve``)."""
        app = scope.get("app")
        if "session" in scope or app is None:
            return None
        try:
            return self._inner_apps[id(app)]
        except KeyError:
            pass
        stack: list[Any] = list(getattr(app, "user_middleware", []) or [])
        inner: list[Any] = []
        for i, mw in enumerate(stack):
            cls = getattr(mw, "cls", None)
            if isinstance(cls, type) and issubclass(cls, FastStateMiddleware):
                inner = stack[i + 1 :]
                break
        handler: ASGIApp | None = None
        if inner:
            handler = self._serve
            for mw in reversed(inner):
                mw_cls, args, kwargs = mw
                handler = mw_cls(handler, *args, **kwargs)
        self._inner_apps[id(app)] = handler
        if handler is None:
            self._plain_app = app
        return handler

    def _event_route(self, path: str) -> EventRoute | None:
        """The (state, event) served at ``path``; None for an unknown event and for the paths
        served before events (the client, streams, metrics, devtools)."""
        if self._routes_version != catalog.version:
            self._routes = {}
            self._routes_version = catalog.version
        found = self._routes.get(path)
        if found is None and path not in self._served_first:
            found = self._route_of(path)
            if found is not None:
                self._routes[path] = found
        return found

    def _route_of(self, path: str) -> EventRoute | None:
        found = None
        if path.startswith(self._event_prefix):
            parts = path[len(self._event_prefix) :].split("/")
            if len(parts) == 2:
                found = catalog.route(parts[0], parts[1])
        else:
            found = catalog.custom_routes().get(path)
        return None if found is None else EventRoute(info_of(found[0]), found[1])

    async def _serve_client(self, send: Send) -> None:
        """The self-hosted Datastar client; else a redirect to the CDN, so that
        ``datastar_script()`` called outside a request (FastHTML ``hdrs=``), which points here,
        follows this app's setting."""
        if self._datastar_js is None:
            headers = [(b"location", DATASTAR_CDN.encode()), (b"cache-control", b"no-cache")]
            await Reply(send).full(307, headers, b"")
            return
        headers = [
            (b"content-type", b"text/javascript; charset=utf-8"),
            (b"cache-control", b"public, max-age=3600"),
        ]
        await Reply(send).full(200, headers, self._datastar_js)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = _current.get()
        assert ctx is not None
        path: str = scope["path"]
        if path == self._datastar_path:
            await self._serve_client(send)
            return
        if path == self._stream_path:
            await serve_stream(scope, receive, send, ctx, self.store, self.signer)
            return
        if path == self._metrics_path:
            metrics = self.store.metrics
            if metrics is not None:
                await serve_metrics(scope, send, ctx, metrics, *self._metrics_auth)
                return
        if self._devtools is not None and path == self._devtools.path:
            await self._devtools.serve(scope, send, ctx)
            return
        route = self._route_of(path)
        if route is None:
            await send_error(scope, Reply(send), UnknownEvent(f"no event at {path}"))
            return
        await serve_event(scope, receive, send, ctx, self.store, route, self.max_body_size)


def _check_settings(secret_key: str, prefix: str, max_body_size: int) -> None:
    """Bad configuration fails loudly, when the middleware is made."""
    if not secret_key or not isinstance(secret_key, str):
        raise ConfigurationError("FastStateMiddleware needs a non-empty secret_key")
    if not prefix.startswith("/") or prefix.endswith("/") or len(prefix) < 2:
        raise ConfigurationError("prefix must start with '/' and not end with '/'")
    if max_body_size <= 0:
        raise ConfigurationError("max_body_size must be positive")


def _check_metrics(path: str, token: str | None) -> None:
    if not path.startswith("/"):
        raise ConfigurationError("metrics_path must start with '/'")
    if token is not None and len(token) < 16:
        raise ConfigurationError("metrics_token: use at least 16 characters")


def _app_store(
    store: StateStore | None, backend: Backend | str | None, **options: Any
) -> StateStore:
    """The given store, or a new one made from ``backend`` and the store ``options`` given (not
    None); beside a store, a backend or store option would be ignored, so it is refused."""
    given = {name: value for name, value in options.items() if value is not None}
    if store is None:
        return StateStore(backend, **given)
    if backend is not None or given:
        names = ["backend"] * (backend is not None) + list(given)
        raise ConfigurationError(f"pass either store= or {'=, '.join(names)}=, not both")
    return store


def _read_datastar_js(datastar_js: str | Path | None) -> bytes | None:
    if datastar_js is None:
        return None
    path = Path(datastar_js)
    if not path.is_file():
        raise ConfigurationError(f"datastar_js file not found: {path}")
    return path.read_bytes()


def _is_html(message: Message) -> bool:
    for k, v in message.get("headers", []):
        if k.lower() == b"content-type":
            return bytes(v).startswith(b"text/html")
    return False


__all__ = ["FastStateMiddleware"]
