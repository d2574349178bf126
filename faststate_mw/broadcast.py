"""Fan-out of state changes to the live streams that subscribed to them.

Every change of a state bumps its per-key version and is serialized once into the SSE ``data``
lines of a ``datastar-patch-signals`` event; the same bytes go to every connection subscribed to
the key, each behind its own ``id:`` line (the versions that connection has seen, so a
reconnecting tab can tell what it missed). Each connection has a bounded queue: a consumer that
falls behind is reduced to a single resync snapshot, so it never blocks the broadcast or other
tabs.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import UserContext

_conn_ids = itertools.count(1)


class Connection:
    """One open stream (one browser tab)."""

    __slots__ = (
        "closed",
        "id",
        "keys",
        "names",
        "queue",
        "queued",
        "resync",
        "session_id",
        "tab",
        "user",
        "versions",
        "wakeup",
    )

    def __init__(
        self,
        session_id: str | None,
        user: UserContext | None,
        tab: str,
        keys: list[str],
        versions: list[int],
        names: list[str] | None = None,
    ) -> None:
        self.id = next(_conn_ids)
        #: the state name of each key
        self.names = names or [""] * len(keys)
        self.session_id = session_id
        self.user = user
        self.tab = tab
        self.keys = keys
        #: the version of each key this tab has (what its page showed, then what we sent)
        self.versions = versions
        #: the newest version of each key accepted into the queue (or sent)
        self.queued = list(versions)
        self.queue: deque[tuple[int, int, bytes]] = deque()
        #: keys (by index) that need a full snapshot instead of patches
        self.resync: set[int] = set()
        self.wakeup = asyncio.Event()
        self.closed = False

    def event_id(self) -> str:
        return ".".join(map(str, self.versions))


class Hub:
    """In-process subscriptions: key -> connections, plus per-session and per-tab indexes."""

    def __init__(self, max_queue: int = 64) -> None:
        self.max_queue = max_queue
        #: a new value every process start: clients of an older process always resync
        self.epoch = secrets.token_hex(4)
        self.subscribers: dict[str, dict[Connection, int]] = {}
        self.tabs: dict[str, Connection] = {}
        self.sessions: dict[str, set[Connection]] = {}
        self.metrics = {"published": 0, "delivered": 0, "dropped_to_resync": 0, "connections": 0}
        #: called with (key, version, data) for every local change (a backend relays it)
        self.relay: Callable[[str, int, bytes], Any] | None = None
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
                conn.wakeup.set()

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
        self.metrics["connections"] = len(self.tabs)

    def remove(self, conn: Connection) -> None:
        conn.closed = True
        conn.wakeup.set()
        for key in conn.keys:
            self.unsubscribe(conn, key)
        if self.tabs.get(conn.tab) is conn:
            del self.tabs[conn.tab]
        if conn.session_id is not None:
            conns = self.sessions.get(conn.session_id)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self.sessions[conn.session_id]
        conn.queue.clear()
        self.metrics["connections"] = len(self.tabs)

    def unsubscribe(self, conn: Connection, key: str) -> None:
        """Stop delivering ``key`` to ``conn`` (its user may no longer see it)."""
        subs = self.subscribers.get(key)
        if subs is not None and subs.pop(conn, None) is not None and not subs:
            del self.subscribers[key]
            if self._on_last is not None:
                self._on_last(key)

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
    def publish(self, key: str, version: int, data: bytes, relay: bool = True) -> int:
        """Queue a change for every subscriber of ``key``; returns how many were reached.

        ``data`` is the serialized ``event:`` and ``data:`` lines, without the blank line that
        ends an SSE event (each connection adds its own ``id:``)."""
        self.metrics["published"] += 1
        if relay and self.relay is not None:
            self.relay(key, version, data)
        subs = self.subscribers.get(key)
        if not subs:
            return 0
        limit = self.max_queue
        for conn, index in list(subs.items()):
            known = conn.queued[index]
            if version <= known:
                continue  # already has it (e.g. a snapshot was newer)
            if version > known + 1 or len(conn.queue) >= limit:
                # a gap, or a consumer too slow to keep up: one snapshot later instead
                if index not in conn.resync:
                    self.metrics["dropped_to_resync"] += 1
                conn.resync.add(index)
                conn.queued[index] = version
                conn.queue = deque(item for item in conn.queue if item[0] != index)
            else:
                conn.queue.append((index, version, data))
                conn.queued[index] = version
            conn.wakeup.set()
        self.metrics["delivered"] += len(subs)
        return len(subs)

    def stats(self) -> dict[str, int]:
        """Counters for metrics: connections, published changes, deliveries, resync drops."""
        return {**self.metrics, "subscribed_keys": len(self.subscribers)}


__all__ = ["Connection", "Hub"]
