"""A session-scoped and a global state in a Starlette app with its own SessionMiddleware, before
or after FastStateMiddleware: for tests/test_middleware.py and tests/test_session.py."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    _get_state,
    current_session,
    current_user,
    event,
)

SECRET = "middleware-test-secret"


class Notes(State):
    count: int = 0
    seen_user: str = ""
    seen_session: str = ""

    @event
    def increment(self) -> None:
        self.count += 1

    @event
    def whoami(self) -> None:
        user = current_user()
        self.seen_user = user.id if user else "anonymous"
        self.seen_session = str(current_session().get("color", ""))
        current_session()["touched_by_event"] = True


class Hits(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    hits: int = 0

    @event
    def hit(self) -> None:
        self.hits += 1


def notes_app(order: str, store: StateStore) -> Starlette:
    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        request.session["color"] = "blue"
        return PlainTextResponse("ok")

    async def page(request: Request) -> JSONResponse:
        notes = Notes.current()
        assert _get_state(request, Notes) is notes
        user = current_user()
        return JSONResponse(
            {
                "count": notes.count,
                "user": user.id if user else None,
                "touched": request.session.get("touched_by_event", False),
                "key": notes.key,
            }
        )

    async def html_page(request: Request) -> HTMLResponse:
        notes = Notes.current()
        button = f'<button data-on:click="{Notes.increment()}">+</button>'
        return HTMLResponse(f"<html><body>{notes.to_html()}{button}</body></html>")

    fs = Middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    sess = Middleware(SessionMiddleware, secret_key="app-session-secret")
    middleware = [fs, sess] if order == "faststate-outside" else [sess, fs]
    return Starlette(
        routes=[Route("/", page), Route("/login", login), Route("/html", html_page)],
        middleware=middleware,
    )
