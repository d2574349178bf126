"""Per-tab live streams: the signed subscription token, the SSE endpoint, heartbeats and resync.

A page that renders states gets one hidden element (injected by the middleware before
``</body>``, or placed by hand with :func:`stream_element`) whose ``data-init`` opens
``GET <prefix>/stream?t=<token>`` with ``retry: 'always'``. The token is signed with the
middleware's secret and names the session, the tab and the keys (with the versions the page was
rendered at), so a client can neither subscribe to keys it was not given nor use another
session's token.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import hmac
import inspect
import json
import secrets
from typing import Any

from datastar_py import ServerSentEventGenerator as SSE
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ._config import catalog, info_of, meta_of
from ._context import RequestContext, UserContext
from ._exceptions import FastStateError, TooManyRequests
from ._http import SSE_HEADERS, TAB_SIGNAL, Reply, client_address, header, send_error
from ._hub import Connection, Hub, UnfinishedWrite
from ._limits import Limits
from ._store import StateStore
from ._types import Receive, Scope, Send
from ._views import resync_views, view_keys, view_patches, watches_for

#: how long a page's stream token stays valid (seconds)
TOKEN_MAX_AGE = 86400


class TokenSigner:
    """Signs stream tokens. A token names states (name, id, version), never keys, and binds
    to the session through a keyed hash: the page never shows the session id."""

    def __init__(self, secret: str) -> None:
        self._s = URLSafeTimedSerializer(secret, salt="faststate.stream")
        self._bind_key = hashlib.sha256(b"faststate.stream.bind:" + secret.encode()).digest()

    def binding(self, session_id: str | None) -> str:
        digest = hmac.new(self._bind_key, (session_id or "").encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def dumps(
        self, session_id: str | None, tab: str, entries: list[list[Any]], epoch: str = ""
    ) -> str:
        payload = {"b": self.binding(session_id), "t": tab, "k": entries, "e": epoch}
        return str(self._s.dumps(payload))

    def loads(self, token: str, max_age: int) -> dict[str, Any] | None:
        try:
            data = self._s.loads(token, max_age=max_age)
        except (BadSignature, ValueError, TypeError):
            return None
        return data if isinstance(data, dict) else None


def stream_element(ctx: RequestContext, prefix: str, signer: TokenSigner, epoch: str) -> str:
    """The hidden element that opens this page's stream (empty when nothing was rendered)."""
    entries = list(ctx.page_states.values())
    if not entries:
        return ""
    ctx.stream_rendered = True
    tab = secrets.token_urlsafe(12)
    token = signer.dumps(ctx.session_id(create=bool(entries)), tab, entries, epoch)
    action = (
        f"@get('{prefix}/stream?t={token}', {{openWhenHidden: true, retry: 'always', "
        "retryInterval: 500, retryScaler: 1.5, retryMaxWait: 5000, retryMaxCount: 100000, "
        # the stream needs none of the page's signals: keep its URL short
        "filterSignals: {include: /^$/}})"
    )
    signals = json.dumps({TAB_SIGNAL: {"tab": tab}}, separators=(",", ":"))
    return (
        f'<div id="faststate-stream" style="display:none" data-signals=\'{signals}\' '
        f'data-init="{action}"></div>'
    )


def parse_event_id(raw: bytes | None, epoch: str, count: int) -> list[int] | None:
    """Versions a reconnecting tab reports in Last-Event-ID (None if unusable)."""
    if not raw:
        return None
    try:
        text = raw.decode("ascii")
        got_epoch, _, vector = text.partition(":")
        versions = [int(v) for v in vector.split(".")] if vector else []
    except (UnicodeDecodeError, ValueError):
        return None
    if got_epoch != epoch or len(versions) != count:
        return None
    return versions


def allowed_entries(
    ctx: RequestContext, user: UserContext | None, entries: list[Any]
) -> list[tuple[str, str, str | None, int, Any]]:
    """The token's entries this user may still see (checked when the stream opens): state
    name, key, id, version, and the names of the views the page shows of it (or None)."""
    out = []
    for entry in entries:
        if not (isinstance(entry, list) and len(entry) in (3, 4)):
            continue
        name, ident, version = entry[:3]
        views = entry[3] if len(entry) == 4 else None
        if not isinstance(name, str) or not isinstance(version, int):
            continue
        if ident is not None and not isinstance(ident, str):
            continue
        key = key_if_allowed(name, ident, ctx, user)
        if key is not None:
            out.append((name, key, ident, version, views))
    return out


