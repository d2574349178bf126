"""The app ``make soak`` drives: one counter state per scope, pages that render them (so each
page opens a live stream), sign-in and sign-out, and read-outs for the final checks.

Environment: ``SOAK_BACKEND`` (default ``memory://``), ``SOAK_SECRET``, ``SOAK_SESSION_TTL``
(idle seconds of the session, component and temporary states, default 120), ``SOAK_TEMP_TTL``
(the TEMPORARY state's alone: small values make the ttl sweeper evict under load), ``SOAK_SWEEP``
(seconds between sweeps, default 5).
"""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    Limits,
    ScopeRule,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
    register_scope,
)

BACKEND = os.environ.get("SOAK_BACKEND", "memory://")
#: SQLite keeps only auto_persist states after a hard kill; Redis writes every change anyway
DURABLE = BACKEND.startswith("sqlite")
#: idle seconds of the session, component and temporary states: a soak of minutes leaves
#: sessions and closed tabs' states behind (new visitors, sign-ins, page loads), and a short ttl
#: lets the sweeper take them, so memory can settle (a state a tab shows is never idle)
SESSION_TTL = float(os.environ.get("SOAK_SESSION_TTL", "120"))
TEMP_TTL = float(os.environ.get("SOAK_TEMP_TTL", str(SESSION_TTL)))


class TenantScope(ScopeRule):
    """A custom scope: one instance per tenant, named by the ``x-tenant`` header."""

    name = "soaktenant"

    def owner(self, ctx: Any) -> str | None:
        return ctx.request.headers.get("x-tenant") or None


register_scope(TenantScope())


class SoakSession(State):
    __faststate__ = StateConfig(auto_persist=DURABLE, ttl=SESSION_TTL)
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


class SoakGlobal(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, auto_persist=DURABLE)
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


class SoakUser(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True, auto_persist=DURABLE)
    user_id: str = ""
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


class SoakComponent(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT, auto_persist=DURABLE, ttl=SESSION_TTL)
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


class SoakRecord(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD, auto_persist=DURABLE)
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


class SoakTemp(State):
    __faststate__ = StateConfig(scope=StateScope.TEMPORARY, auto_persist=DURABLE, ttl=TEMP_TTL)
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


class SoakTenant(State):
    __faststate__ = StateConfig(scope="soaktenant", auto_persist=DURABLE)
    n: int = 0

    @event
    def inc(self) -> None:
        self.n += 1


#: every simulated browser comes from 127.0.0.1: the per-address event rate (meant for many real
#: addresses) is lifted; each session's own rate limit stays as it is
# every simulated client comes from 127.0.0.1
LIMITS = Limits(address_event_rate=1e9, address_event_burst=10**9, max_streams_per_address=10**9)
store = StateStore(BACKEND, sweep_interval=float(os.environ.get("SOAK_SWEEP", "5")), limits=LIMITS)


async def _states(request: Request) -> list[State]:
    states: list[State] = [
        await SoakSession.dependency(),
        await SoakGlobal.dependency(),
        await SoakComponent.resolve(request.query_params["component_id"]),
        await SoakRecord.resolve(request.query_params["record_id"]),
        await SoakTemp.dependency(),
        await SoakTenant.dependency(),
    ]
    if request.session.get("auth"):
        states.append(await SoakUser.dependency())
    return states


async def page(request: Request) -> HTMLResponse:
    body = "".join(s.to_html() for s in await _states(request))
    return HTMLResponse(f"<!doctype html><html><body>{body}</body></html>")


async def values(request: Request) -> JSONResponse:
    """Every state of this visitor's page, in page order: name, key, count and version."""
    out: list[dict[str, Any]] = [
        {"name": type(s).__name__, "key": s.key, "n": getattr(s, "n", 0), "v": s.version}
        for s in await _states(request)
    ]
    return JSONResponse(out)


async def login(request: Request) -> JSONResponse:
    request.session["auth"] = request.query_params["user"]
    return JSONResponse({"user": request.session["auth"]})


async def logout(request: Request) -> JSONResponse:
    request.session.pop("auth", None)
    return JSONResponse({"user": None})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(store.stats())


app = Starlette(
    routes=[
        Route("/page", page),
        Route("/values", values),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/stats", stats),
    ]
)
app.add_middleware(SessionMiddleware, secret_key=os.environ.get("SOAK_SECRET", "soak"))
app.add_middleware(
    FastStateMiddleware, secret_key=os.environ.get("SOAK_SECRET", "soak"), store=store
)
