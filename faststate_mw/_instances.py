"""The live instances of one store, and how recently each was used.

Instances are kept by key. Those whose scope has a time to live are also kept in access order,
one ordered dict per ttl, so finding the expired ones touches only them and never walks every
instance. A threading lock guards creation: sync handlers resolve from worker threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any


class InstanceTable:
    """Key -> instance, plus last-use times per ttl (oldest first)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._by_key: dict[str, Any] = {}
        self._order: dict[float, OrderedDict[str, float]] = {}
        #: held while an instance is created (sync resolves run in worker threads)
        self.create_lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The instance under ``key`` (no bookkeeping)."""
        return self._by_key.get(key)

    def touch(self, key: str, ttl: float | None) -> None:
        """``key`` was just used: it moves to the young end of its ttl's order."""
        if ttl is not None:
            order = self._order[ttl]
            order[key] = self.clock()
            order.move_to_end(key)

    def add(self, key: str, inst: Any, ttl: float | None) -> None:
        """Keep ``inst`` under ``key``, used now."""
        self._by_key[key] = inst
        if ttl is not None:
            self._order.setdefault(ttl, OrderedDict())[key] = self.clock()

    def discard(self, key: str, ttl: float | None) -> Any:
        """Forget ``key``; returns its instance (None if there was none)."""
        inst = self._by_key.pop(key, None)
        if inst is not None and ttl is not None:
            self._order.get(ttl, OrderedDict()).pop(key, None)
        return inst

    def expired(self, now: float) -> Iterator[tuple[str, float]]:
        """Keys idle longer than their ttl, oldest first, each taken out of the order as it
        is yielded with its ttl (put it back with :meth:`keep` to keep it)."""
        for ttl, order in list(self._order.items()):
            while order:
                key, last = next(iter(order.items()))
                if now - last <= ttl:
                    break
                order.popitem(last=False)
                yield key, ttl

    def keep(self, key: str, ttl: float, now: float) -> None:
        """Keep an expired key for another ttl (it was busy, or saving it failed)."""
        self._order.setdefault(ttl, OrderedDict())[key] = now

    def pop(self, key: str) -> Any:
        """Drop ``key`` after :meth:`expired` took it out of its order."""
        return self._by_key.pop(key, None)

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of (key, instance) pairs."""
        return list(self._by_key.items())

    def clear(self) -> None:
        self._by_key.clear()
        self._order.clear()

    def compact(self) -> None:
        """Dicts never shrink their tables: after a large eviction, copy them so the memory of
        the dropped entries is returned."""
        with self.create_lock:
            self._by_key = dict(self._by_key)
            self._order = {ttl: OrderedDict(order) for ttl, order in self._order.items()}

    def __len__(self) -> int:
        return len(self._by_key)


__all__ = ["InstanceTable"]
