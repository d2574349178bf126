"""Live sync through Starlette's GZipMiddleware in a real browser, with GZip inside
FastStateMiddleware (added before it: the page reaches FastStateMiddleware compressed) and
outside it (added after). The app is tests/apps/gzip_app.py under uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Uvicorn

from .helpers import TIMEOUT, expect_text, open_live, read_int, to_front


@pytest.fixture(params=["inside", "outside"])
def gzip_server(request: pytest.FixtureRequest, datastar_js: Path) -> Iterator[Uvicorn]:
    env = {"FASTSTATE_DATASTAR_JS": str(datastar_js)}
    server = Uvicorn(f"tests.apps.gzip_app:{request.param}", env, graceful=1).start()
    try:
        yield server
    finally:
        server.stop()


def test_a_change_in_one_tab_reaches_another_through_gzip(
    gzip_server: Uvicorn, new_page: Any
) -> None:
    tab1 = new_page(gzip_server.url)
    with tab1.expect_response(lambda r: r.url.rstrip("/") == gzip_server.url) as page_reply:
        open_live(tab1, "/")
    # the page really was compressed, and still came with its live stream
    assert page_reply.value.header_value("content-encoding") == "gzip"
    tab2 = tab1.context.new_page()
    open_live(tab2, "/")
    start = read_int(tab1, "#count")
    assert read_int(tab2, "#count") == start

    to_front(tab1).click("#inc")
    expect_text(tab1, "#count", start + 1)
    expect_text(tab2, "#count", start + 1, timeout=TIMEOUT)  # only its live stream tells it
    to_front(tab2).click("#inc")
    expect_text(tab1, "#count", start + 2, timeout=TIMEOUT)
