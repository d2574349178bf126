"""An app whose state is saved only when the server stops (not ``auto_persist``), for the
graceful stop tests: FS_BACKEND (a sqlite:/// URL)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event


class Board(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1


store = StateStore(os.environ["FS_BACKEND"])


async def page(request: Request) -> HTMLResponse:
    board = await Board.dependency()
    return HTMLResponse(f"<html><body>{board.to_html()}</body></html>")


async def values(request: Request) -> JSONResponse:
    return JSONResponse({"count": (await Board.dependency()).count})


app = Starlette(routes=[Route("/", page), Route("/values", values)])
app.add_middleware(FastStateMiddleware, secret_key="stop", store=store)
