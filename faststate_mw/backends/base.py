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

    async def start(self, listener: Listener, origin: str) -> None:
        """Connect, and deliver changes published by other workers to ``listener``."""

    async def close(self) -> None:
        """Disconnect and stop listening."""

    def load_sync(self, key: str) -> Stored | None:
        """The stored state under ``key`` (for sync code such as ``State.current()``)."""
        return None

    async def load(self, key: str) -> Stored | None:
        """The stored state under ``key``."""
        return self.load_sync(key)

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
        return {}


class MemoryBackend(Backend):
    """The default: states live in this process only; nothing survives a restart."""


__all__ = ["Backend", "Listener", "MemoryBackend", "Stored"]
