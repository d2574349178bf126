"""A small app for persistence and scale-out tests, configured by the environment:
FS_BACKEND (backend URL), FS_SECRET.

Its handlers are async, so they read states with ``await X.dependency()``: with a shared
backend (Redis) a state may have to be fetched, which sync code in the event loop cannot wait
for."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    Limits,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
)


class Tally(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, auto_persist=True)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1

    @event
    async def slow_increment(self) -> None:
        value = self.count
        await asyncio.sleep(0.001)
        self.count = value + 1


class Memo(State):
    __faststate__ = StateConfig(auto_persist=True, writable=("text",))
    text: str = ""


#: persistence and scale-out tests send bursts of events from one address: no event rate limit
#: here (tests/security/test_limits.py tests the limiter)
UNRATED = Limits(
    event_rate=1e9, event_burst=10**9, address_event_rate=1e9, address_event_burst=10**9
)
store = StateStore(os.environ["FS_BACKEND"], heartbeat=1.0, limits=UNRATED)


async def page(request: Request) -> HTMLResponse:
    tally, memo = await Tally.dependency(), await Memo.dependency()
    return HTMLResponse(f"<html><body>{tally.to_html()}{memo.to_html()}</body></html>")


async def values(request: Request) -> JSONResponse:
    tally, memo = await Tally.dependency(), await Memo.dependency()
    return JSONResponse({"count": tally.count, "text": memo.text})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(store.stats()["backend"])


app = Starlette(routes=[Route("/", page), Route("/values", values), Route("/stats", stats)])
app.add_middleware(
    FastStateMiddleware, secret_key=os.environ.get("FS_SECRET", "shared-secret"), store=store
)
