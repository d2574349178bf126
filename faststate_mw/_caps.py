"""Caps on the instances one store holds: per scope, in all, components per session, and the
sessions of requests that came without a cookie ("fresh" sessions).

A request without a session cookie gets a new session id; the states it creates live only
``Limits.fresh_session_ttl`` until the client comes back with the cookie (then their scope's
normal ttl), and at most ``Limits.max_fresh_sessions`` such sessions are held: the oldest one's
states go first. Before a new instance is added, the least recently used idle instances of its
scope (and of the store) are saved, as the ttl sweep saves them, and dropped to stay under the
caps; when none can be dropped (all busy) the request gets a 429.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from ._config import info_of, meta_of
from ._context import RequestContext
from ._exceptions import TooManyRequests
from ._instances import InstanceTable, owner_of, scope_of
from ._limits import Limits
from ._scopes import StateScope

#: scopes whose keys are owned by a session id (``<scope>:<sid>:...``)
SESSION_KEYED = frozenset({StateScope.SESSION, StateScope.TEMPORARY, StateScope.COMPONENT})


class InstanceCaps:
    """Keeps a store's table under its :class:`Limits`. ``evict(key)`` saves and drops one
    idle instance (False when it is busy or saving failed)."""

    def __init__(
        self, table: InstanceTable, limits: Limits, evict: Callable[[str], Awaitable[bool]]
    ) -> None:
        self.table = table
        self.limits = limits
        self.evict = evict
        #: session ids minted for cookie-less requests -> the keys made for them, oldest first
        self.fresh: OrderedDict[str, list[str]] = OrderedDict()
        #: the keys of fresh sessions -> the size of their states
        self._fresh_keys: dict[str, int] = {}
        self._fresh_bytes = 0

    @staticmethod
    def fresh_sid(key: str, ctx: RequestContext | None) -> str | None:
        """The session id of ``key`` when this request minted it (it came without a cookie)."""
        if ctx is None or ctx.new_session_id is None:
            return None
        scope, _, rest = key.partition(":")
        if scope not in SESSION_KEYED:
            return None
        sid = rest.partition(":")[0]
        return sid if sid == ctx.new_session_id else None

    async def make_room(self, key: str, ctx: RequestContext | None) -> None:
        """Before a new instance is added under ``key``: refuse it (429) or drop others."""
        limits, table = self.limits, self.table
        scope = scope_of(key)
        if (
            scope == StateScope.COMPONENT
            and table.owned(owner_of(key)) >= limits.max_components_per_session
        ):
            raise TooManyRequests(
                f"this session holds {limits.max_components_per_session} components, the most "
                "it may; reuse a component id"
            )
        sid = self.fresh_sid(key, ctx)
        if sid is not None and sid not in self.fresh:
            while self.fresh and (
                len(self.fresh) >= limits.max_fresh_sessions
                or self._fresh_bytes > limits.max_fresh_bytes
            ):
                _old, keys = self.fresh.popitem(last=False)
                self._unfresh(keys)
                for old_key in keys:
                    await self.evict(old_key)
        over = table.count(scope) + 1 - limits.max_instances_per_scope
        if over > 0:
            await self._drop_least_recent(scope, over)
        over = table.count() + 1 - limits.max_instances
        if over > 0:
            await self._drop_least_recent(None, over)
        if table.bytes > limits.max_total_bytes:
            await self._drop_bytes(table.bytes - limits.max_total_bytes)

    def fresh_bytes(self) -> int:
        """The bytes the states of unconfirmed sessions take."""
        return self._fresh_bytes

    def sized(self, key: str, new: int) -> None:
        """A state changed size (after :meth:`InstanceTable.sized`)."""
        if key in self._fresh_keys:
            self._fresh_bytes += new - self._fresh_keys[key]
            self._fresh_keys[key] = new

    async def _drop_bytes(self, excess: int) -> None:
        freed = 0
        while freed < excess:
            progress = False
            for key in self.table.least_recent(None, 64):
                size = self.table.size(key)
                if await self.evict(key):
                    freed += size
                    progress = True
                    if freed >= excess:
                        return
            if not progress:
                raise TooManyRequests(
                    "the server holds as much state as it may and all of it is busy; try again",
                    retry_after=1,
                )

    async def _drop_least_recent(self, scope: str | None, n: int) -> None:
        dropped = 0
        for key in self.table.least_recent(scope, n + 32):
            if dropped >= n:
                return
            if await self.evict(key):
                dropped += 1
        if dropped < n:
            raise TooManyRequests(
                "the server holds as many states as it may and all are busy; try again",
                retry_after=1,
            )

    def ttl_for(self, key: str, ttl: float | None, ctx: RequestContext | None) -> float | None:
        """The ttl a new instance under ``key`` starts with (short for a fresh session)."""
        sid = self.fresh_sid(key, ctx)
        if sid is None:
            return ttl
        self.fresh.setdefault(sid, []).append(key)
        self._fresh_keys[key] = 0
        short = self.limits.fresh_session_ttl
        return short if ttl is None else min(ttl, short)

    def confirm(self, sid: str | None) -> None:
        """The client came back with the cookie of ``sid``: its states get their normal ttl."""
        keys = self.fresh.pop(sid, None) if sid is not None and self.fresh else None
        if not keys:
            return
        self._unfresh(keys)
        for key in keys:
            inst: Any = self.table.get(key)
            if inst is None:
                continue
            meta = meta_of(inst)
            normal = info_of(type(inst)).ttl
            self.table.retime(key, meta.ttl, normal)
            meta.ttl = normal

    def _unfresh(self, keys: list[str]) -> None:
        for key in keys:
            self._fresh_bytes -= self._fresh_keys.pop(key, 0)

    def clear(self) -> None:
        self.fresh.clear()
        self._fresh_keys.clear()
        self._fresh_bytes = 0


__all__ = ["SESSION_KEYED", "InstanceCaps"]
