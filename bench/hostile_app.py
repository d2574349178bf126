"""The app the hostile-load benchmark attacks: a SESSION note, RECORD and COMPONENT states, a
page with a live stream. ``FS_UNRATED=1`` lifts the event rate limits so that each other bound
is measured on its own; otherwise every limit has its default."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bench.unrated import UNRATED
from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    current_store,
    event,
)


class HNote(State):
    text: str = ""

    @event
    def write(self, blob: str) -> None:
        self.text = blob


class HRecord(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class HWidget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


async def page(request: Request) -> Response:
    return HTMLResponse(f"<html><body>{HNote.current().to_html()}</body></html>")


async def stats(request: Request) -> Response:
    """What the store holds (for the benchmark's report)."""
    s = current_store().stats()
    return JSONResponse(
        {k: s[k] for k in ("instances", "by_scope", "bytes", "fresh_sessions")}
        | {"streams": s["streams"]["connections"]}
    )


app = Starlette(routes=[Route("/", page), Route("/stats", stats)])
app.add_middleware(
    FastStateMiddleware,
    secret_key="bench-hostile",
    limits=UNRATED if os.environ.get("FS_UNRATED") == "1" else None,
)
