"""The store (_store.py): the ttl sweep (saves first, skips busy instances, default ttls per
scope) and listing the live keys by scope and class; the sweeper and live tabs, refusing
streams while stopping, changes that come back from a shared backend, and reading a state while
a change runs on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    DEFAULT_TTLS,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
)
from faststate_mw._config import meta_of
from faststate_mw.testing import FakeClock
from tests.apps.scopes import Listing, app
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.servers import RedisServer
from tests.sse import stream_url

saved: list[str] = []


class ScopesNote(State):
    __faststate__ = StateConfig(ttl=10, on_evict=lambda s: saved.append(s.text), writable=("text",))
    text: str = ""


class Chores(State):
    """A SESSION state and a GLOBAL one with the default ttls of their scopes."""

    done: int = 0


class Motd(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    text: str = "hi"


def _note_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> JSONResponse:
        n, c, m = ScopesNote.current(), Chores.current(), Motd.current()
        return JSONResponse({"key": n.key, "text": n.text, "chores": c.key, "motd": m.key})

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="notes", store=store)
    return app


async def test_ttl_eviction_saves_first_and_skips_busy_instances(
    clock: FakeClock, store: StateStore
) -> None:
    saved.clear()
    transport = httpx.ASGITransport(app=_note_app(store))
    keys = {}
    for sid in ("s1", "s2"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            keys[sid] = (await client.get("/")).json()["key"]
            body = {"scopesNote": {"text": sid * 3}}
            r = await client.post("/_faststate/ScopesNote/set_text", headers=DS, json=body)
            assert r.status_code == 200
    busy = store.get(keys["s2"])
    assert busy is not None and busy.text == "s2s2s2"
    clock.advance(11)
    async with busy.mutate():  # a change is running on s2's note
        assert await store.sweep() == [keys["s1"]]
    assert saved == ["s1s1s1"]  # on_evict ran before the instance was dropped
    assert store.get(keys["s1"]) is None and store.get(keys["s2"]) is busy
    clock.advance(11)
    assert await store.sweep() == [keys["s2"]]
    assert saved == ["s1s1s1", "s2s2s2"]
    assert store.keys(state_cls=ScopesNote) == []


async def test_default_ttls_apply_per_scope(clock: FakeClock, store: StateStore) -> None:
    session_ttl = DEFAULT_TTLS[StateScope.SESSION]
    assert session_ttl is not None and DEFAULT_TTLS[StateScope.GLOBAL] is None
    transport = httpx.ASGITransport(app=_note_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = (await client.get("/")).json()
        # back with the cookie: the session is confirmed and gets its scope's ttl (see
        # tests/security/test_limits.py for states of a client that never comes back)
        assert (await client.get("/")).json() == page
    clock.advance(session_ttl - 1)
    assert page["chores"] not in await store.sweep()
    clock.advance(2)
    assert page["chores"] in await store.sweep()
    clock.advance(365 * 24 * 3600)
    await store.sweep()
    assert store.keys() == [page["motd"]]  # a GLOBAL state never expires


def test_keys_by_scope_and_class(store: StateStore) -> None:
    client = TestClient(app(store))
    client.get("/product/1")
    client.get("/product/2")
    client.get("/draft")
    assert sorted(store.keys(state_cls=Listing)) == [
        "record:Listing:1",
        "record:Listing:2",
    ]
    assert len(store.keys(scope=StateScope.TEMPORARY)) == 1
    assert store.stats()["by_scope"] == {"record": 2, "temporary": 1}


class ShortNote(State):
    """A SESSION state with a short ttl."""

    __faststate__ = StateConfig(ttl=10)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class StoreBoard(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


def make_app(store: StateStore, cls: type[State]) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        inst = await cls.dependency()
        return HTMLResponse(f"<html><body>{inst.to_html()}</body></html>")

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="store-tests", store=store)
    return app


async def _page_and_stream(
    app: Starlette, client: httpx.AsyncClient
) -> tuple[Stream, httpx.Response]:
    page = await client.get("/")
    stream = await Stream(app, stream_url(page.text), client.cookies, {}).open()
    return stream, page


# -- the sweeper ---------------------------------------------------------------------------------
async def test_the_sweeper_keeps_a_state_a_tab_shows(clock: FakeClock, store: StateStore) -> None:
    app = make_app(store, ShortNote)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        stream, _page = await _page_and_stream(app, client)
        (key,) = store.keys(state_cls=ShortNote)
        clock.advance(11)  # idle past its ttl, but a tab shows it
        assert await store.sweep() == []
        # the tab still gets what changes (an evicted state would start over unseen)
        r = await client.post("/_faststate/ShortNote/bump", headers=DS, content=b"{}")
        assert r.status_code == 200
        assert (await stream.next())["signals"] == {"shortNote": {"n": 1}}
        await stream.close()
        assert not store.hub.watched(key)
        clock.advance(11)  # no tab any more: it goes after its ttl
        assert await store.sweep() == [key]
        assert store.get(key) is None
    await store.close()


async def test_a_state_shown_until_a_moment_ago_is_not_idle(
    clock: FakeClock, store: StateStore
) -> None:
    """A tab reconnecting (a network blip, a server's stream timeout) leaves its state unwatched
    for a moment: its ttl counts from when the tab went away, not from when the sweeper last
    kept it (the soak lost acknowledged increments that way)."""
    app = make_app(store, ShortNote)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        stream, page = await _page_and_stream(app, client)
        (key,) = store.keys(state_cls=ShortNote)
        clock.advance(11)
        assert await store.sweep() == []  # shown: kept (ttl 10)
        clock.advance(9)  # shown all along
        await stream.close()  # the tab's stream drops...
        assert not store.hub.watched(key)
        clock.advance(2)
        assert await store.sweep() == []  # ...and the state waits for it
        again = await Stream(app, stream_url(page.text), client.cookies, {}).open()
        r = await client.post("/_faststate/ShortNote/bump", headers=DS, content=b"{}")
        assert r.status_code == 200
        assert (await again.next())["signals"] == {"shortNote": {"n": 1}}
        await again.close()
        clock.advance(11)  # gone for longer than its ttl: now it goes
        assert await store.sweep() == [key]
    await store.close()


# -- stopping ------------------------------------------------------------------------------------
async def test_a_stopping_store_ends_streams_and_refuses_new_ones(store: StateStore) -> None:
    app = make_app(store, StoreBoard)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        stream, page = await _page_and_stream(app, client)
        assert stream.status == 200
        store.begin_shutdown()
        await stream.wait_for(stream.finished.is_set)  # the open stream ended
        again = await Stream(app, stream_url(page.text), client.cookies, {}).open()
        await again.wait_for(again.finished.is_set)
        assert again.status == 503  # the tab retries, against the next server
        assert again.response_headers["retry-after"] == "1"
        assert again.response_headers["x-faststate-error"] == "shutting_down"
        await stream.close()
        await again.close()
    await store.close()


# -- changes that come back ----------------------------------------------------------------------
async def test_a_change_the_hub_already_delivered_is_not_delivered_again(
    store: StateStore,
) -> None:
    app = make_app(store, StoreBoard)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        stream, _page = await _page_and_stream(app, client)
        for n in (1, 2):
            r = await client.post("/_faststate/StoreBoard/bump", headers=DS, content=b"{}")
            assert r.status_code == 200
            assert (await stream.next())["signals"] == {"storeBoard": {"n": n}}
        first = store.hub.logs["global:StoreBoard"][0]
        # the backend's echo of change 1 arrives late (after change 2 was delivered)
        store.apply_remote("global:StoreBoard", first.version, '{"n":1}', first.data)
        assert store.get("global:StoreBoard").n == 2
        # skipped: a stale entry in the log would look like a key that started over, and
        # this tab would be sent snapshots again and again (end the stream before it runs)
        delivered = store.hub.last_version("global:StoreBoard")
        if delivered != 2:
            store.hub.close_all()
        assert delivered == 2
        r = await client.post("/_faststate/StoreBoard/bump", headers=DS, content=b"{}")
        assert r.status_code == 200
        # the next thing the tab gets is change 3: no repeat, and no resync snapshot
        assert (await stream.next())["signals"] == {"storeBoard": {"n": 3}}
        await stream.close()
    await store.close()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, durable=False).start()
    yield server
    server.stop()


async def test_a_change_redis_applied_after_its_write_timed_out_reaches_the_tabs(
    redis_server: RedisServer,
) -> None:
    store = StateStore(redis_server.url)
    app = make_app(store, StoreBoard)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stream, _page = await _page_and_stream(app, client)
            r = await client.post("/_faststate/StoreBoard/bump", headers=DS, content=b"{}")
            assert r.status_code == 200
            assert (await stream.next())["signals"] == {"storeBoard": {"n": 1}}
            # this worker's write of change 2 timed out (it was rolled back here and reported
            # as failed), but Redis applied it and published it, as this worker's change
            sse = b'event: datastar-patch-signals\ndata: signals {"storeBoard":{"n":7}}\n'
            backend = store.backend
            assert await backend.commit("global:StoreBoard", 1, 2, '{"n":7}', None, sse) is None
            # (the cached copy may already read 7 here: Redis's publish can arrive on the
            # subscription before the script's reply does)
            event_ = await stream.next(timeout=5)
            if event_["id"].endswith(":1"):
                # the resync snapshot of version 1, when the worker's subscription took hold
                # after that change (its commit is quicker than the SUBSCRIBE): harmless
                event_ = await stream.next(timeout=5)
            assert event_["signals"] == {"storeBoard": {"n": 7}}
            assert event_["id"].endswith(":2")
            assert store.get("global:StoreBoard").n == 7  # the cached copy caught up too
            await stream.close()
    finally:
        await store.close()


async def test_a_snapshot_during_a_change_reads_the_newer_stored_state_without_touching_it(
    redis_server: RedisServer,
) -> None:
    here, there = StateStore(redis_server.url), StateStore(redis_server.url)
    await here.start()
    await there.start()
    try:
        mine = await StoreBoard.resolve(store=here)
        theirs = await StoreBoard.resolve(store=there)
        assert await theirs.update(n=5) == ["n"]  # another worker's change: stored version 1
        assert meta_of(mine).version == 0
        async with mine.mutate():  # a change runs on the cached instance
            seen = await here.refreshed("global:StoreBoard")
            assert seen is not mine
            assert seen.n == 5 and meta_of(seen).version == 1
            assert mine.n == 0 and meta_of(mine).version == 0  # untouched under the change
        assert await here.refreshed("global:StoreBoard") is mine  # no change runs: updated in place
        assert mine.n == 5 and meta_of(mine).version == 1
    finally:
        await here.close()
        await there.close()
