"""A page that shows user strings through every path Datastar reads them from, for the
property-based browser test (tests/e2e/test_signals_roundtrip.py): ``data-signals`` on page load,
signal patches over the live stream, and an element patch carrying ``data-signals``.

FASTSTATE_DATASTAR_JS names the Datastar client to self-host. ``POST /set`` (a plain route of
this test app, JSON ``{"items": [...], "panel": [...]}``) stores the strings."""

from __future__ import annotations

import os
from html import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, datastar_script, event

#: strings per path and page
SLOTS = 10


class RoundTripPanel(State):
    """Shown only by the element patch of ``RoundTrip.reveal``."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    items: list[str] = [""] * SLOTS


class RoundTrip(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    items: list[str] = [""] * SLOTS

    @event
    async def reveal(self) -> str:
        panel = await RoundTripPanel.resolve()
        path = RoundTripPanel.signal_path("items")
        spans = "".join(f'<span id="p{i}" data-text="${path}[{i}]"></span>' for i in range(SLOTS))
        # the same strings as the app's own HTML text (escaped, as FastHTML and Jinja do)
        texts = "".join(f'<span id="t{i}">{escape(s)}</span>' for i, s in enumerate(panel.items))
        return f'<div id="panel">{panel.to_html()}{spans}{texts}</div>'


async def page(request: Request) -> HTMLResponse:
    state = await RoundTrip.dependency()
    path = RoundTrip.signal_path("items")
    spans = "".join(f'<span id="s{i}" data-text="${path}[{i}]"></span>' for i in range(SLOTS))
    action = escape(str(RoundTrip.reveal()), quote=True)
    return HTMLResponse(
        f"<!doctype html><html><head>{datastar_script()}</head><body>{state.to_html()}"
        f'{spans}<button id="reveal" data-on:click="{action}">reveal</button>'
        '<div id="panel"></div></body></html>'
    )


async def set_strings(request: Request) -> Response:
    body = await request.json()
    await (await RoundTrip.resolve()).update(items=body["items"])
    await (await RoundTripPanel.resolve()).update(items=body["panel"])
    return Response(status_code=204)


app = Starlette(routes=[Route("/", page), Route("/set", set_strings, methods=["POST"])])
app.add_middleware(
    FastStateMiddleware,
    secret_key="roundtrip-secret",
    datastar_js=os.environ.get("FASTSTATE_DATASTAR_JS") or None,
)
