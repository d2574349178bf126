"""A small app for persistence and scale-out tests, configured by the environment:
FS_BACKEND (backend URL), FS_SECRET."""

from __future__ import annotations

import asyncio
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, event, state_registry


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
    __faststate__ = StateConfig(auto_persist=True)
    text: str = ""


async def page(request: Request) -> HTMLResponse:
    tally, memo = Tally.current(), Memo.current()
    return HTMLResponse(f"<html><body>{tally.to_html()}{memo.to_html()}</body></html>")


async def values(request: Request) -> JSONResponse:
    return JSONResponse({"count": Tally.current().count, "text": Memo.current().text})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(state_registry.backend.stats())


app = Starlette(routes=[Route("/", page), Route("/values", values), Route("/stats", stats)])
app.add_middleware(
    FastStateMiddleware,
    secret_key=os.environ.get("FS_SECRET", "shared-secret"),
    backend=os.environ["FS_BACKEND"],
    heartbeat=1.0,
)
