"""Live sync in-process, as a user sees it: who receives a change (audiences per scope), the
sender's patch sent once, several states on one signals helper. The parts have suites of their
own: tests/test_hub.py, test_streams.py, test_inject.py, test_changes.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    StateStore,
    signals,
)
from tests.apps.live import (
    SENTINEL,
    LiveGlobal,
    LiveSession,
    Tab,
    client_of,
    live_browser,
    mark,
)
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.sse import stream_url


@pytest.fixture
async def app_and_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    async with live_browser(store) as pair:
        yield pair


async def test_audiences_per_scope(app_and_browser: Any, store: StateStore) -> None:
    _app, (browser, tab) = app_and_browser
    alice_phone, alice_laptop, bob = browser(), browser(), browser()
    await alice_phone.get("/login?user=alice")
    await alice_laptop.get("/login?user=alice")
    await bob.get("/login?user=bob")
    a1 = await tab(alice_phone, "?record_id=7&component_id=w")
    a2 = await tab(alice_phone, "?record_id=8&component_id=w")  # same session, other record
    a3 = await tab(alice_laptop, "?record_id=7")
    b1 = await tab(bob, "?record_id=7&component_id=w")
    everyone = [a1, a2, a3, b1]

    async def who_gets(sender: Tab, state: str, query: str = "") -> set[str]:
        r = await sender.fire(state, query)
        assert r.status_code in (200, 204)
        await mark(store)
        signal = state[0].lower() + state[1:]
        got = set()
        for name, t in zip(["a1", "a2", "a3", "b1"], everyone, strict=True):
            assert t.stream is not None
            patches = await t.stream.before(SENTINEL)
            if patches:
                assert len(patches) == 1 and list(patches[0]) == [signal]  # exactly one patch
                got.add(name)
        return got

    assert await who_gets(a1, "LiveGlobal") == {"a1", "a2", "a3", "b1"}
    assert await who_gets(a1, "LiveSession") == {"a1", "a2"}
    assert await who_gets(a1, "LiveUser") == {"a1", "a2", "a3"}
    assert await who_gets(b1, "LiveUser") == {"b1"}
    assert await who_gets(b1, "LiveRecord", "?record_id=7") == {"a1", "a3", "b1"}
    assert await who_gets(a1, "LiveWidget", "?component_id=w") == {"a1", "a2"}
    assert await who_gets(b1, "LiveWidget", "?component_id=w") == {"b1"}


async def test_sender_gets_its_patch_once_through_its_stream(app_and_browser: Any) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser())
    r = await t.fire("LiveSession")
    assert r.status_code == 204  # nothing in the reply: the patch comes through the stream
    assert t.stream is not None
    ev = await t.stream.next()
    assert ev["signals"] == {"liveSession": {"n": 1}}
    # a request from no live tab (an API client) gets the patch in its reply
    r = await t.client.post("/_faststate/LiveSession/bump", headers=DS, content=b"{}")
    assert "datastar-patch-signals" in r.text
    # the stream's next patch is the second change: the first was not sent twice
    assert (await t.stream.next())["signals"] == {"liveSession": {"n": 2}}


async def test_several_states_share_one_signals_helper(store: StateStore) -> None:
    async def page(request: Request) -> HTMLResponse:
        attrs = signals(LiveGlobal.current(), LiveSession.current())
        return HTMLResponse(f"<body><div data-signals='{attrs['data-signals']}'></div></body>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="s", store=store)
    async with client_of(app, store) as c:
        html = (await c.get("/")).text
        assert '"liveGlobal":{"n":0}' in html and '"liveSession":{"n":0}' in html
        s = await Stream(app, stream_url(html), c.cookies, {}).open()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        assert (await s.next())["signals"] == {"liveGlobal": {"n": 1}}
        await s.close()
