"""FastStateMiddleware: a pure ASGI middleware that sets the request context and serves events."""

from __future__ import annotations

import inspect
import secrets
from collections import OrderedDict
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, Signer

from .backends.base import Backend
from .context import RequestContext, UserContext, UserLoader, _current, default_user_loader
from .dispatch import Reply, send_error, serve_event
from .exceptions import ConfigurationError, FastStateError, UnknownEvent
from .registry import StateRegistry, state_registry
from .stream import StreamSettings, TokenSigner, reauthorize, serve_stream, stream_element
from .types import ASGIApp, Message, Receive, Scope, Send

_VERIFIED_CACHE_SIZE = 10_000


class FastStateMiddleware:
    """Puts request, session and user into contextvars and serves ``@event`` endpoints.

    ``app.add_middleware(FastStateMiddleware, secret_key="...")``. It may sit before or after the
    app's SessionMiddleware: event requests pass through the middlewares the app declares inside
    this one (``app.user_middleware``), so events see the same session and user as pages.

    Options: ``prefix`` of event URLs (default ``/_faststate``); ``user_loader(scope)`` (sync or
    async) returning a UserContext or None; ``max_body_size`` in bytes (default 1 MiB);
    ``session_cookie`` name, ``max_age``, ``https_only`` and ``same_site`` of the signed cookie
    that identifies a browser session; ``datastar_js``, a file to self-host the Datastar client
    at ``<prefix>/datastar.js`` (see :func:`faststate_mw.datastar_script`); ``sweep_interval``,
    seconds between sweeps that drop instances idle past their ttl; ``heartbeat`` (seconds
    between keep-alive comments on live streams), ``write_timeout`` (a stream whose write stalls
    longer is dropped) and ``max_queue`` (changes queued per stream before it falls back to one
    resync snapshot); ``backend``, a URL (``memory://``, ``sqlite:///path.db``,
    ``redis://host:6379/0``) or a Backend object (see README, "Scaling out").

    A FastStateError raised by a page handler (say, ``Profile.current()`` with nobody signed in)
    becomes a clean 4xx reply unless the app maps it with its own exception handler.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str,
        *,
        prefix: str = "/_faststate",
        registry: StateRegistry = state_registry,
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
    ) -> None:
        if not secret_key or not isinstance(secret_key, str):
            raise ConfigurationError("FastStateMiddleware needs a non-empty secret_key")
        if not prefix.startswith("/") or prefix.endswith("/") or len(prefix) < 2:
            raise ConfigurationError("prefix must start with '/' and not end with '/'")
        if same_site.lower() not in ("lax", "strict", "none"):
            raise ConfigurationError("same_site must be 'lax', 'strict' or 'none'")
        if max_body_size <= 0:
            raise ConfigurationError("max_body_size must be positive")
        self.app = app
        self.prefix = prefix
        self.registry = registry
        registry.prefix = prefix
        self.user_loader = user_loader
        self.async_user_loader = inspect.iscoroutinefunction(user_loader) or (
            inspect.iscoroutinefunction(getattr(user_loader, "__call__", None))  # noqa: B004
        )
        self.sweep_interval = sweep_interval
        if backend is not None:
            registry.use_backend(backend)
        self.hub = registry.hub
        self.hub.max_queue = max_queue
        self.hub.heartbeat = heartbeat
        self.hub.write_timeout = write_timeout
        self.signer = TokenSigner(secret_key)
        self.streams = StreamSettings()
        self.max_body_size = max_body_size
        self.session_cookie = session_cookie
        self._cookie_prefix = session_cookie.encode() + b"="
        self._signer = Signer(secret_key, salt="faststate.session")
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        attrs = f"; path=/; httponly; samesite={same_site.lower()}"
        if max_age is not None:
            attrs += f"; max-age={max_age}"
        if https_only:
            attrs += "; secure"
        self._cookie_attrs = attrs
        self._event_prefix = prefix + "/"
        self._stream_path = prefix + "/stream"
        self._datastar_js: bytes | None = None
        if datastar_js is not None:
            path = Path(datastar_js)
            if not path.is_file():
                raise ConfigurationError(f"datastar_js file not found: {path}")
            self._datastar_js = path.read_bytes()
        #: where pages load the Datastar client from when this middleware self-hosts it
        self.datastar_src = prefix + "/datastar.js" if self._datastar_js is not None else None
        self._inner_apps: dict[int, ASGIApp] = {}

    # -- session identity (ContextOwner) ---------------------------------------------------
    def read_session_id(self, scope: Scope) -> str | None:
        """The session id of the request's signed cookie (None if absent or tampered with).
        Verified Cookie headers are cached, so a returning browser costs one dict lookup."""
        header = None
        for k, v in scope["headers"]:
            if k == b"cookie" and self._cookie_prefix in v:
                header = bytes(v)
                break
        if header is None:
            return None
        sid = self._verified.get(header)
        if sid is not None:
            return sid
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(header.decode("latin-1"))
        except Exception:
            return None
        morsel = cookie.get(self.session_cookie)
        if morsel is None or not morsel.value:
            return None
        try:
            sid = self._signer.unsign(morsel.value.encode("latin-1")).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None  # a tampered cookie quietly means a new session
        self._verified[header] = sid
        if len(self._verified) > _VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return sid

    def new_session_id(self) -> str:
        return secrets.token_urlsafe(18)

    def _set_cookie_header(self, sid: str) -> tuple[bytes, bytes]:
        value = self._signer.sign(sid).decode("ascii")
        return (b"set-cookie", f"{self.session_cookie}={value}{self._cookie_attrs}".encode())

    # -- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(scope, self)
        token = _current.set(ctx)
        self.registry.ensure_running(self.sweep_interval)
        started = False
        inject = b""

        async def send_with_cookie(message: Message) -> None:
            nonlocal started, inject
            if message["type"] == "http.response.start":
                started = True
                if ctx.page_states and not ctx.stream_rendered and _is_html(message):
                    # the page rendered states: open its live stream
                    inject = stream_element(ctx, self.prefix, self.signer, self.hub.epoch).encode()
                    message = _grow_content_length(message, len(inject))
                if ctx.new_session_id is not None:
                    message = dict(message)
                    message["headers"] = [
                        *message.get("headers", []),
                        self._set_cookie_header(ctx.new_session_id),
                    ]
                    ctx.new_session_id = None
            elif (
                inject
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                body: bytes = message.get("body", b"")
                at = body.rfind(b"</body>")
                body = body + inject if at < 0 else body[:at] + inject + body[at:]
                message = {**message, "body": body}
                inject = b""
            await send(message)

        try:
            path: str = scope["path"]
            if path == self._stream_path:
                # a stream never mints a session, so it needs no cookie-setting send wrapper
                await self._inner_app(scope)(scope, receive, send)
            elif path.startswith(self._event_prefix) or path in self.registry.custom_routes():
                await self._inner_app(scope)(scope, receive, send_with_cookie)
            else:
                try:
                    await self.app(scope, receive, send_with_cookie)
                except FastStateError as err:
                    # e.g. State.current() of a USER state without a user, in a page handler the
                    # app has no exception handler for: a clean 4xx instead of a 500
                    if started:
                        raise
                    await send_error(scope, Reply(send_with_cookie), err)
                await self._recheck_streams(ctx)
        finally:
            _current.reset(token)

    async def _recheck_streams(self, ctx: RequestContext) -> None:
        """After a request of a session with open streams: if its user changed (a logout, a
        new role), those streams stop delivering what the user may no longer see."""
        sid = ctx.session_id(create=False)
        conns = self.hub.sessions.get(sid) if sid is not None else None
        if not conns:
            return
        ctx.forget_user()
        try:
            user = await ctx.load_user()
        except Exception:
            return
        for conn in list(conns):
            if conn.user != user:
                reauthorize(self.registry, self.hub, conn, user)

    def refresh_user(self, user_id: str, user: UserContext | None) -> int:
        """Tell open streams that ``user_id`` changed (roles, permissions, logged out
        elsewhere): they stop delivering what the user may no longer see. Returns how many
        streams were re-checked."""
        conns = [c for c in list(self.hub.tabs.values()) if c.user and c.user.id == user_id]
        for conn in conns:
            reauthorize(self.registry, self.hub, conn, user)
        return len(conns)

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
        if path == self._event_prefix + "datastar.js" and self._datastar_js is not None:
            await Reply(send).full(
                200,
                [
                    (b"content-type", b"text/javascript; charset=utf-8"),
                    (b"cache-control", b"public, max-age=3600"),
                ],
                self._datastar_js,
            )
            return
        if path == self._event_prefix + "stream":
            await serve_stream(
                scope, receive, send, ctx, self.registry, self.hub, self.signer, self.streams
            )
            return
        found = None
        if path.startswith(self._event_prefix):
            parts = path[len(self._event_prefix) :].split("/")
            if len(parts) == 2:
                found = self.registry.route(parts[0], parts[1])
        else:
            found = self.registry.custom_routes().get(path)
        if found is None:
            await send_error(scope, Reply(send), UnknownEvent(f"no event at {path}"))
            return
        cls, spec = found
        await serve_event(scope, receive, send, ctx, cls, spec, self.max_body_size, self.hub)


def _is_html(message: Message) -> bool:
    for k, v in message.get("headers", []):
        if k.lower() == b"content-type":
            return bytes(v).startswith(b"text/html")
    return False


def _grow_content_length(message: Message, extra: int) -> Message:
    headers = []
    for k, v in message.get("headers", []):
        if k.lower() == b"content-length":
            v = str(int(v) + extra).encode()
        headers.append((k, v))
    return {**message, "headers": headers}


__all__ = ["FastStateMiddleware"]
