"""What happened lately, kept in memory for inspection (a devtools page, a debugging session):
the last N events and, per key, the last N changes. Off unless ``StateStore(record=N)``."""

from __future__ import annotations

import time
from collections import deque
from contextvars import ContextVar
from typing import Any, NamedTuple

from ._context import _current

#: scopes whose key carries a session id, which never leaves the server
_SESSION_KEYED = ("session:", "temporary:", "component:")
#: at most this many changes are attached to one event's record
MAX_EVENT_CHANGES = 16
#: the changes made by the running request: (its context, [(masked key, version, changed)])
_request_changes: ContextVar[tuple[Any, list[tuple[str, int, dict[str, Any]]]] | None] = ContextVar(
    "faststate_request_changes", default=None
)


def public_key(key: str) -> str:
    """``key`` with a session id replaced by ``…`` (it identifies a browser: keep it out of
    logs and inspection pages)."""
    if key.startswith(_SESSION_KEYED):
        scope, _sid, rest = [*key.split(":", 2), "", ""][:3]
        return f"{scope}:…:{rest}"
    return key


class EventRecord(NamedTuple):
    """One finished event request."""

    at: float  #: wall-clock time it finished
    state: str
    event: str
    key: str  #: the instance's key, session id masked ("" when none was resolved)
    user_id: str | None
    outcome: str
    status: int
    seconds: float
    #: the changes it made: (masked key, version, the public fields changed with their values)
    changes: tuple[tuple[str, int, dict[str, Any]], ...] = ()


class ChangeRecord(NamedTuple):
    """One committed change of a key."""

    at: float
    version: int
    user_id: str | None  #: who made it (None: anonymous or outside a request)
    changed: dict[str, Any]  #: the public fields it changed, with their new values


class Recorder:
    """Bounded rings: the last ``size`` events, and the last ``size`` changes of each of the
    last ``keys`` keys changed."""

    def __init__(self, size: int = 200, keys: int = 1000) -> None:
        self.size = size
        self.max_keys = keys
        self.events: deque[EventRecord] = deque(maxlen=size)
        #: events recorded since the store started (a rate is its difference over time)
        self.total = 0
        self._history: dict[str, deque[ChangeRecord]] = {}

    def event(self, record: EventRecord) -> None:
        """Keep ``record``, with the changes its request made attached."""
        made = _request_changes.get()
        if made is not None and made[0] is _current.get():
            record = record._replace(changes=tuple(made[1]))
            _request_changes.set(None)
        self.events.append(record)
        self.total += 1

    def change(self, key: str, version: int, changed: dict[str, Any]) -> None:
        """Called by the change pipeline after a change of ``key`` is committed."""
        ctx = _current.get()
        user = None
        if ctx is not None:
            made = _request_changes.get()
            if made is None or made[0] is not ctx:
                made = (ctx, [])
                _request_changes.set(made)
            if len(made[1]) < MAX_EVENT_CHANGES:
                made[1].append((public_key(key), version, changed))
            try:
                user = ctx.user  # a sync loader runs here; an async one must have run before
            except Exception:  # a failing loader must not fail the change it records
                user = ctx.cached_user()
        ring = self._history.pop(key, None)
        if ring is None:
            ring = deque(maxlen=self.size)
            if len(self._history) >= self.max_keys:
                del self._history[next(iter(self._history))]  # the least recently changed
        self._history[key] = ring
        ring.append(ChangeRecord(time.time(), version, user.id if user else None, changed))

    def changed_keys(self, n: int) -> list[str]:
        """The ``n`` keys changed last, the latest first."""
        out: list[str] = []
        for key in reversed(self._history):
            out.append(key)
            if len(out) == n:
                break
        return out

    def history(self, key: str) -> list[ChangeRecord]:
        """The recorded changes of ``key``, oldest first."""
        return list(self._history.get(key, ()))

    def recent(self, n: int | None = None) -> list[EventRecord]:
        """The last ``n`` (default: all kept) events, oldest first."""
        items = list(self.events)
        return items if n is None else items[-n:]


__all__ = ["ChangeRecord", "EventRecord", "Recorder", "public_key"]
