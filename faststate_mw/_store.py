"""The store: the live instances of one app, its backend and its hub.

One :class:`StateStore` per app (``FastStateMiddleware`` makes one, or takes the one you pass).
Instances are keyed by hierarchical keys (see ``_scopes.py``); each instance whose scope has a
time to live is tracked in an access-ordered list per ttl, so a sweep touches only what has
expired and never walks every instance. There is one resolve path, :meth:`StateStore.resolve`;
the sync :meth:`StateStore.resolve_now` is a thin wrapper over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import anyio.from_thread
from pydantic import BaseModel

from ._caps import InstanceCaps
from ._changes import commits_now, snapshot
from ._config import StateInfo, info_of, meta_of
from ._context import RequestContext, UserContext, _active, _current
from ._deadlines import Deadlines
from ._eviction import Eviction
from ._exceptions import FastStateError, NoRequestContextError
from ._hub import Hub
from ._instances import InstanceTable
from ._limits import EventLimiter, Limits
from ._metrics import Metrics, live_counts
from ._observe import Observer
from ._recorder import Recorder
from ._scopes import StateScope
from ._stored import apply_stored, from_stored, stored_copy
from .backends import Backend, Stored, backend_from_url

log = logging.getLogger("faststate_mw")
T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

#: ended session ids a store remembers having told the other workers (a replayed stale
#: cookie is told once; one that comes back after this many others is told again)
TOLD_ENDED_KEPT = 4096
#: stores started in this process: background code with no request uses the only one
_running: weakref.WeakSet[StateStore] = weakref.WeakSet()


def current_store() -> StateStore:
    """The store of the running request; outside a request, the store made active with
    ``with store.activate():``, else the only started one. Raises NoRequestContextError when
    there is none, or several and none was chosen."""
    active: StateStore | None = _active.get()
    ctx = _current.get()
    # the request's own store (its context owner's), unless a store was activated within it:
    # one activated around it (a test, a script) does not pick the request's store
    if ctx is not None and active is ctx.activated:
        store: StateStore | None = getattr(ctx.owner, "store", None)
        if store is not None:
            return store
    if active is not None:
        return active
    running = list(_running)
    if len(running) == 1:
        return running[0]
    if not running:
        raise NoRequestContextError(
            "no faststate store here: run this inside a request handled by FastStateMiddleware, "
            "after the app has started, or inside `with store.activate():`"
        )
    raise NoRequestContextError(
        "several faststate apps run in this process: pick one with `with store.activate():`"
    )


class StateStore:
    """The live states of one app, where they are stored and who is watching them.

    ``backend``: a URL (``memory://``, ``sqlite:///path.db``, ``redis://host:6379/0``) or a
    Backend. ``clock``: what ttls and event rates are measured with (tests pass a fake one).
    ``metrics``: keep Prometheus metrics in :attr:`metrics` (needs the ``[metrics]`` extra).
    ``record``: keep the last ``record`` events, and changes per key, in :attr:`recorder`.
    ``limits``: the bounds on what clients can make it hold (:class:`Limits`; README, "Limits").
    The middleware starts it (ASGI lifespan, or lazily on the first request) and closes it at
    shutdown.
    """

    def __init__(
        self,
        backend: Backend | str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 30.0,
        heartbeat: float = 15.0,
        write_timeout: float = 10.0,
        max_queue: int = 64,
        limits: Limits | None = None,
        metrics: bool = False,
        record: int = 0,
    ) -> None:
        if sweep_interval <= 0 or heartbeat <= 0 or write_timeout <= 0 or max_queue <= 0:
            raise ValueError("sweep_interval, heartbeat, write_timeout, max_queue: positive")
        self.clock = clock
        self.sweep_interval = sweep_interval
        #: where states are stored and how changes reach other workers
        self.backend: Backend = backend_from_url(backend)
        #: the live streams of this app and what they watch
        self.hub = Hub(max_queue)
        self.hub.heartbeat = heartbeat
        self.hub.write_timeout = write_timeout
        self._table = InstanceTable(clock)
        #: the bounds on what clients can make this store hold
        self.limits = limits = limits or Limits()
        #: the ttl sweep and saving before eviction
        self.eviction = Eviction(self._table, self.backend, self.hub, clock)
        self.caps = InstanceCaps(self._table, limits, self.eviction.evict)
        #: the token buckets events go through (per session, per client address)
        self.event_limiter = EventLimiter(limits, clock)
        #: the time bounds of request bodies and of events, one timer each
        self.body_deadlines = Deadlines(limits.body_timeout)
        self.event_deadlines = Deadlines(limits.event_timeout)
        self._backend_started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: messages to the other workers being sent (kept: a task nobody holds may vanish)
        self._control_tasks: set[asyncio.Task[None]] = set()
        #: ended session ids told to the other workers, oldest first: a stale cookie sent
        #: again and again ends its session on every request, but is told only once
        self._told_ended: dict[str, None] = {}
        #: set when the server stops: live streams are ended and new ones refused
        self.closing = False
        #: logging, metrics, tracing and recording of events (see ``_observe``)
        self.observer = Observer(recorder=Recorder(record) if record > 0 else None)
        if metrics:
            self.enable_metrics()

    # -- observability -----------------------------------------------------------------------------
    @property
    def metrics(self) -> Metrics | None:
        """This app's :class:`Metrics`, or None when they are off."""
        return self.observer.metrics

    @property
    def recorder(self) -> Recorder | None:
        """The recent events and per-key changes, when ``record`` is on."""
        return self.observer.recorder

    def enable_metrics(self) -> Metrics:
        """Start keeping metrics (idempotent); returns them."""
        metrics = self.observer.metrics
        if metrics is None:
            metrics = self.observer.metrics = Metrics(
                lambda: live_counts(self._table.items(), self.hub, self.backend.stats())
            )
            self.backend.delivery_observer = metrics.delivered
        return metrics

    # -- start and stop ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the backend (a clear error when it cannot be reached) and start the ttl
        sweeper in the running loop. Idempotent; a new event loop gets a new sweeper."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop  # first: a request arriving meanwhile must not start twice
        self.closing = False
        if not self._backend_started:
            self._backend_started = True
            backend = self.backend
            backend.on_resubscribed(self.hub.resync_keys)
            backend.on_control(self._control)
            self.hub.watch(backend.subscribe, self._unwatched)
            try:
                await backend.start(self.apply_remote, self.hub.epoch)
            except BaseException:
                self._backend_started = False
                self._loop = None
                raise
        self._sweeper = loop.create_task(self.eviction.run_forever(self.sweep_interval))
        _running.add(self)

    def _unwatched(self, key: str) -> None:
        """The last tab showing ``key`` went away: its idle time starts now (a key shown until
        a moment ago is not idle, and a tab reconnecting finds it), and the backend stops
        delivering it."""
        inst = self._table.get(key)
        if inst is not None:
            self._table.touch(key, meta_of(inst).ttl)
        self.backend.unsubscribe(key)

    @property
    def started(self) -> bool:
        """Whether this store runs in the current event loop."""
        try:
            return self._loop is asyncio.get_running_loop()
        except RuntimeError:
            return False

    def begin_shutdown(self) -> None:
        """The server is stopping: end every open stream now (so that the server, which waits
        for open responses, can stop) and refuse new ones (tabs retry against the next
        server)."""
        self.closing = True
        self.hub.close_all()

    async def close(self) -> None:
        """Stop the sweeper, end every open stream (tabs reconnect and resync against the next
        server), save what the backend would otherwise lose, and close the backend."""
        _running.discard(self)
        task, self._sweeper = self._sweeper, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.hub.close_all()
        await self.hub.stop()
        await self.save_all()
        await self.backend.close()
        self._backend_started = False
        self._loop = None

    @contextlib.contextmanager
    def activate(self) -> Iterator[StateStore]:
        """``with store.activate():`` makes this the store of background code (tasks, scripts)
        that runs outside any request: ``State.for_record(7)``, ``update()``."""
        token = _active.set(self)
        try:
            yield self
        finally:
            _active.reset(token)

    # -- resolving instances -----------------------------------------------------------------------
    def key_for(self, cls: type[Any], ctx: RequestContext | None, ident: str | None) -> str:
        """The key of ``cls``'s instance for this request (and id), after its state-wide auth
        rule (401/403, logged)."""
        info = info_of(cls)
        rule = info.auth
        if rule.requires_auth and ctx is not None:
            # a page (or its stream) of a signed-out visitor: INFO, it is usually sent to login
            rule.check(ctx.user, key=_safe_key(info, ctx, ident), anonymous_level=logging.INFO)
        return info.rule.key(info.name, ctx, ident)

    async def resolve(
        self,
        cls: type[T],
        ctx: RequestContext | None,
        ident: str | None = None,
        *,
        refresh: bool = True,
    ) -> T:
        """The instance of ``cls`` for this request (and id), created on first use: read from
        the backend if stored there, else from the ``load`` hook, else defaults. With a shared
        backend (Redis) a cached instance is refreshed when ``refresh``."""
        key = self.key_for(cls, ctx, ident)
        inst = self.cached(key, cls, ctx)
        if inst is not None:
            if refresh and self.backend.shared:
                apply_stored(inst, await self.backend.load(key))
            return inst
        return await self.create(key, cls, ctx, ident)

    def cached(self, key: str, cls: type[T], ctx: RequestContext | None) -> T | None:
        """The live instance of ``cls`` under ``key`` (made by :meth:`key_for`), now used, or
        None; not refreshed from a shared backend. The request's session counts as seen."""
        if ctx is not None and self.caps.fresh:
            self.seen_session(ctx)
        return self._table.use(key, cls)  # type: ignore[no-any-return]

    async def create(
        self, key: str, cls: type[T], ctx: RequestContext | None, ident: str | None
    ) -> T:
        """The instance of ``cls`` under ``key`` that :meth:`cached` did not find: read from
        the backend if stored there, else from the ``load`` hook, else defaults."""
        backend = self.backend
        await self.caps.make_room(key, ctx)
        stored = await backend.load(key) if backend.durable else None
        data: Any = None
        load = info_of(cls).config.load
        if stored is None and load is not None:
            data = load(ident)
            if inspect.isawaitable(data):
                data = await data
        return self._add(key, cls, ident, data, ctx, stored)

    def resolve_now(self, cls: type[T], ctx: RequestContext | None, ident: str | None = None) -> T:
        """:meth:`resolve` for sync code. A cached instance is returned at once; otherwise the
        resolve runs on the event loop from a worker thread (sync handlers), or inline when it
        need not wait for I/O. Code in the event loop that must wait (a shared backend, an async
        ``load`` hook that awaits) gets a clear error: it should ``await`` instead."""
        key = self.key_for(cls, ctx, ident)
        inst = self.cached(key, cls, ctx)
        if inst is not None and not self.backend.shared:
            return inst
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            with contextlib.suppress(RuntimeError):  # not a worker thread of the app's loop
                return anyio.from_thread.run(self.resolve, cls, ctx, ident)
        else:
            if self.backend.shared:
                raise NoRequestContextError(_AWAIT_HINT.format(name=cls.__name__))
        return _run_inline(self.resolve(cls, ctx, ident), cls.__name__)

    def _add(
        self,
        key: str,
        cls: type[T],
        ident: str | None,
        data: Any,
        ctx: RequestContext | None,
        stored: Stored | None,
    ) -> T:
        with self._table.create_lock:
            inst: Any = self._table.get(key)
            if inst is not None and type(inst) is cls:
                return inst
            if stored is not None:
                inst = from_stored(cls, key, stored.data)
            elif data is None:
                inst = cls()
            elif isinstance(data, cls):
                inst = data
            else:
                inst = cls.model_validate(data)
            meta = meta_of(inst)
            if stored is not None:
                meta.version = stored.version
            info = info_of(cls)
            meta.key, meta.ident, meta.store = key, ident, self
            meta.now = commits_now(inst)
            meta.ttl = self.caps.ttl_for(key, info.ttl, ctx)
            info.rule.on_create(inst, ctx)
            self._table.add(key, inst, meta.ttl)
        return inst  # type: ignore[no-any-return]

    def sized(self, key: str, size: int) -> None:
        """The state under ``key`` changed and now serializes to ``size`` bytes (the change
        pipeline tells; the byte caps count it)."""
        self._table.sized(key, size)
        if self.caps.fresh:  # else no key is fresh: nothing for caps.sized to count
            self.caps.sized(key, size)

    def seen_session(self, ctx: RequestContext) -> None:
        """A request came with the cookie of a fresh session: its states get their normal ttl.
        (The cookie as sent: no user is needed to read it, so an async user loader need not
        have been awaited.)"""
        found = ctx.session_cookie()
        if found is not None and found[0] != ctx.new_session_id:
            self.caps.confirm(found[0])

    # -- changes made elsewhere --------------------------------------------------------------------
    def apply_remote(self, key: str, version: int, data: str, sse: bytes) -> None:
        """A change published on the backend: update the cached copy, tell local streams.

        Our own changes come back too. Most were delivered when they were made (skipped here),
        but a change whose write timed out was rolled back and reported as failed, and the
        backend may still have applied it afterwards (a stalled network): then it arrives
        here, and local streams must get it like any other change."""
        if self.hub.last_version(key) >= version:
            return  # delivered already
        inst = self._table.get(key)
        if inst is not None:
            apply_stored(inst, Stored(version, data))
            if self.hub.views.watched(key):
                self.hub.views.record(key, version, snapshot(inst), None)
        self.hub.publish(key, version, sse)

    async def refreshed(self, key: str) -> Any:
        """The instance under ``key`` as the shared backend has it now. A change running on
        the cached instance keeps it as it is (its commit will notice the newer version): a
        detached copy of the stored state is returned instead, to read from."""
        inst = self._table.get(key)
        if inst is None or not self.backend.shared:
            return inst
        stored = await self.backend.load(key)
        if apply_stored(inst, stored) or stored is None:
            return inst
        meta = meta_of(inst)
        if stored.version <= meta.version:
            return inst
        return stored_copy(inst, key, stored)

    # -- looking around ----------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        """The live instance stored under ``key``, if any."""
        return self._table.get(key)

    def keys(
        self, scope: StateScope | str | None = None, state_cls: type | None = None
    ) -> list[str]:
        """Live keys, optionally only those of one scope and/or one class."""
        return self._table.keys_where(None if scope is None else f"{scope}:", state_cls)

    def discard(self, key: str) -> Any:
        """Forget the instance under ``key`` (no hooks run); returns it."""
        inst = self._table.get(key)
        return None if inst is None else self._table.discard(key, meta_of(inst).ttl)

    def clear(self) -> None:
        """Forget every live instance."""
        self._table.clear()
        self.caps.clear()

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"<StateStore {self.backend.url} {len(self._table)} instances>"

    def stats(self) -> dict[str, Any]:
        """Live instances (in all and by scope), streams, and the backend's counters."""
        return {
            "instances": len(self._table),
            "by_scope": self._table.by_scope(),
            "bytes": self._table.bytes,
            "fresh_sessions": len(self.caps.fresh),
            "streams": self.hub.stats(),
            "backend": self.backend.stats(),
        }

    # -- who may see what --------------------------------------------------------------------------
    def refresh_user(self, user_id: str, user: UserContext | None) -> int:
        """Tell open streams that ``user_id`` changed (roles, permissions, logged out
        elsewhere): they stop delivering what the user may no longer see, on every worker of
        a shared backend. Returns how many streams of this worker were re-checked."""
        self._tell_workers({"refresh_user": user_id, "user": _user_data(user)})
        return self.hub.refresh_user(user_id, user)

    def end_session(self, session_id: str, user: UserContext | None) -> None:
        """A browser's session id was rotated (now signed in as ``user``): the streams of the
        old one, on every worker of a shared backend, stop delivering its states (from any
        thread; sync handlers run in worker threads). The states stay, out of reach, until
        their ttl."""
        self._on_loop(self.hub.end_session, session_id, user)
        self._tell_workers({"end_session": session_id, "user": _user_data(user)})

    def _tell_workers(self, message: dict[str, Any]) -> None:
        """Send ``message`` to the other workers of a shared backend (from any thread)."""
        if self._loop is None or not self.backend.shared:
            return
        self._on_loop(self._send_to_workers, message)

    def _on_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the store's event loop: now when called there (or before the store
        started), else soon, from the loop's thread (sync handlers run in worker threads)."""
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _send_to_workers(self, message: dict[str, Any]) -> None:
        sid = message.get("end_session")
        if sid is not None:
            told = self._told_ended
            if sid in told:
                return
            told[sid] = None
            if len(told) > TOLD_ENDED_KEPT:
                del told[next(iter(told))]
        task = asyncio.get_running_loop().create_task(self._publish_control(message))
        self._control_tasks.add(task)
        task.add_done_callback(self._control_tasks.discard)

    async def _publish_control(self, message: dict[str, Any]) -> None:
        try:
            await self.backend.publish_control(message)
        except Exception:
            log.exception("telling the other workers %s failed", sorted(message))
            sid = message.get("end_session")
            if isinstance(sid, str):  # not told: told when it ends again (its cookie replayed)
                self._told_ended.pop(sid, None)

    def _control(self, message: Any) -> None:
        """Another worker ended a session or refreshed a user: re-check this worker's streams."""
        if not isinstance(message, dict):
            return
        user = _user_from(message.get("user"))
        sid, uid = message.get("end_session"), message.get("refresh_user")
        if isinstance(sid, str):
            self.hub.end_session(sid, user)
        elif isinstance(uid, str):
            self.hub.refresh_user(uid, user)

    # -- time to live ------------------------------------------------------------------------------
    async def sweep(self, batch: int = 1000) -> list[str]:
        """Drop every instance idle longer than its ttl, after its ``on_evict`` hook (e.g. a
        save); instances a change runs on or a live tab shows are kept. Yields to the event
        loop every ``batch`` evictions so requests never stall."""
        return await self.eviction.sweep(batch)

    async def save_all(self) -> int:
        """Save every live instance as eviction would (hooks, and a durable backend that does
        not already hold every change). Runs at shutdown; returns how many were saved."""
        return await self.eviction.save_all()


