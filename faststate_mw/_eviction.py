"""Dropping idle instances: the ttl sweep, and saving an instance before it goes.

An instance is saved before it is dropped (its ``on_evict`` or ``save`` hook, and a durable
backend that does not already hold every change); one a change is running on, or a live tab
shows, is kept for another ttl. The same save runs for every instance at shutdown.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ._config import info_of, meta_of
from ._hub import Hub
from ._instances import InstanceTable
from .backends import Backend

log = logging.getLogger("faststate_mw")


class Eviction:
    """The sweep of one store's instances (``table``) over its ``backend``."""

    def __init__(
        self, table: InstanceTable, backend: Backend, hub: Hub, clock: Callable[[], float]
    ) -> None:
        self.table = table
        self.backend = backend
        self.hub = hub
        self.clock = clock

    async def sweep(self, batch: int = 1000) -> list[str]:
        """Drop every instance idle longer than its ttl, after saving it. Yields to the event
        loop every ``batch`` evictions so requests never stall."""
        now = self.clock()
        table = self.table
        evicted: list[str] = []
        for key, ttl in table.expired(now):
            inst = table.get(key)
            if inst is None:
                continue
            if meta_of(inst).locked() or self.hub.watched(key):
                # a change is running on it, or a tab shows it: keep it for another ttl
                table.keep(key, ttl, now)
                continue
            try:
                await self.save(inst)
            except Exception:
                log.exception("saving %s before eviction failed; instance kept", key)
                table.keep(key, ttl, now)
                continue
            table.pop(key)
            evicted.append(key)
            if len(evicted) % batch == 0:
                await asyncio.sleep(0)
        if len(evicted) > 1000 and len(evicted) > len(table):
            table.compact()
        return evicted

    async def save_all(self) -> int:
        """Save every live instance as eviction would; returns how many were saved."""
        saved = 0
        for key, inst in self.table.items():
            try:
                if await self.save(inst):
                    saved += 1
            except Exception:
                log.exception("saving %s at shutdown failed", key)
        return saved

    async def evict(self, key: str) -> bool:
        """Save and drop the idle instance under ``key``; False when it is busy or saving it
        failed (it is then kept)."""
        inst = self.table.get(key)
        if inst is None:
            return True
        meta = meta_of(inst)
        if meta.locked():
            return False
        try:
            await self.save(inst)
        except Exception:
            log.exception("saving %s before eviction failed; instance kept", key)
            return False
        self.table.discard(key, meta.ttl)
        return True

    async def save(self, inst: Any) -> bool:
        """Run the instance's ``on_evict`` (or ``save``) hook and write it to a durable backend
        that does not already hold every change; True when anything was saved."""
        config = info_of(type(inst)).config
        meta = meta_of(inst)
        hook = config.on_evict or config.save
        if hook is not None:
            result = hook(inst)
            if inspect.isawaitable(result):
                await result
        backend = self.backend
        if backend.durable and not backend.shared and not config.auto_persist:
            # its own ttl: a session whose client never came back with the cookie has the
            # short fresh-session ttl (its scope's would keep a row per anonymous visit)
            await backend.save(meta.key or "", meta.version, inst.model_dump_json(), meta.ttl)
            return True
        return hook is not None

    async def run_forever(self, interval: float) -> None:
        """Sweep every ``interval`` seconds; a failing sweep is logged, never fatal."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # never let the sweeper die silently
                log.exception("state sweep failed")


__all__ = ["Eviction"]
