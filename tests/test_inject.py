"""Putting the live-stream element into pages (_inject.py): once per page that rendered states,
none on pages without, before ``</body>``, with a correct length, and through GZip inside or
outside FastStateMiddleware."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, StateStore
from tests.apps.live import LiveGlobal, client_of, make_app


async def test_one_stream_element_per_page_and_none_without_states(store: StateStore) -> None:
    app = make_app(store)
    async with client_of(app, store) as c:
        r = await c.get("/?record_id=1&component_id=z")
        assert r.text.count('id="faststate-stream"') == 1
        assert r.text.index('id="faststate-stream"') < r.text.index("</body>")
        assert int(r.headers["content-length"]) == len(r.content)
        r = await c.get("/bare")
        assert "faststate-stream" not in r.text


@pytest.mark.parametrize("gzip_inside", [True, False])
def test_stream_element_survives_gzip(gzip_inside: bool, store: StateStore) -> None:
    def page(request: Request) -> HTMLResponse:
        big = "<p>padding</p>" * 200  # large enough for GZipMiddleware to compress
        return HTMLResponse(f"<html><body>{LiveGlobal.current().to_html()}{big}</body></html>")

    gz = Middleware(GZipMiddleware, minimum_size=100)
    fs = Middleware(FastStateMiddleware, secret_key="inject", store=store)
    # Starlette runs the first middleware of the list outermost
    mw = [fs, gz] if gzip_inside else [gz, fs]
    client = TestClient(Starlette(routes=[Route("/", page)], middleware=mw))
    r = client.get("/", headers={"accept-encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert 'id="faststate-stream"' in r.text  # httpx decompressed it
    assert r.text.index('id="faststate-stream"') < r.text.index("</body>")
    assert r.text.endswith("</html>")  # the whole page, recompressed as one valid body
