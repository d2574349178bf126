"""The change pipeline (_changes.py): events on one instance are serialized, also across awaits
inside the event; changes from outside events (``update()``, ``mutate()``) are broadcast like
events' and rolled back on error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event
from tests.apps.live import SENTINEL, LiveRecord, live_browser, mark
from tests.conftest import DS


class Shared(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1

    @event
    async def slow_increment(self) -> None:
        value = self.count
        await asyncio.sleep(0.001)  # another request would interleave here without the lock
        self.count = value + 1


@pytest.mark.parametrize("event_name", ["increment", "slow_increment"])
async def test_200_concurrent_increments_end_at_exactly_200(
    event_name: str, store: StateStore
) -> None:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="concurrency", store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def one(i: int) -> int:
            r = await client.post(f"/_faststate/Shared/{event_name}", headers=DS, content=b"{}")
            return r.status_code

        statuses = await asyncio.gather(*(one(i) for i in range(200)))
    assert statuses == [200] * 200
    inst = store.get("global:Shared")
    assert isinstance(inst, Shared)
    assert inst.count == 200


@pytest.fixture
async def app_and_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    async with live_browser(store) as pair:
        yield pair


async def test_changes_outside_events_broadcast(app_and_browser: Any, store: StateStore) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser(), "?record_id=42")
    other = await tab(browser(), "?record_id=42")
    rec = await LiveRecord.resolve(42, store=store)
    assert await rec.update(n=5) == ["n"]
    assert await rec.update(n=5) == []  # no change, nothing sent
    await mark(store)
    for x in (t, other):
        assert x.stream is not None
        assert await x.stream.before(SENTINEL) == [{"liveRecord": {"n": 5}}]
    async with rec.mutate() as r:
        r.n += 10
    assert t.stream is not None and (await t.stream.next())["signals"] == {"liveRecord": {"n": 15}}
    with pytest.raises(ZeroDivisionError):
        async with rec.mutate() as r:
            r.n = 99
            _ = 1 / 0
    assert rec.n == 15  # rolled back, nothing sent
    await mark(store)
    assert await t.stream.before(SENTINEL) == []
