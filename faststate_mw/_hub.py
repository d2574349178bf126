"""Fan-out of state changes to the live streams that subscribed to them.

Every change of a state bumps its per-key version and is serialized once into the SSE ``data``
lines of a ``datastar-patch-signals`` event, appended to that key's bounded log, and the
subscribed connections are woken; each writer takes from the log what it has not sent yet, behind
its own ``id:`` line (the versions that connection has seen, so a reconnecting tab can tell what
it missed). A consumer that falls further behind than the log is long (``max_queue`` changes) is
reduced to a single resync snapshot, so it never blocks the broadcast or other tabs.

The common case costs no wake-up at all: a waiting stream one change behind on the key is written
the change (for a stream of that key alone, the key's prebuilt message) and its view patches by
the hub itself, in one callback for all of them (:meth:`Hub._write`), through the stream's ASGI
``send`` run in the stream's context (a wake-up costs more than such a write). A write that has to
wait (a client that reads slowly) is handed to the stream's task, which finishes it under the
same write timeout; one that raises is made again by the task itself (a client that went away
fails again there and ends its stream; a send wrapper that needs to run in its task, e.g. under
``asyncio.timeout``, succeeds), and the hub no longer writes for that stream. The hub's part of a
write runs outside the stream's task: ``asyncio.current_task()`` is None there.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, NamedTuple

from ._config import catalog, info_of
from ._context import UserContext
from ._viewlog import ViewLog

_conn_ids = itertools.count(1)
log = logging.getLogger("faststate_mw")


class Connection:
    """One open stream (one browser tab)."""

    __slots__ = (
        "address",
        "after",
        "checked",
        "closed",
        "context",
        "ended",
        "handoff",
        "heartbeat_due",
        "id",
        "keys",
        "last_write",
        "names",
        "resync",
        "send",
        "session_id",
        "stalled",
        "tab",
        "task",
        "user",
        "versions",
        "view_sig",
        "views",
        "waiter",
        "writing_since",
    )

    def __init__(
        self,
        session_id: str | None,
        user: UserContext | None,
        tab: str,
        keys: list[str],
        versions: list[int],
        names: list[str] | None = None,
        address: str | None = None,
    ) -> None:
        self.id = next(_conn_ids)
        #: the client's address (streams are capped per address)
        self.address = address
        #: the state name of each key
        self.names = names or [""] * len(keys)
        self.session_id = session_id
        self.user = user
        self.tab = tab
        self.keys = keys
        #: the version of each key this tab has (what its page showed, then what we sent)
        self.versions = versions
        #: keys (by index) that need a full snapshot instead of patches
        self.resync: set[int] = set()
        #: resolved to wake the writer (no per-wake task or timer: 10,000 streams stay cheap)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        #: its session ended (a sign-out or sign-in on its browser): it keeps only public
        #: states, and what it renders runs in the old session, never shared with other tabs
        self.ended = False
        self.stalled = False
        self.heartbeat_due = False
        self.last_write = time.monotonic()
        #: when the pending write began (0: none); the hub's ticker drops stalled writers
        self.writing_since = 0.0
        #: per key (by index): the log entry last found older than what this tab knows
        self.checked: dict[int, LogEntry] | None = None
        self.task: asyncio.Task[Any] | None = None
        #: the live views this tab shows (see _views.py); empty: signals only
        self.views: list[Any] = []
        #: set by a stream (of distinct keys): the hub writes a key's next change itself while
        #: the stream waits (see Hub._write), calling ``send`` (and ``after``) in ``context``
        self.send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None
        self.context: contextvars.Context | None = None
        #: what follows the changes of key ``index`` on this tab: its view patches (None: none)
        self.after: Callable[[int], bytes] | None = None
        #: equal for streams of one key whose views render alike (None: per-viewer views, or
        #: none): their view patches are made once per change for all of them (Hub._write)
        self.view_sig: tuple[Any, ...] | None = None
        #: a write the hub began (or failed to make) that this stream's task must finish (make)
        self.handoff: Awaitable[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def event_id(self) -> str:
        return ".".join(map(str, self.versions))


class UnfinishedWrite:
    """A write :meth:`Hub._write` began for a stream that had to wait (on ``waits_on``, what its
    coroutine yielded): the stream's task awaits this to finish it, as if it had awaited the
    write from the start, in the ``context`` the write began in (a contextvar a send wrapper set
    before waiting is reset after it)."""

    __slots__ = ("context", "coro", "waits_on")

    def __init__(
        self, coro: Coroutine[Any, Any, None], waits_on: Any, context: contextvars.Context
    ) -> None:
        self.coro = coro
        self.waits_on = waits_on
        self.context = context

    def __await__(self) -> Generator[Any, Any, None]:
        coro, value, run = self.coro, self.waits_on, self.context.run
        while True:  # what ``await coro`` does from its first suspension on
            try:
                sent = yield value
            except BaseException as exc:  # cancelled (a write timeout): the write gets it
                try:
                    value = run(coro.throw, exc)
                except StopIteration:
                    return
                continue
            try:
                value = run(coro.send, sent)
            except StopIteration:
                return

    def cancel(self, exc: BaseException) -> None:
        """The stream's task was cancelled (or closed) before it took this write over: the write
        gets ``exc`` now, in its context, as a write the task awaited would."""
        coro, run = self.coro, self.context.run
        try:
            run(coro.throw, exc)
        except BaseException:  # it ended (the usual case: the cancellation went through it)
            return
        with contextlib.suppress(BaseException):  # it ignored the cancellation: end it
            run(coro.close)


class WriteAgain:
    """A write :meth:`Hub._write` could not make (``send`` raised): the stream's task makes it
    again itself."""

    __slots__ = ("message", "send")

    def __init__(
        self, send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]], message: dict[str, Any]
    ) -> None:
        self.send = send
        self.message = message

    def __await__(self) -> Generator[Any, Any, None]:
        return self.send(self.message).__await__()


_BODY = {"type": "http.response.body", "more_body": True}


#: bytes of changes one key's log keeps beside its latest change, and all logs together
MAX_LOG_BYTES = 1024 * 1024
MAX_LOGS_BYTES = 64 * 1024 * 1024
#: seconds a key's log keeps a change beside its latest one: enough for tabs a moment behind
#: and for a reconnect; a tab further behind resyncs (one snapshot), and a log of a key that
#: changes now and then does not hold its last ``max_queue`` changes for as long as it is watched
LOG_SECONDS = 30.0
#: prebuilt messages of a key's latest change with different view patches after it
MAX_SHARED_VIEW_MESSAGES = 4
#: ended session ids the hub remembers: a stream of one that opens later (its request was in
#: flight when the session ended) is ended at once
ENDED_KEPT = 4096


class LogEntry(NamedTuple):
    version: int
    #: when it was published (the hub's coarse clock)
    at: float
    #: the event's ``event:``/``data:`` lines
    data: bytes
    #: the complete ASGI message a stream watching only this key sends
    message: dict[str, Any]
    #: that message with a tab's view patches after it, keyed by those patches' bytes (shared by
    #: every tab showing the same renders); kept only while this is the key's latest change
    with_views: dict[bytes, dict[str, Any]]


class Hub:
    """In-process subscriptions: key -> connections, plus per-session and per-tab indexes."""

    def __init__(
        self,
        max_queue: int = 64,
        max_log_bytes: int = MAX_LOG_BYTES,
        max_logs_bytes: int = MAX_LOGS_BYTES,
    ) -> None:
        self.max_queue = max_queue
        self.log_seconds = LOG_SECONDS
        #: bytes of changes a key's log keeps, and all logs together, beyond each log's latest
        #: change (a tab further behind resyncs): clients choose how large their changes are
        self.max_log_bytes = max_log_bytes
        self.max_logs_bytes = max_logs_bytes
        #: bytes held by each key's log, and their sum
        self.log_bytes: dict[str, int] = {}
        self.logs_bytes = 0
        #: seconds between keep-alive comments, and before a stalled write drops its stream
        self.heartbeat = 15.0
        self.write_timeout = 10.0
        self._ticker: asyncio.Task[None] | None = None
        #: a coarse clock the ticker advances (streams stamp writes with it for free)
        self.now = time.monotonic()
        #: a new value every process start: clients of an older process always resync
        self.epoch = secrets.token_hex(4)
        self.subscribers: dict[str, dict[Connection, int]] = {}
        #: the recent changes of each watched key, oldest first (at most ``max_queue``)
        self.logs: dict[str, deque[LogEntry]] = {}
        self.tabs: dict[str, Connection] = {}
        self.sessions: dict[str, set[Connection]] = {}
        #: the last ``ENDED_KEPT`` ended session ids, oldest first
        self.ended: dict[str, None] = {}
        #: open streams per client address
        self.addresses: dict[str, int] = {}
        #: committed fields and cached renders of the keys some tab shows a view of
        self.views = ViewLog()
        self.metrics = {"published": 0, "delivered": 0, "dropped_to_resync": 0, "connections": 0}
        self._on_first: Callable[[str], Any] | None = None
        self._on_last: Callable[[str], Any] | None = None

    def watch(self, on_first: Callable[[str], Any], on_last: Callable[[str], Any]) -> None:
        """Call ``on_first(key)`` when a key gets its first local subscriber and
        ``on_last(key)`` when it loses its last one (a backend subscribes once per key)."""
        self._on_first, self._on_last = on_first, on_last
        for key in self.subscribers:
            on_first(key)

    def resync_keys(self, keys: list[str]) -> None:
        """Every connection watching these keys gets a fresh snapshot of them (they may have
        changed while we could not hear about it)."""
        for key in keys:
            for conn, index in list(self.subscribers.get(key, {}).items()):
                conn.resync.add(index)
                conn.wake()

    # -- connections ----------------------------------------------------------------------------
    def add(self, conn: Connection) -> None:
        for index, key in enumerate(conn.keys):
            subs = self.subscribers.get(key)
            if subs is None:
                subs = self.subscribers[key] = {}
                if self._on_first is not None:
                    self._on_first(key)
            subs[conn] = index
        old = self.tabs.get(conn.tab)
        if old is not None and old is not conn:
            self.remove(old)  # the tab reconnected: the old stream is dead
        self.tabs[conn.tab] = conn
        if conn.session_id is not None:
            self.sessions.setdefault(conn.session_id, set()).add(conn)
            if conn.session_id in self.ended:  # it ended while this stream's request ran
                self._end(conn, conn.session_id)
        if conn.address is not None:
            self.addresses[conn.address] = self.addresses.get(conn.address, 0) + 1
        self.metrics["connections"] = len(self.tabs)

    def remove(self, conn: Connection) -> None:
        conn.closed = True
        conn.wake()
        for key in conn.keys:
            self.unsubscribe(conn, key)
        if self.tabs.get(conn.tab) is conn:
            del self.tabs[conn.tab]
        address, conn.address = conn.address, None  # counted once, however often removed
        if address is not None:
            left = self.addresses.get(address, 0) - 1
            if left > 0:
                self.addresses[address] = left
            else:
                self.addresses.pop(address, None)
        if conn.session_id is not None:
            conns = self.sessions.get(conn.session_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.sessions[conn.session_id]
        self.metrics["connections"] = len(self.tabs)

    def unsubscribe(self, conn: Connection, key: str) -> None:
        """Stop delivering ``key`` to ``conn`` (its user may no longer see it)."""
        subs = self.subscribers.get(key)
        if subs is not None and subs.pop(conn, None) is not None and not subs:
            del self.subscribers[key]
            self.logs.pop(key, None)
            self.logs_bytes -= self.log_bytes.pop(key, 0)
            if self._on_last is not None:
                self._on_last(key)
        # a snapshot it was still due would deliver it too
        for index, k in enumerate(conn.keys):
            if k == key:
                conn.resync.discard(index)

    def end_session(self, session_id: str, user: UserContext | None) -> int:
        """The browser of ``session_id`` moved to a new session (a sign-in or sign-out, now
        ``user``'s): its streams stop delivering every key of the old session, and all but
        public states (they are nobody's now: were they ``user``'s, ``user`` signing out in
        the new session would not reach them); public states still flow. Returns how many
        streams were re-checked."""
        ended = self.ended
        ended.pop(session_id, None)
        ended[session_id] = None
        if len(ended) > ENDED_KEPT:
            del ended[next(iter(ended))]
        conns = list(self.sessions.get(session_id, ()))
        for conn in conns:
            self._end(conn, session_id)
        return len(conns)

    def recheck_session(self, session_id: str, user: UserContext | None) -> None:
        """A request of ``session_id`` saw its user as ``user``: re-check its streams whose
        user was another (new roles or permissions), see :meth:`reauthorize`."""
        for conn in list(self.sessions.get(session_id, ())):
            if conn.user != user and not conn.ended:  # an ended one keeps public states only
                self.reauthorize(conn, user)

    def _end(self, conn: Connection, session_id: str) -> None:
        owned = f":{session_id}:"
        conn.ended = True
        for key in conn.keys:
            if owned in key or key.endswith(owned[:-1]):
                self.unsubscribe(conn, key)
        self.reauthorize(conn, None)

    def refresh_user(self, user_id: str, user: UserContext | None) -> int:
        """Re-check the streams of ``user_id`` (see :meth:`reauthorize`); returns how many."""
        conns = [c for c in list(self.tabs.values()) if c.user and c.user.id == user_id]
        for conn in conns:
            self.reauthorize(conn, user)
        return len(conns)

    def reauthorize(self, conn: Connection, user: UserContext | None) -> None:
        """Re-check a stream after its user changed: stop delivering what they may not see
        (the state's auth rule, and the scope's owner through ``ScopeRule.keeps``)."""
        previous, conn.user = conn.user, user
        for key, name in zip(conn.keys, conn.names, strict=True):
            if conn not in self.subscribers.get(key, {}):
                continue
            cls = catalog.class_named(name)
            if cls is None:
                self.unsubscribe(conn, key)
                continue
            info = info_of(cls)
            try:
                kept = info.auth.failure(user) is None and info.rule.keeps(
                    key, name, previous, user
                )
            except Exception:  # a rule that cannot tell (e.g. a user sent by another worker
                # lacks what the app's own UserContext holds): it may not see the key
                log.exception("re-checking %s for a changed user failed: no longer delivered", key)
                kept = False
            if not kept:
                self.unsubscribe(conn, key)

    def watched(self, key: str) -> bool:
        """Whether an open stream is subscribed to ``key``."""
        return key in self.subscribers

    def last_version(self, key: str) -> int:
        """The newest version of ``key`` published to local streams (-1: none is logged)."""
        log = self.logs.get(key)
        return log[-1].version if log else -1

    def live_tab(self, tab: str | None, session_id: str | None, key: str) -> bool:
        """Whether ``tab`` (of this session) has an open stream subscribed to ``key``."""
        if not tab:
            return False
        conn = self.tabs.get(tab)
        return (
            conn is not None
            and not conn.closed
            and conn.session_id == session_id
            and conn in self.subscribers.get(key, ())
        )

    # -- publishing -----------------------------------------------------------------------------
    def publish(self, key: str, version: int, data: bytes) -> int:
        """Record a change of ``key`` and wake its subscribers; returns how many there are.

        ``data`` is the serialized ``event:`` and ``data:`` lines, without the blank line that
        ends an SSE event (each connection adds its own ``id:``)."""
        self.metrics["published"] += 1
        subs = self.subscribers.get(key)
        if not subs:
            return 0
        log = self.logs.get(key)
        if log is None:
            log = self.logs[key] = deque()
        # what a one-key stream writes, built once for all of them
        single = data + b"id: " + f"{self.epoch}:{version}".encode() + b"\n\n"
        if log:
            log[-1].with_views.clear()  # only the latest change is sent whole (see pending)
        entry = LogEntry(version, self.now, data, {**_BODY, "body": single}, {})
        log.append(entry)
        self._trim(key, log, len(data) + len(single))
        # no await in this loop, so ``subs`` cannot change under it: no copy needed
        direct: list[Connection] = []
        for conn in subs:
            waiter = conn.waiter
            if waiter is not None and not waiter.done():
                if conn.send is None:
                    waiter.set_result(None)
                else:
                    direct.append(conn)
        if direct:
            waiter = direct[0].waiter
            assert waiter is not None
            waiter.get_loop().call_soon(self._write, key, entry, direct)
        self.metrics["delivered"] += len(subs)
        return len(subs)

    def _write(self, key: str, entry: LogEntry, conns: list[Connection]) -> None:
        """Write ``entry``, a change of ``key``, to each of ``conns`` that still waits, one
        change behind on ``key`` and subscribed to it, without waking its task (a wake-up costs
        more than the write); any other is woken to take what it has not sent from
        :meth:`pending` (several changes behind, a resync, or ``entry`` is no longer the latest:
        one write of them all)."""
        log = self.logs.get(key)
        latest = log is not None and log[-1] is entry
        subs = self.subscribers.get(key, {})
        message = entry.message
        version = entry.version
        #: view patches made for one stream, reused for streams with the same views at the
        #: same versions: (view signature, sent versions) -> (patches, the versions they show)
        made: dict[tuple[Any, ...], tuple[dict[str, Any], tuple[int, ...]]] = {}
        for conn in conns:
            waiter = conn.waiter
            if waiter is None or waiter.done():
                continue  # awake: it takes the change itself
            versions = conn.versions
            send, context = conn.send, conn.context
            index = subs.get(conn)  # None: unsubscribed (its user may no longer see the key)
            if (
                not latest
                or send is None
                or context is None
                or index is None
                or conn.closed
                or conn.resync
                or versions[index] != version - 1
            ):
                waiter.set_result(None)
                continue
            versions[index] = version
            try:
                if len(versions) == 1:  # the message shared by every tab of this key alone
                    out = message
                    if conn.after is not None:
                        out = self._message_with_views(conn, entry, context, made)
                else:  # its own id: line (the versions of all its keys), as pending() makes
                    body = entry.data + self._id_line(conn)
                    if conn.after is not None:
                        body += context.run(conn.after, index)
                    out = {**_BODY, "body": body}
            except Exception:  # the task meets it again, where it always did (pending)
                versions[index] = version - 1
                waiter.set_result(None)
                continue
            coro = send(out)
            try:
                waits_on = context.run(coro.send, None)
            except StopIteration:
                conn.last_write = self.now
                continue
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # the task writes it again itself, and from now on
                conn.send = None
                conn.handoff = WriteAgain(send, out)
            else:  # it waits (a slow reader): the task finishes it
                conn.handoff = UnfinishedWrite(coro, waits_on, context)
            conn.writing_since = self.now  # either way under the write timeout
            waiter.set_result(None)

    def _message_with_views(
        self,
        conn: Connection,
        entry: LogEntry,
        context: contextvars.Context,
        made: dict[tuple[Any, ...], tuple[dict[str, Any], tuple[int, ...]]],
    ) -> dict[str, Any]:
        """``entry``'s message and the view patches ``conn`` is due (its ``after``): the one
        already made for a stream with the same viewer-independent views at the same versions,
        if any (the same message)."""
        sig = conn.view_sig
        assert conn.after is not None
        if sig is None:
            return self._with_views(entry, context.run(conn.after, 0))
        watches = conn.views
        if len(watches) == 1:  # the common case, without lists (one path for both: 13k -> 18.6k
            # instructions per tab of a one-view fan-out, bench.callgrind_fanout --views)
            watch = watches[0]
            seen: tuple[Any, ...] = (sig, watch.sent)
            done = made.get(seen)
            if done is not None:
                watch.sent = done[1][0]
                return done[0]
        else:
            seen = (sig, *[w.sent for w in watches])
            done = made.get(seen)
            if done is not None:
                for watch, shown in zip(watches, done[1], strict=True):
                    watch.sent = shown
                return done[0]
        message = self._with_views(entry, context.run(conn.after, 0))
        made[seen] = (message, tuple([w.sent for w in watches]))
        return message

    @staticmethod
    def _with_views(entry: LogEntry, views: bytes) -> dict[str, Any]:
        """``entry``'s one-key message followed by ``views``: built once for all the tabs that
        are due the same renders (the bytes of a cached render are one object, hashed once)."""
        if not views:
            return entry.message
        message = entry.with_views.get(views)
        if message is None:
            message = {**_BODY, "body": entry.message["body"] + views}
            # bounded: per-viewer renders differ per user; past the bound each tab builds its own
            if len(entry.with_views) < MAX_SHARED_VIEW_MESSAGES:
                entry.with_views[views] = message
        return message

    def _trim(self, key: str, log: deque[LogEntry], added: int) -> None:
        """Keep ``key``'s log within ``max_queue`` changes, ``log_seconds`` and the byte bounds
        (its latest change always stays: the tabs that are one change behind are sent it)."""
        held = self.log_bytes.get(key, 0) + added
        self.logs_bytes += added
        oldest = self.now - self.log_seconds
        while len(log) > 1 and (
            len(log) > self.max_queue
            or log[0].at < oldest
            or held > self.max_log_bytes
            or self.logs_bytes > self.max_logs_bytes
        ):
            old = log.popleft()
            size = len(old.data) + len(old.message["body"])
            held -= size
            self.logs_bytes -= size
        self.log_bytes[key] = held

    def ensure_ticker(self) -> None:
        """One task for all streams: heartbeats for idle ones, and dropping stalled writers."""
        loop = asyncio.get_running_loop()
        task = self._ticker
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._ticker = loop.create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(max(0.005, min(self.heartbeat, self.write_timeout) / 4))
            now = self.now = time.monotonic()
            for conn in list(self.tabs.values()):
                if conn.writing_since:
                    if now - conn.writing_since > self.write_timeout and conn.task is not None:
                        conn.stalled = conn.closed = True
                        conn.task.cancel()
                elif now - conn.last_write >= self.heartbeat:
                    conn.heartbeat_due = True
                    conn.wake()

    def close_all(self) -> int:
        """End every open stream (a shutdown): each tab reconnects, and resyncs, against the
        next server. Returns how many were open."""
        conns = list(self.tabs.values())
        for conn in conns:
            conn.closed = True
            conn.wake()
        return len(conns)

    async def stop(self) -> None:
        """Stop the ticker task."""
        task, self._ticker = self._ticker, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def stats(self) -> dict[str, int]:
        """Counters for metrics: connections, published changes, deliveries, resync drops."""
        return {
            **self.metrics,
            "subscribed_keys": len(self.subscribers),
            "view_renders": self.views.render_count,
        }

    def _id_line(self, conn: Connection) -> bytes:
        """The SSE ``id:`` line after a change written to ``conn``: the versions it has seen."""
        return b"id: " + f"{self.epoch}:{conn.event_id()}".encode() + b"\n\n"

    def pending(
        self, conn: Connection, after_key: Callable[[int], bytes] | None = None
    ) -> list[bytes] | dict[str, Any] | None:
        """What ``conn`` has not sent yet, in version order per key: the shared message of a
        one-key stream one change behind (the common case), else the pieces to join. Keys it
        fell too far behind on go to ``conn.resync``. ``after_key(index)``: what follows the
        changes of key ``index`` (its live views)."""
        versions = conn.versions
        if len(versions) == 1:
            key = conn.keys[0]
            log = self.logs.get(key)
            if log:
                last = log[-1]
                if last.version == versions[0]:
                    return None  # up to date (the writer's check after each send)
                if (
                    last.version == versions[0] + 1
                    and 0 not in conn.resync
                    and conn in self.subscribers.get(key, ())
                ):
                    versions[0] = last.version
                    if after_key is None:
                        return last.message
                    return self._with_views(last, after_key(0))
        parts: list[bytes] = []
        for index, key in enumerate(conn.keys):
            log = self.logs.get(key)
            known = versions[index]
            if log and log[-1].version < known and index not in conn.resync:
                if conn not in self.subscribers.get(key, ()):
                    continue  # unsubscribed: this user may no longer see it, not even resynced
                # the key started over (evicted and made again, a backend that lost its data):
                # what this tab knows is from before; only a snapshot can tell it. Only a new
                # entry can mean that: a snapshot may have read a version from a shared backend
                # that the log has not caught up with yet (one look per entry, never a loop)
                checked = conn.checked if conn.checked is not None else {}
                if checked.get(index) is not log[-1]:
                    checked[index] = log[-1]
                    conn.checked = checked
                    conn.resync.add(index)
                continue
            if not log or log[-1].version <= known or index in conn.resync:
                continue
            if conn not in self.subscribers.get(key, ()):
                continue  # unsubscribed: the log is other streams' (this user may not see it)
            if log[0].version > known + 1:  # fell further behind than the log: resync
                conn.resync.add(index)
                self.metrics["dropped_to_resync"] += 1
                continue
            for entry in log:
                if entry.version > known:
                    versions[index] = entry.version
                    parts.append(entry.data)
                    parts.append(self._id_line(conn))
            if after_key is not None:
                parts.append(after_key(index))
        return parts or None


__all__ = ["Connection", "Hub", "UnfinishedWrite", "WriteAgain"]
