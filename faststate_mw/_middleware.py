"""FastStateMiddleware: the ASGI entry. It owns its store and settings and passes them down."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from ._config import catalog
from ._context import RequestContext, UserLoader, _current, default_user_loader
from ._dispatch import serve_event
from ._exceptions import ConfigurationError, FastStateError, UnknownEvent
from ._http import Reply, send_error
from ._inject import PageInjector
from ._metrics_http import serve_metrics
from ._session import SessionCookie
from ._store import StateStore, _active
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
    made from ``backend``, ``sweep_interval``, ``heartbeat``, ``write_timeout``, ``max_queue``);
    ``prefix`` of event URLs (default ``/_faststate``); ``user_loader(scope)`` (sync or async)
    returning a UserContext or None; ``max_body_size`` in bytes (default 1 MiB);
    ``session_cookie`` name, ``max_age``, ``https_only`` and ``same_site`` of the signed cookie
    that identifies a browser session; ``datastar_js``, a file to self-host the Datastar client
    at ``<prefix>/datastar.js`` (see :func:`faststate_mw.datastar_script`); ``backend``, a URL
    (``memory://``, ``sqlite:///path.db``, ``redis://host:6379/0``) or a Backend object;
    ``metrics_path`` (e.g. ``"/metrics"``, default off) serves the store's Prometheus metrics
    (turning them on) to requests with ``Authorization: Bearer <metrics_token>`` or, without a
    token, to signed-in users with ``metrics_role`` (default ``"admin"``).

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
        sweep_interval: float = 30.0,
        heartbeat: float = 15.0,
        write_timeout: float = 10.0,
        max_queue: int = 64,
        backend: Backend | str | None = None,
        metrics_path: str | None = None,
        metrics_token: str | None = None,
        metrics_role: str = "admin",
    ) -> None:
        if not secret_key or not isinstance(secret_key, str):
            raise ConfigurationError("FastStateMiddleware needs a non-empty secret_key")
        if not prefix.startswith("/") or prefix.endswith("/") or len(prefix) < 2:
            raise ConfigurationError("prefix must start with '/' and not end with '/'")
        if max_body_size <= 0:
            raise ConfigurationError("max_body_size must be positive")
        if store is not None and backend is not None:
            raise ConfigurationError("pass either store= or backend=, not both")
        self.app = app
        #: where this app's states live (see :class:`StateStore`)
        if store is None:
            store = StateStore(
                backend,
                sweep_interval=sweep_interval,
                heartbeat=heartbeat,
                write_timeout=write_timeout,
                max_queue=max_queue,
            )
        self.store = store
        if metrics_path is not None:
            if not metrics_path.startswith("/"):
                raise ConfigurationError("metrics_path must start with '/'")
            if metrics_token is not None and len(metrics_token) < 16:
                raise ConfigurationError("metrics_token: use at least 16 characters")
            store.enable_metrics()
        self._metrics_path = metrics_path
        self._metrics_auth = (metrics_token, metrics_role)
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
        self._datastar_js: bytes | None = None
        if datastar_js is not None:
            path = Path(datastar_js)
            if not path.is_file():
                raise ConfigurationError(f"datastar_js file not found: {path}")
            self._datastar_js = path.read_bytes()
        #: where pages load the Datastar client from when this middleware self-hosts it
        self.datastar_src = self._datastar_path if self._datastar_js is not None else None
        self._inner_apps: dict[int, ASGIApp] = {}

    # -- ContextOwner: what a RequestContext asks of its app --------------------------------------
    def read_session_id(self, scope: Scope) -> str | None:
        """The session id of the request's signed cookie (None if absent or tampered with)."""
        return self.cookie.read(scope)

    def new_session_id(self) -> str:
        """A fresh session id (the response then sets the cookie)."""
        return self.cookie.new_id()

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
        if not store.started:
            await store.start()  # a server without lifespan: start on the first request
        ctx = RequestContext(scope, self)
        token = _current.set(ctx)
        store_token = _active.set(store)
        try:
            path: str = scope["path"]
            if path == self._stream_path:
                # a stream never mints a session, so it needs no cookie-setting send wrapper
                await self._inner_app(scope)(scope, receive, send)
            elif (
                path.startswith(self._event_prefix)
                or path in catalog.custom_routes()
                or path == self._metrics_path
            ):
                await self._inner_app(scope)(scope, receive, self._page_send(ctx, send))
            else:
                await self._page(scope, receive, send, ctx)
        finally:
            _active.reset(store_token)
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

    def _page_send(self, ctx: RequestContext, send: Send) -> Send:
        """``send`` that sets a new session's cookie and adds the live-stream element to an
        HTML page that rendered states."""
        injector: PageInjector | None = None

        async def page_send(message: Message) -> None:
            nonlocal injector
            kind = message["type"]
            if kind == "http.response.start":
                if ctx.page_states and not ctx.stream_rendered and _is_html(message):
                    element = stream_element(ctx, self.prefix, self.signer, self.store.hub.epoch)
                    injector = PageInjector(element.encode())
                    adjusted = injector.start(message)
                    if adjusted is None:
                        injector = None
                    else:
                        message = adjusted
                if ctx.new_session_id is not None:
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", []),
                            self.cookie.set_cookie(ctx.new_session_id),
                        ],
                    }
                    ctx.new_session_id = None
            elif kind == "http.response.body" and injector is not None:
                patched = injector.body(message)
                if patched is None:
                    return
                message = patched
            await send(message)

        return page_send

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Start the store before the app's own startup, close it after the app's shutdown. An
        app that does not speak lifespan gets it answered here."""
        message = await receive()
        if message["type"] != "lifespan.startup":  # pragma: no cover - servers start first
            await self.app(scope, receive, send)
            return
        try:
            await self.store.start()
        except Exception as exc:
            log.error("faststate_mw could not start: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": f"faststate_mw: {exc}"})
            return
        replay: list[Message] = [message]
        app_started = False

        async def app_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        async def app_send(out: Message) -> None:
            nonlocal app_started
            if out["type"] == "lifespan.startup.complete":
                app_started = True
            elif out["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self._close()
            await send(out)

        try:
            await self.app(scope, app_receive, app_send)
        except BaseException:
            if app_started:
                await self._close()
                raise
            # the app does not support lifespan: answer it ourselves
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await self._close()
            await send({"type": "lifespan.shutdown.complete"})

    async def _close(self) -> None:
        try:
            await self.store.close()
        except Exception:
            log.exception("faststate_mw: closing the store failed")

    async def _recheck_streams(self, ctx: RequestContext) -> None:
        """After a request of a session with open streams: if its user changed (a logout, a
        new role), those streams stop delivering what the user may no longer see."""
        sid = ctx.session_id(create=False)
        conns = self.store.hub.sessions.get(sid) if sid is not None else None
        if not conns:
            return
        ctx.forget_user()
        try:
            user = await ctx.load_user()
        except Exception:
            return
        for conn in list(conns):
            if conn.user != user:
                self.store.hub.reauthorize(conn, user)

    def _inner_app(self, scope: Scope) -> ASGIApp:
        """The event endpoint wrapped in the middlewares the app runs inside this one, so that
        events see the app's session (FastHTML puts its SessionMiddleware innermost)."""
        app = scope.get("app")
        if "session" in scope or app is None:
            return self._serve
        cached = self._inner_apps.get(id(app))
        if cached is not None:
            return cached
        stack: list[Any] = list(getattr(app, "user_middleware", []) or [])
        inner: list[Any] = []
        for i, mw in enumerate(stack):
            cls = getattr(mw, "cls", None)
            if isinstance(cls, type) and issubclass(cls, FastStateMiddleware):
                inner = stack[i + 1 :]
                break
        handler: ASGIApp = self._serve
        for mw in reversed(inner):
            mw_cls, args, kwargs = mw
            handler = mw_cls(handler, *args, **kwargs)
        self._inner_apps[id(app)] = handler
        return handler

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = _current.get()
        assert ctx is not None
        path: str = scope["path"]
        if path == self._datastar_path and self._datastar_js is not None:
            await Reply(send).full(
                200,
                [
                    (b"content-type", b"text/javascript; charset=utf-8"),
                    (b"cache-control", b"public, max-age=3600"),
                ],
                self._datastar_js,
            )
            return
        if path == self._stream_path:
            await serve_stream(scope, receive, send, ctx, self.store, self.signer)
            return
        metrics = self.store.metrics
        if path == self._metrics_path and metrics is not None:
            await serve_metrics(scope, send, ctx, metrics, *self._metrics_auth)
            return
        found = None
        if path.startswith(self._event_prefix):
            parts = path[len(self._event_prefix) :].split("/")
            if len(parts) == 2:
                found = catalog.route(parts[0], parts[1])
        else:
            found = catalog.custom_routes().get(path)
        if found is None:
            await send_error(scope, Reply(send), UnknownEvent(f"no event at {path}"))
            return
        cls, spec = found
        await serve_event(scope, receive, send, ctx, self.store, cls, spec, self.max_body_size)


def _is_html(message: Message) -> bool:
    for k, v in message.get("headers", []):
        if k.lower() == b"content-type":
            return bytes(v).startswith(b"text/html")
    return False


__all__ = ["FastStateMiddleware"]
