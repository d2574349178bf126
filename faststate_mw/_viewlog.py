"""What live views need from each change: the committed fields of the latest version of every
key some tab shows a view of, when each field last changed, and the renders made of them.

A change of a watched key records a copy of its fields (taken when the change is final, so a
view never sees a change still running or one rolled back). Nothing is rendered here: a tab's
writer renders when it catches up, from the latest record, and the render is cached per (key,
view, viewer) for the version it shows, so one change costs one render however many tabs show
it, and a tab that fell behind gets the latest render only (a burst is coalesced).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: renders cached per key: each view once, and a per-viewer view once per user watching
MAX_RENDERS_PER_KEY = 256


class Committed:
    """The latest committed fields of one key."""

    __slots__ = ("changed_at", "fields", "version")

    def __init__(self, version: int, fields: dict[str, Any]) -> None:
        self.version = version
        self.fields = fields
        #: field -> the version that last changed it (fields unchanged since watching: absent)
        self.changed_at: dict[str, int] = {}

    def shown_version(self, depends_on: frozenset[str] | None) -> int:
        """The version a view reading ``depends_on`` (None: every field) shows."""
        if depends_on is None:
            return self.version
        return max((self.changed_at.get(f, 0) for f in depends_on), default=0)


class ViewLog:
    """Per key: how many tabs show views of it, its latest committed fields, cached renders."""

    def __init__(self) -> None:
        self.watchers: dict[str, int] = {}
        self.committed: dict[str, Committed] = {}
        #: key -> (view name, viewer id) -> (shown version, the SSE bytes of the render)
        self.renders: dict[str, dict[tuple[str, str | None], tuple[int, bytes]]] = {}
        #: how many times a view was rendered for a live stream (the page's own render aside)
        self.render_count = 0
        #: renders cached per key (views times viewers); older ones are rendered again if needed
        self.max_renders = MAX_RENDERS_PER_KEY

    def watched(self, key: str) -> bool:
        return key in self.watchers

    def watch(self, key: str) -> None:
        self.watchers[key] = self.watchers.get(key, 0) + 1

    def unwatch(self, key: str) -> None:
        left = self.watchers.get(key, 0) - 1
        if left > 0:
            self.watchers[key] = left
            return
        self.watchers.pop(key, None)
        self.committed.pop(key, None)
        self.renders.pop(key, None)

    def record(
        self, key: str, version: int, fields: dict[str, Any], changed: Iterable[str] | None
    ) -> None:
        """A change of ``key`` is final at ``version`` with ``fields`` (a copy nobody changes);
        ``changed`` None: compare with the previous record (a change from another worker)."""
        previous = self.committed.get(key)
        entry = Committed(version, fields)
        if previous is not None:
            entry.changed_at = previous.changed_at
        if changed is None:
            old = previous.fields if previous is not None else {}
            changed = [k for k, v in fields.items() if previous is None or old.get(k) != v]
        for name in changed:
            entry.changed_at[name] = version
        self.committed[key] = entry

    def cached(self, key: str, view: str, viewer: str | None, version: int) -> bytes | None:
        renders = self.renders.get(key)
        hit = renders.get((view, viewer)) if renders is not None else None
        return hit[1] if hit is not None and hit[0] == version else None

    def store(self, key: str, view: str, viewer: str | None, version: int, data: bytes) -> None:
        """Cache a render; past ``max_renders`` for ``key`` the least recently stored goes (a
        per-viewer view keeps one per user who ever watched while the key stayed watched)."""
        cached = self.renders.setdefault(key, {})
        cached.pop((view, viewer), None)  # re-inserted last: the most recent
        cached[(view, viewer)] = (version, data)
        while len(cached) > self.max_renders:
            del cached[next(iter(cached))]


__all__ = ["MAX_RENDERS_PER_KEY", "Committed", "ViewLog"]
