"""The backend interface: where states are stored, and how changes reach other workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple


class Stored(NamedTuple):
    """A state as stored: its version and its JSON."""

    version: int
    data: str


#: called by a backend with (key, version, state JSON, SSE data) for a change made elsewhere
Listener = Callable[[str, int, str, bytes], Any]


class Backend:
    """Base of storage + pub/sub backends (``memory://``, ``sqlite:///path``, ``redis://``).

    ``durable``: states survive a restart. ``shared``: several workers (and machines) use the
    same states, so every change is written with a version check (:meth:`commit`) and published
    to the other workers, which call the listener given to :meth:`start`.
    """

    url = "memory://"
    durable = False
    shared = False
    #: set by a store that keeps metrics: called with the seconds a change took to arrive
    #: from the worker that made it (shared backends)
    delivery_observer: Callable[[float], Any] | None = None

    async def start(self, listener: Listener, origin: str) -> None:
        """Connect (raising BackendUnavailable when the server cannot be reached), and deliver
        changes published by other workers to ``listener``. ``origin`` names this process:
        its own changes come back on the channel and are skipped."""

    async def close(self) -> None:
        """Disconnect and stop listening."""

    def on_resubscribed(self, callback: Callable[[list[str]], Any]) -> None:
        """``callback(keys)`` runs after (re)subscribing to keys whose changes may have been
        missed (a reconnect): the store resyncs the tabs that watch them."""

    def on_control(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """``callback(message)`` runs for each message another worker sent with
        :meth:`publish_control` (shared backends)."""

    async def publish_control(self, message: dict[str, Any]) -> None:
        """Shared backends: send ``message`` (JSON) to every other worker (a session ended, a
        user's rights changed: their live streams re-check)."""

    async def load(self, key: str) -> Stored | None:
        """The stored state under ``key``."""
        return None

    async def save(self, key: str, version: int, data: str, ttl: float | None) -> None:
        """Store unconditionally (durable backends: ``auto_persist`` and eviction)."""

    async def commit(
        self, key: str, expected: int, version: int, data: str, ttl: float | None, sse: bytes
    ) -> Stored | None:
        """Shared backends: store ``data`` as ``version`` only if the stored version is still
        ``expected``, and publish the change, atomically. None on success, else what is stored
        now (the caller re-runs its change on it)."""
        return None

    async def delete(self, key: str) -> None:
        """Forget ``key``."""

    def subscribe(self, key: str) -> None:
        """Start receiving other workers' changes of ``key`` (first local subscriber)."""

    def unsubscribe(self, key: str) -> None:
        """Stop receiving them (last local subscriber gone)."""

    def stats(self) -> dict[str, Any]:
        """Counters for metrics (round trips, health)."""
        return {}


class MemoryBackend(Backend):
    """The default: states live in this process only; nothing survives a restart."""


__all__ = ["Backend", "Listener", "MemoryBackend", "Stored"]
