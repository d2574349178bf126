"""Pages compressed by Starlette's GZipMiddleware, for the browser tests of tests/e2e/test_gzip.py.

``inside``: GZipMiddleware added before FastStateMiddleware, so it runs inside it and the page
reaches FastStateMiddleware already compressed. ``outside``: added after, so it compresses the
page FastStateMiddleware has finished. Either way every tab must keep its live stream. The
Datastar client is self-hosted from FASTSTATE_DATASTAR_JS.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    attrs_html,
    datastar_script,
    event,
    on,
    text,
)

#: well over GZipMiddleware's minimum size, so every page is compressed
FILLER = "<p>" + "Lorem ipsum dolor sit amet. " * 40 + "</p>"


class Squeezed(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1


async def page(request: Request) -> HTMLResponse:
    squeezed = Squeezed.current()
    return HTMLResponse(
        f"<!doctype html><html><head>{datastar_script()}</head><body>{squeezed.to_html()}"
        f"<span id='count' {attrs_html(text(Squeezed, 'count'))}></span>"
        f"<button id='inc' {attrs_html(on('click', Squeezed.increment()))}>+</button>"
        f"{FILLER}</body></html>"
    )


def _app(gzip_inside: bool) -> Starlette:
    app = Starlette(routes=[Route("/", page)])
    settings = {"secret_key": "gzip-e2e", "datastar_js": os.environ["FASTSTATE_DATASTAR_JS"]}
    if gzip_inside:  # the middleware added last runs first (outermost)
        app.add_middleware(GZipMiddleware)
        app.add_middleware(FastStateMiddleware, **settings)
    else:
        app.add_middleware(FastStateMiddleware, **settings)
        app.add_middleware(GZipMiddleware)
    return app


inside = _app(gzip_inside=True)
outside = _app(gzip_inside=False)