_AWAIT_HINT = (
    "{name} must be read from the backend, which sync code in the event loop cannot wait for: "
    "in async code use `await {name}.dependency()` (or `await {name}.resolve(id)`)"
)


def _run_inline(coro: Coroutine[Any, Any, R], name: str) -> R:
    """Run a coroutine that completes without waiting (memory, SQLite, a sync hook)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise NoRequestContextError(_AWAIT_HINT.format(name=name))


def _user_data(user: UserContext | None) -> dict[str, Any] | None:
    """``user`` as JSON for another worker."""
    if user is None:
        return None
    return {
        "id": user.id,
        "username": user.username,
        "roles": sorted(user.roles),
        "permissions": sorted(user.permissions),
    }


def _user_from(data: Any) -> UserContext | None:
    """The user another worker sent (:func:`_user_data`); None for nobody or anything else."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return None
    username = data.get("username")
    return UserContext(
        data["id"],
        username if isinstance(username, str) else None,
        _strings(data.get("roles")),
        _strings(data.get("permissions")),
    )


def _strings(value: Any) -> frozenset[str]:
    return (
        frozenset(v for v in value if isinstance(v, str))
        if isinstance(value, list)
        else frozenset()
    )


def _safe_key(info: StateInfo, ctx: RequestContext, ident: str | None) -> str:
    """The key for the audit log; the state name where no key can be built (no user yet)."""
    try:
        return info.rule.key(info.name, ctx, ident)
    except FastStateError:
        return info.name


__all__ = ["StateStore", "current_store"]
