"""Which store code inside a request gets (``current_store``): the request's own, unless a store
was activated within the request; contexts made inside the request (``testing.in_session``,
a view's viewer context) keep that answer."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, view
from faststate_mw._store import current_store
from faststate_mw.testing import in_session


def _app(store: StateStore, where: Any) -> Starlette:
    mw = Middleware(FastStateMiddleware, secret_key="store-secret", store=store)
    return Starlette(routes=[Route("/where", where)], middleware=[mw])


def test_in_session_inside_a_request_keeps_the_requests_store() -> None:
    mine, other = StateStore(), StateStore()
    seen: list[Any] = []

    def where(request: Any) -> PlainTextResponse:
        with in_session("s1"):
            seen.append(current_store())
        return PlainTextResponse("ok")

    # two apps started: no "only running store" to fall back on
    with TestClient(_app(other, where)), TestClient(_app(mine, where)) as client:
        assert client.get("/where").text == "ok"
    assert seen == [mine]


seen_in_view: list[Any] = []


class WhereViewed(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @view
    def where_view(self) -> str:
        seen_in_view.append(current_store())
        return "v"


def test_a_view_rendered_inside_an_activation_in_a_request_sees_the_activated_store() -> None:
    mine, other = StateStore(), StateStore()

    async def where(request: Any) -> PlainTextResponse:
        with other.activate():
            seen_in_view.append(current_store())
            inst = await WhereViewed.resolve()
            inst.where_view()
        return PlainTextResponse("ok")

    seen_in_view.clear()
    with TestClient(_app(mine, where)) as client:
        assert client.get("/where").text == "ok"
    assert seen_in_view == [other, other]