def key_if_allowed(
    name: str,
    ident: str | None,
    ctx: RequestContext,
    user: UserContext | None,
) -> str | None:
    """The key this stream request reaches for state ``name`` (its own session and user), or
    None when the user may not see that state."""
    cls = catalog.class_named(name)
    if cls is None:
        return None
    info = info_of(cls)
    if info.auth.failure(user) is not None:
        return None
    try:
        return info.rule.key(name, ctx, ident)
    except FastStateError:
        return None


async def serve_stream(
    scope: Scope,
    receive: Receive,
    send: Send,
    ctx: RequestContext,
    store: StateStore,
    signer: TokenSigner,
) -> None:
    """Serve ``GET <prefix>/stream?t=<token>``: one tab's live stream, until it goes away."""
    hub = store.hub
    reply = Reply(send)
    if store.closing:
        # the server is stopping: the tab retries (Datastar backs off) against the next one
        headers = [(b"retry-after", b"1"), (b"x-faststate-error", b"shutting_down")]
        await reply.full(503, headers, b"")
        return
    query = scope.get("query_string", b"").decode("latin-1")
    token = next((p[2:] for p in query.split("&") if p.startswith("t=")), "")
    payload = signer.loads(token, TOKEN_MAX_AGE)
    user = await ctx.load_user()  # first: the session id is only this browser's if bound to it
    sid = ctx.session_id(create=False)
    if (
        payload is None
        or not hmac.compare_digest(str(payload.get("b", "")), signer.binding(sid))
        or not isinstance(payload.get("k"), list)
    ):
        # 204 tells Datastar not to retry: this token will never work for this browser
        await reply.full(204, [(b"x-faststate-error", b"invalid_stream_token")], b"")
        return
    tab = str(payload.get("t", ""))
    address = client_address(scope)
    try:
        check_stream_caps(hub, store.limits, sid, tab, address)
    except FastStateError as err:
        await send_error(scope, reply, err)
        return
    store.seen_session(ctx)
    entries = allowed_entries(ctx, user, payload["k"])
    same_process = payload.get("e") == hub.epoch
    conn = _connect(scope, store, sid, user, tab, entries, same_process, address)
    await _run(conn, store, ctx, entries, receive, send)


def _connect(
    scope: Scope,
    store: StateStore,
    sid: str | None,
    user: UserContext | None,
    tab: str,
    entries: list[tuple[str, str, str | None, int, Any]],
    same_process: bool,
    address: str | None,
) -> Connection:
    """The tab's connection, added to the hub, with what it must resync: the versions its
    ``Last-Event-ID`` reports, else those its page was rendered at (this process), else all."""
    hub = store.hub
    keys = [e[1] for e in entries]
    reported = parse_event_id(header(scope, b"last-event-id"), hub.epoch, len(keys))
    if reported is not None:
        versions = reported
    elif same_process:
        versions = [e[3] for e in entries]  # the versions the page was rendered at
    else:
        versions = [-1] * len(keys)  # rendered by another process (a restart): resync all
    conn = Connection(sid, user, tab, keys, versions, [e[0] for e in entries], address)
    conn.views = watches_for([[e[0], e[4]] for e in entries], versions)
    for key in view_keys(conn):
        hub.views.watch(key)
    hub.add(conn)
    for index, (_name, key, _ident, _v, _views) in enumerate(entries):
        inst = store.get(key)
        if inst is None or meta_of(inst).version != versions[index]:
            conn.resync.add(index)  # it changed (or the server restarted) since the tab knew it
    return conn


async def _run(
    conn: Connection,
    store: StateStore,
    ctx: RequestContext,
    entries: list[tuple[str, str, str | None, int, Any]],
    receive: Receive,
    send: Send,
) -> None:
    """Send the stream until the tab goes away, stalls, or the server ends it."""
    hub = store.hub
    conn.task = asyncio.current_task()
    hub.ensure_ticker()
    watcher = asyncio.ensure_future(_watch_disconnect(receive, conn))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await _pump(conn, store, ctx, entries, send)
        # ended here (a stop, a rotated session): complete the response; the tab reconnects
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not conn.stalled:
            raise
        # the ticker cancelled a write that stalled past write_timeout: end this stream only
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    except (OSError, RuntimeError):
        pass  # the client went away: drop the connection
    finally:
        hub.remove(conn)
        for key in view_keys(conn):
            hub.views.unwatch(key)
        watcher.cancel()


