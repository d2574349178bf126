"""One State class per scope, shared by the scope suites (tests/test_scopes.py drives them
through plain Starlette with :func:`app`, tests/test_scope_entry_points.py through FastHTML and
FastAPI, tests/test_store.py lists their keys).

Their names are the tests' own: README snippets define ``Product``, ``TenantSettings`` and a
``tenant`` scope, so these use others (two classes of one name, or one scope registered twice,
would warn).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    ScopeRule,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
    register_scope,
)


class Profile(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    bio: str = ""

    @event
    def write(self, bio: str) -> None:
        self.bio = bio


class Widget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1


class Listing(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    likes: int = 0

    @event
    def like(self) -> None:
        self.likes += 1


class Draft(State):
    __faststate__ = StateConfig(scope=StateScope.TEMPORARY)
    step: int = 1

    @event
    def next_step(self) -> None:
        self.step += 1


class SiteScope(ScopeRule):
    """A custom scope: one instance per site, named by the ``x-site`` header or the host."""

    name = "site"

    def owner(self, ctx: Any) -> str | None:
        return ctx.request.headers.get("x-site") or ctx.request.url.hostname


register_scope(SiteScope())


class SiteTheme(State):
    __faststate__ = StateConfig(scope="site")
    theme: str = "light"


def _payload(inst: State) -> dict[str, Any]:
    return {"key": inst.key, "data": inst.public_data(), "ident": inst.identity}


def app(store: StateStore) -> Starlette:
    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        return PlainTextResponse("ok")

    async def logout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    async def profile(request: Request) -> JSONResponse:
        return JSONResponse(_payload(Profile.current()))

    async def widgets(request: Request) -> JSONResponse:
        a, b = Widget.component("a"), Widget.component("b")
        fresh = Widget.current()
        return JSONResponse(
            {
                "a": _payload(a),
                "b": _payload(b),
                "fresh": _payload(fresh),
                "a_action": a.actions.increment(),
                "a_ref": a.ref("count"),
            }
        )

    async def product(request: Request) -> JSONResponse:
        p = Listing.current()
        return JSONResponse({**_payload(p), "action": p.actions.like()})

    async def draft(request: Request) -> JSONResponse:
        return JSONResponse(_payload(Draft.current()))

    async def site(request: Request) -> JSONResponse:
        return JSONResponse(_payload(SiteTheme.current()))

    return Starlette(
        routes=[
            Route("/login", login),
            Route("/logout", logout),
            Route("/profile", profile),
            Route("/widgets", widgets),
            Route("/product/{record_id}", product),
            Route("/item/{id}", product),
            Route("/product", product),
            Route("/draft", draft),
            Route("/site", site),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="scopes", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )
