"""What happened lately, kept in memory for inspection (a devtools page, a debugging session):
the last N events and, per key, the last N changes. Off unless ``StateStore(record=N)``."""

from __future__ import annotations

import json
import time
from collections import deque
from contextvars import ContextVar
from typing import Any, NamedTuple

from ._context import _current

#: scopes whose key carries a session id, which never leaves the server
_SESSION_KEYED = ("session:", "temporary:", "component:")
#: at most this many changes are attached to one event's record
MAX_EVENT_CHANGES = 16
#: a change whose JSON is larger is kept with each large value cut to a preview of this many
#: characters (a client may send values of up to ``Limits.max_state_bytes``)
MAX_CHANGE_BYTES = 4096
PREVIEW_CHARS = 256
#: the changes kept in all keys' histories together, in bytes of JSON (oldest go first)
MAX_HISTORY_BYTES = 32 * 1024 * 1024
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


def compact(changed: dict[str, Any], size: int) -> tuple[dict[str, Any], int]:
    """``changed`` as recorded, and its size: whole up to ``MAX_CHANGE_BYTES`` of JSON, else
    each value whose JSON is longer than ``PREVIEW_CHARS`` replaced by that JSON's start and
    ``…`` (a string)."""
    if size <= MAX_CHANGE_BYTES:
        return changed, size
    out: dict[str, Any] = {}
    for name, value in changed.items():
        text = json.dumps(value, default=str, ensure_ascii=False)
        out[name] = value if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"
    return out, len(json.dumps(out, default=str, ensure_ascii=False))


class Recorder:
    """Bounded rings: the last ``size`` events, and the last ``size`` changes of each of the
    last ``keys`` keys changed, at most ``max_bytes`` of changes in all (large values are kept
    as previews, see :func:`compact`)."""

    def __init__(
        self, size: int = 200, keys: int = 1000, max_bytes: int = MAX_HISTORY_BYTES
    ) -> None:
        self.size = size
        self.max_keys = keys
        self.max_bytes = max_bytes
        self.events: deque[EventRecord] = deque(maxlen=size)
        #: events recorded since the store started (a rate is its difference over time)
        self.total = 0
        self._history: dict[str, deque[ChangeRecord]] = {}
        #: the JSON size of each kept change, beside ``_history``; and their sum
        self._sizes: dict[str, deque[int]] = {}
        self.bytes = 0

    def event(self, record: EventRecord) -> None:
        """Keep ``record``, with the changes its request made attached."""
        made = _request_changes.get()
        if made is not None and made[0] is _current.get():
            record = record._replace(changes=tuple(made[1]))
            _request_changes.set(None)
        self.events.append(record)
        self.total += 1

    def change(
        self, key: str, version: int, changed: dict[str, Any], size: int | None = None
    ) -> None:
        """Called by the change pipeline after a change of ``key`` is committed; ``size``: the
        length of its JSON, if known."""
        if size is None:
            size = len(json.dumps(changed, default=str, ensure_ascii=False))
        changed, size = compact(changed, size)
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
        sizes = self._sizes.pop(key, None)
        if ring is None or sizes is None:
            ring, sizes = deque(), deque()
            if len(self._history) >= self.max_keys:
                self._drop_key(next(iter(self._history)))  # the least recently changed
        self._history[key], self._sizes[key] = ring, sizes
        ring.append(ChangeRecord(time.time(), version, user.id if user else None, changed))
        sizes.append(size)
        self.bytes += size
        if len(ring) > self.size:
            ring.popleft()
            self.bytes -= sizes.popleft()
        while self.bytes > self.max_bytes and len(self._history) > 1:
            oldest = next(iter(self._history))  # the least recently changed key's oldest
            self._history[oldest].popleft()
            self.bytes -= self._sizes[oldest].popleft()
            if not self._history[oldest]:
                self._drop_key(oldest)

    def _drop_key(self, key: str) -> None:
        del self._history[key]
        self.bytes -= sum(self._sizes.pop(key))

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


__all__ = ["ChangeRecord", "EventRecord", "Recorder", "compact", "public_key"]
