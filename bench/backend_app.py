"""The app the backend benchmark serves: one counter per session, stored in FS_BACKEND."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from bench.unrated import UNRATED
from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, event


class Counter(State):
    __faststate__ = StateConfig(auto_persist=True)
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


class Shared(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, auto_persist=True)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


async def home(request: Request) -> Response:
    # async handler: a shared backend (Redis) is read with await, so not Counter.current()
    return PlainTextResponse(str((await Counter.dependency()).count))


async def live(request: Request) -> Response:
    shared = await Shared.dependency()
    return HTMLResponse(f"<html><body>{shared.to_html()}</body></html>")


app = Starlette(routes=[Route("/", home), Route("/live", live)])
app.add_middleware(
    FastStateMiddleware,
    secret_key="bench-backends",
    backend=os.environ.get("FS_BACKEND", "memory://"),
    limits=UNRATED,
)
