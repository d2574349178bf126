"""Events on one instance are serialized, also across awaits inside the event."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event
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