def check_stream_caps(
    hub: Hub, limits: Limits, sid: str | None, tab: str, address: str | None
) -> None:
    """429 when the session, the client address, or the app, has as many open streams as it
    may (a tab that reconnects replaces its own stream and is never refused for it)."""
    old = hub.tabs.get(tab)
    if sid is not None:
        mine = hub.sessions.get(sid, ())
        count = len(mine) - (1 if old is not None and old in mine else 0)
        if count >= limits.max_streams_per_session:
            raise TooManyRequests(
                f"this session has {limits.max_streams_per_session} live streams open, the most "
                "it may; close a tab",
                retry_after=5,
            )
    if address is not None:
        count = hub.addresses.get(address, 0)
        count -= 1 if old is not None and old.address == address else 0
        if count >= limits.max_streams_per_address:
            raise TooManyRequests(
                "this address has as many live streams open as it may; close a tab",
                retry_after=5,
            )
    if len(hub.tabs) - (old is not None) >= limits.max_streams:
        raise TooManyRequests("the server has as many live streams as it may", retry_after=5)


async def _watch_disconnect(receive: Receive, conn: Connection) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            conn.closed = True
            conn.wake()
            return


async def _pump(
    conn: Connection,
    store: StateStore,
    ctx: RequestContext,
    entries: list[tuple[str, str, str | None, int, Any]],
    send: Send,
) -> None:
    loop = asyncio.get_running_loop()
    hub = store.hub
    after_key = None
    if conn.views:  # what follows the changes of key ``index``: its view patches
        after_key = functools.partial(view_patches, conn, store, ctx, entries)
    if len(set(conn.keys)) == len(conn.keys) and inspect.iscoroutinefunction(send):
        # the hub writes our keys' changes itself while we wait (Hub._write), in our context
        conn.context = contextvars.copy_context()
        conn.send, conn.after = send, after_key
        if conn.views and len(conn.keys) == 1 and not any(w.spec.per_viewer for w in conn.views):
            conn.view_sig = tuple(w.spec for w in conn.views)

    while not conn.closed:
        pending = hub.pending(conn, after_key)
        if pending is None and not conn.resync and not conn.heartbeat_due:
            conn.waiter = loop.create_future()
            try:
                await conn.waiter
            except BaseException as exc:
                if isinstance(conn.handoff, UnfinishedWrite):  # cancelled before we took it
                    conn.handoff.cancel(exc)
                raise
            unfinished = conn.handoff
            if unfinished is not None:  # a write the hub began and could not finish, or make
                conn.handoff = None
                await unfinished
                conn.last_write = hub.now
                conn.writing_since = 0.0
            continue
        conn.waiter = None
        if isinstance(pending, dict) and not conn.resync:
            message = pending  # the shared, prebuilt message (a one-key stream)
        else:
            out = bytearray()
            if conn.resync:
                out += await _snapshot(conn, store, ctx, entries)
                if conn.resync and not out:
                    # the backend is unreachable: try again shortly (heartbeats go on)
                    conn.heartbeat_due = True
                    await asyncio.sleep(0.5)
            if isinstance(pending, dict):
                out += pending["body"]
            elif pending:
                out += b"".join(pending)
            if not out and conn.heartbeat_due:
                out += b": keep-alive\n\n"
            if not out:
                conn.heartbeat_due = False
                continue
            message = {"type": "http.response.body", "body": bytes(out), "more_body": True}
        conn.heartbeat_due = False
        # the hub's coarse clock: no clock call per write (the ticker keeps it current)
        conn.writing_since = hub.now
        await send(message)
        conn.last_write = hub.now
        conn.writing_since = 0.0


async def _snapshot(
    conn: Connection,
    store: StateStore,
    ctx: RequestContext,
    entries: list[tuple[str, str, str | None, int, Any]],
) -> bytes:
    """One patch with the full signals of every state this tab must resync, then its views."""
    merged: dict[str, Any] = {}
    pending: set[int] = set()
    views = bytearray()
    subscribers = store.hub.subscribers
    for index in sorted(conn.resync):
        name, key, ident, _v, _views = entries[index]
        if conn not in subscribers.get(key, ()):
            continue  # unsubscribed: this user may no longer see it
        try:
            inst = await store.refreshed(key)
        except FastStateError:
            pending.add(index)  # the backend is down: try again when it is back
            continue
        if inst is None:
            cls = catalog.class_named(name)
            if cls is None:
                continue
            try:
                inst = await store.resolve(cls, ctx, ident)
            except FastStateError:
                continue
            if inst.key != key:
                continue
        if conn not in subscribers.get(key, ()):
            continue  # unsubscribed while it was read (a sign-out, refresh_user)
        _deep_merge(merged, inst.signals())
        conn.versions[index] = meta_of(inst).version
        if conn.views:
            views += resync_views(conn, index, inst, store, ctx)
    conn.resync = pending
    if not merged:
        return b""
    event_id = f"{store.hub.epoch}:{conn.event_id()}"
    return str(SSE.patch_signals(merged, event_id=event_id)).encode() + bytes(views)


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _deep_merge(into[k], v)
        else:
            into[k] = v


__all__ = ["TokenSigner", "serve_stream", "stream_element"]
