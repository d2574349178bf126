"""The live instances of one store, and how recently each was used.

Instances are kept by key. Those whose scope has a time to live are also kept in access order,
one ordered dict per ttl, so finding the expired ones touches only them and never walks every
instance. Every instance is also kept in access order per scope (the part of its key before the
first ``:``), so the least recently used ones can be found when a cap is reached, and counted
per owner (the key's first two parts: ``component:<sid>``). A threading lock guards creation:
sync handlers resolve from worker threads.
"""

from __future__ import annotations

import heapq
import itertools
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
        #: scope -> key -> last use, least recent first (every instance)
        self._lru: dict[str, OrderedDict[str, float]] = {}
        #: owner (``component:<sid>``) -> how many instances it holds
        self._owners: dict[str, int] = {}
        #: key -> the size of its JSON at its last change, and their sum
        self._sizes: dict[str, int] = {}
        self.bytes = 0
        #: held while an instance is created (sync resolves run in worker threads)
        self.create_lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The instance under ``key`` (no bookkeeping)."""
        return self._by_key.get(key)

    def touch(self, key: str, ttl: float | None) -> None:
        """``key`` was just used: it moves to the young end of its ttl's order."""
        now = self.clock()
        if ttl is not None:
            order = self._order[ttl]
            order[key] = now
            order.move_to_end(key)
        lru = self._lru[key.partition(":")[0]]  # scope_of(key), on every event
        lru[key] = now
        lru.move_to_end(key)

    def use(self, key: str, cls: type[Any]) -> Any:
        """The instance of ``cls`` under ``key``, just used (as :meth:`touch` with its ttl), or
        None. One call for what every event does."""
        inst = self._by_key.get(key)
        if inst is None or type(inst) is not cls:
            return None
        self.touch(key, inst._fs.ttl)  # its Meta's ttl (_config.meta_of)
        return inst

    def add(self, key: str, inst: Any, ttl: float | None) -> None:
        """Keep ``inst`` under ``key``, used now."""
        now = self.clock()
        if key not in self._by_key:
            owner = owner_of(key)
            self._owners[owner] = self._owners.get(owner, 0) + 1
        self._by_key[key] = inst
        if ttl is not None:
            self._order.setdefault(ttl, OrderedDict())[key] = now
        self._lru.setdefault(scope_of(key), OrderedDict())[key] = now

    def discard(self, key: str, ttl: float | None) -> Any:
        """Forget ``key``; returns its instance (None if there was none)."""
        inst = self._forget(key)
        if inst is not None and ttl is not None:
            self._order.get(ttl, OrderedDict()).pop(key, None)
        return inst

    def retime(self, key: str, old: float | None, new: float | None) -> None:
        """``key`` moves from one ttl to another (a fresh session was confirmed)."""
        if old == new or key not in self._by_key:
            return
        if old is not None:
            self._order.get(old, OrderedDict()).pop(key, None)
        if new is not None:
            self._order.setdefault(new, OrderedDict())[key] = self.clock()

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
        return self._forget(key)

    def sized(self, key: str, size: int) -> None:
        """The state under ``key`` now serializes to ``size`` bytes."""
        if key in self._by_key:
            self.bytes += size - self._sizes.get(key, 0)
            self._sizes[key] = size

    def size(self, key: str) -> int:
        """The size of ``key``'s state at its last change (0 before any)."""
        return self._sizes.get(key, 0)

    def _forget(self, key: str) -> Any:
        inst = self._by_key.pop(key, None)
        if inst is None:
            return None
        self.bytes -= self._sizes.pop(key, 0)
        lru = self._lru.get(scope_of(key))
        if lru is not None:
            lru.pop(key, None)
        owner = owner_of(key)
        left = self._owners.get(owner, 1) - 1
        if left > 0:
            self._owners[owner] = left
        else:
            self._owners.pop(owner, None)
        return inst

    def count(self, scope: str | None = None) -> int:
        """How many instances in all, or in one scope."""
        if scope is None:
            return len(self._by_key)
        lru = self._lru.get(scope)
        return 0 if lru is None else len(lru)

    def owned(self, owner: str) -> int:
        """How many instances ``owner`` (``component:<sid>``) holds."""
        return self._owners.get(owner, 0)

    def least_recent(self, scope: str | None, n: int) -> list[str]:
        """Up to ``n`` keys, least recently used first: of one scope, or of all."""
        if scope is not None:
            return list(itertools.islice(self._lru.get(scope, OrderedDict()), n))
        heads = [
            [(t, k) for k, t in itertools.islice(lru.items(), n)] for lru in self._lru.values()
        ]
        return [k for _t, k in itertools.islice(heapq.merge(*heads), n)]

    def items(self) -> list[tuple[str, Any]]:
        """A snapshot of (key, instance) pairs."""
        return list(self._by_key.items())

    def keys_where(self, prefix: str | None, cls: type | None) -> list[str]:
        """Keys that start with ``prefix`` (a scope's ``"<scope>:"``) and hold a ``cls``."""
        return [
            key
            for key, inst in list(self._by_key.items())
            if (prefix is None or key.startswith(prefix)) and (cls is None or type(inst) is cls)
        ]

    def by_scope(self) -> dict[str, int]:
        """How many instances each scope holds (the first part of their keys)."""
        counts: dict[str, int] = {}
        for key in list(self._by_key):
            scope = key.split(":", 1)[0]
            counts[scope] = counts.get(scope, 0) + 1
        return counts

    def clear(self) -> None:
        self._by_key.clear()
        self._order.clear()
        self._lru.clear()
        self._owners.clear()
        self._sizes.clear()
        self.bytes = 0

    def compact(self) -> None:
        """Dicts never shrink their tables: after a large eviction, copy them so the memory of
        the dropped entries is returned."""
        with self.create_lock:
            self._by_key = dict(self._by_key)
            self._order = {ttl: OrderedDict(order) for ttl, order in self._order.items()}
            self._lru = {scope: OrderedDict(lru) for scope, lru in self._lru.items() if lru}
            self._owners = dict(self._owners)
            self._sizes = dict(self._sizes)

    def __len__(self) -> int:
        return len(self._by_key)


def scope_of(key: str) -> str:
    """The scope part of a key (``session`` of ``session:<sid>:Cart``)."""
    return key.partition(":")[0]


def owner_of(key: str) -> str:
    """The first two parts of a key (``component:<sid>`` of ``component:<sid>:W:c1``)."""
    first = key.find(":")
    second = key.find(":", first + 1)
    return key if second < 0 else key[:second]


__all__ = ["InstanceTable", "owner_of", "scope_of"]
