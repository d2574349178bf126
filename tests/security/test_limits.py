"""Bounded resources under anonymous load (README, "Limits").

For each bound: it holds, the error is the documented one, a refused request changed nothing,
and normal traffic still works. Time is a FakeClock wherever the library measures it with the
store's clock (ttls, token buckets); the body and event timeouts are asyncio deadlines, so those
tests use short ones and await the reply (never a sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from faststate_mw import (
    FastStateMiddleware,
    Limits,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
)
from faststate_mw._config import meta_of
from faststate_mw._scopes import RECORD_TTL_WITHOUT_LOAD
from faststate_mw.backends import sqlite as sqlite_backend
from faststate_mw.backends.sqlite import SQLiteBackend
from faststate_mw.testing import FakeClock
from tests.asgi_stream import Stream
from tests.conftest import API, DS
from tests.sse import patched_signals, stream_url

#: a test whose bound does not hold fails after this many seconds instead of hanging (a guard,
#: never what makes a test pass: the bounds under test are 0.05 s)
GUARD = 10.0
#: what LimSlow.wait_for_release waits for (a test sets it to end what it started)
RELEASE = asyncio.Event()
saved: list[str] = []


class LimNote(State):
    """A SESSION state."""

    text: str = ""

    @event
    def write(self, blob: str) -> None:
        self.text = blob


class LimRecord(State):
    """A RECORD state without a load hook; eviction saves it first."""

    __faststate__ = StateConfig(
        scope=StateScope.RECORD, on_evict=lambda s: saved.append(f"{s.key}={s.n}")
    )
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LimLoaded(State):
    """A RECORD state with a load hook: the app's own store is the truth, no default ttl."""

    __faststate__ = StateConfig(scope=StateScope.RECORD, load=lambda rid: {"n": int(rid)})
    n: int = 0


class LimWidget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class LimSlow(State):
    """Async events that can hang (a slow backend, an abandoned request)."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    async def hang(self) -> None:
        self.n += 100
        await asyncio.Event().wait()  # never set: only the event timeout ends it

    @event
    async def bump(self) -> None:
        self.n += 1

    @event
    def hang_later(self) -> Any:
        """A plain ``def`` whose returned awaitable hangs (a wrapper of an async function)."""
        self.n += 10
        return asyncio.Event().wait()

    @event
    def wait_for_release(self) -> Any:
        """A plain ``def`` whose returned awaitable waits until the test lets it go."""
        self.n += 1000
        return RELEASE.wait()

    @event
    def plain_bump(self) -> None:
        self.n += 1

    @event
    def progress(self) -> Any:
        """A generator event that streams its steps (a reader that stops reading stalls it)."""
        for i in range(3):
            self.n += 1
            yield f"<p id='step'>{i}</p>"

    @event
    async def steps(self) -> Any:
        self.n += 1
        yield None
        self.n += 100
        await asyncio.Event().wait()
        yield None


async def page(request: Request) -> HTMLResponse:
    note = LimNote.current()
    return HTMLResponse(f"<html><body>{note.to_html()}</body></html>")


async def note_key(request: Request) -> JSONResponse:
    return JSONResponse({"key": LimNote.current().key})


def make_app(store: StateStore) -> Starlette:
    app = Starlette(routes=[Route("/", page), Route("/key", note_key)])
    app.add_middleware(FastStateMiddleware, secret_key="limits", store=store)
    return app


async def write(c: httpx.AsyncClient, blob: str, headers: dict[str, str] = API) -> httpx.Response:
    return await c.post("/_faststate/LimNote/write", headers=headers, json={"blob": blob})


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def store_with(clock: FakeClock, **limits: Any) -> StateStore:
    return StateStore(clock=clock, limits=Limits(**limits))


async def client_of(store: StateStore) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(store)), base_url="http://t"
    )


@pytest.fixture
async def closing() -> AsyncIterator[list[Any]]:
    """Clients and stores to close after the test."""
    things: list[Any] = []
    yield things
    for thing in things:
        if isinstance(thing, httpx.AsyncClient):
            await thing.aclose()
        else:
            await thing.close()


# -- sessions of cookie-less requests --------------------------------------------------------------
async def test_cookieless_states_live_a_short_ttl_until_the_client_comes_back(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, fresh_session_ttl=60)
    closing.append(store)
    hostile = await client_of(store)  # a client that drops every cookie
    closing.append(hostile)
    r = await hostile.post("/_faststate/LimNote/write", headers=API, json={"blob": "x" * 1000})
    assert r.status_code == 200
    assert "set-cookie" in r.headers
    hostile.cookies.clear()
    browser = await client_of(store)  # a browser that keeps its cookie and comes back
    closing.append(browser)
    key = (await browser.get("/key")).json()["key"]
    assert (await browser.get("/key")).json()["key"] == key  # back with the cookie
    assert len(store.keys(state_cls=LimNote)) == 2
    clock.advance(61)
    assert await store.sweep() != []
    assert store.keys(state_cls=LimNote) == [key]  # the cookie-less one is gone
    clock.advance(23 * 3600)
    await store.sweep()
    assert store.keys(state_cls=LimNote) == [key]  # the confirmed one has the normal 24 h


async def test_fresh_sessions_are_capped_oldest_first(clock: FakeClock, closing: list[Any]) -> None:
    store = store_with(clock, max_fresh_sessions=3)
    closing.append(store)
    browser = await client_of(store)
    closing.append(browser)
    mine = (await browser.get("/key")).json()["key"]
    await browser.get("/key")  # confirmed
    hostile = await client_of(store)
    closing.append(hostile)
    keys = []
    for i in range(10):
        hostile.cookies.clear()
        r = await hostile.post("/_faststate/LimNote/write", headers=API, json={"blob": str(i)})
        assert r.status_code == 200
        keys.append(r.headers["set-cookie"])
    live = store.keys(state_cls=LimNote)
    assert len(live) == 1 + 3 and mine in live
    # normal traffic: the browser's state is still there and events work
    r = await browser.post("/_faststate/LimNote/write", headers=API, json={"blob": "mine"})
    assert r.status_code == 200 and store.get(mine).text == "mine"


async def test_fresh_sessions_are_capped_in_bytes(clock: FakeClock, closing: list[Any]) -> None:
    store = store_with(clock, max_fresh_bytes=5_000)
    closing.append(store)
    hostile = await client_of(store)
    closing.append(hostile)
    for i in range(20):
        hostile.cookies.clear()
        assert (await write(hostile, chr(97 + i) * 2_000)).status_code == 200
    assert store.caps.fresh_bytes() <= 5_000 + 2_100  # the cap, plus the newest state
    assert len(store.keys(state_cls=LimNote)) <= 4
    browser = await client_of(store)
    closing.append(browser)
    await browser.get("/key")
    assert (await write(browser, "x" * 2_000)).status_code == 200
    assert store.get((await browser.get("/key")).json()["key"]).text == "x" * 2_000


async def test_state_bytes_in_all_are_capped(clock: FakeClock, closing: list[Any]) -> None:
    store = store_with(clock, max_total_bytes=10_000)
    closing.append(store)
    keys = []
    for _ in range(10):
        c = await client_of(store)
        closing.append(c)
        keys.append((await c.get("/key")).json()["key"])
        await c.get("/key")  # confirmed: a session that keeps its cookie
        clock.advance(1)
        assert (await write(c, "y" * 3_000)).status_code == 200
    assert store.stats()["bytes"] <= 10_000 + 3_100
    live = store.keys()
    assert keys[-1] in live and keys[0] not in live  # the least recent went first


async def test_sqlite_rows_of_cookieless_sessions_expire_and_are_deleted(
    clock: FakeClock, closing: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page visit without a cookie made a SESSION state that eviction saved to SQLite
    with the scope's 24 h, and expired rows were never deleted (only skipped when read): the
    file grew by a row per anonymous visit, forever. The row of a session whose client never
    came back now expires with its fresh-session ttl, and saves delete expired rows."""
    wall = [1_000_000.0]
    monkeypatch.setattr(sqlite_backend, "time", SimpleNamespace(time=lambda: wall[0]))
    path = tmp_path / "fresh.db"
    store = StateStore(SQLiteBackend(path), clock=clock, limits=Limits(fresh_session_ttl=60))
    closing.append(store)
    hostile = await client_of(store)
    closing.append(hostile)
    for _ in range(50):
        hostile.cookies.clear()
        assert (await hostile.get("/key")).status_code == 200
    browser = await client_of(store)
    closing.append(browser)
    mine = (await browser.get("/key")).json()["key"]
    assert (await write(browser, "kept")).status_code == 200  # confirmed: the normal ttl

    def rows() -> list[tuple[str, float]]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return db.execute("select key, expires - ? from faststate_states", wall).fetchall()

    clock.advance(61)
    assert len(await store.sweep()) == 50
    assert len(rows()) == 50 and all(left <= 60 for _key, left in rows())
    wall[0] += max(61, sqlite_backend.PURGE_INTERVAL)  # their ttl passed: a save deletes them
    clock.advance(24 * 3600)
    assert await store.sweep() == [mine]
    assert [key for key, _left in rows()] == [mine]
    assert rows()[0][1] > 23 * 3600
    assert (await browser.get("/key")).json()["key"] == mine
    assert store.get(mine).text == "kept"  # read back from SQLite


# -- RECORD instances ------------------------------------------------------------------------------
async def test_records_without_load_expire_idle_and_are_saved_first(
    clock: FakeClock, closing: list[Any]
) -> None:
    saved.clear()
    store = StateStore(clock=clock)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    for rid in range(5):
        r = await c.post(f"/_faststate/LimRecord/bump?record_id=made-up-{rid}", headers=API)
        assert r.status_code == 200
    await LimLoaded.resolve("7", store=store)
    assert len(store.keys(state_cls=LimRecord)) == 5
    clock.advance(RECORD_TTL_WITHOUT_LOAD + 1)
    await store.sweep()
    assert store.keys(state_cls=LimRecord) == []
    assert sorted(saved) == [f"record:LimRecord:made-up-{i}=1" for i in range(5)]
    assert store.keys(state_cls=LimLoaded) == ["record:LimLoaded:7"]  # a load hook: kept


async def test_instances_per_scope_are_capped_least_recent_first(
    clock: FakeClock, closing: list[Any]
) -> None:
    saved.clear()
    store = store_with(clock, max_instances_per_scope=3)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    for rid in ("a", "b", "c"):
        clock.advance(1)
        await c.post(f"/_faststate/LimRecord/bump?record_id={rid}", headers=API)
    clock.advance(1)
    await c.post("/_faststate/LimRecord/bump?record_id=a", headers=API)  # "a" used again
    for rid in ("d", "e"):
        clock.advance(1)
        r = await c.post(f"/_faststate/LimRecord/bump?record_id={rid}", headers=API)
        assert r.status_code == 200
    live = sorted(store.keys(scope=StateScope.RECORD))
    assert live == ["record:LimRecord:a", "record:LimRecord:d", "record:LimRecord:e"]
    assert saved == ["record:LimRecord:b=1", "record:LimRecord:c=1"]  # saved before dropped
    assert store.get("record:LimRecord:a").n == 2


async def test_instances_in_all_are_capped_and_busy_ones_kept(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, max_instances=3)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    for rid in ("a", "b", "c"):
        clock.advance(1)
        await c.post(f"/_faststate/LimRecord/bump?record_id={rid}", headers=API)
    busy = store.get("record:LimRecord:a")
    async with busy.mutate():  # "a" is least recent but a change runs on it
        clock.advance(1)
        r = await c.post("/_faststate/LimRecord/bump?record_id=d", headers=API)
        assert r.status_code == 200
    assert sorted(store.keys()) == [
        "record:LimRecord:a",
        "record:LimRecord:c",
        "record:LimRecord:d",
    ]
    assert len(store) == 3


async def test_a_cap_refuses_when_every_instance_is_busy(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, max_instances=1)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    await c.post("/_faststate/LimRecord/bump?record_id=a", headers=API)
    async with store.get("record:LimRecord:a").mutate():
        r = await c.post("/_faststate/LimRecord/bump?record_id=b", headers=API)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        assert store.keys() == ["record:LimRecord:a"]
    assert (await c.post("/_faststate/LimRecord/bump?record_id=b", headers=API)).is_success
    assert store.keys() == ["record:LimRecord:b"]


# -- component ids, streams ------------------------------------------------------------------------
async def test_component_ids_per_session_are_capped(clock: FakeClock, closing: list[Any]) -> None:
    store = store_with(clock, max_components_per_session=3)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    await c.get("/key")
    for i in range(3):
        r = await c.post(f"/_faststate/LimWidget/bump?component_id=w{i}", headers=API)
        assert r.status_code == 200
    r = await c.post("/_faststate/LimWidget/bump?component_id=w3", headers=API)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "too_many_requests"
    assert len(store.keys(scope=StateScope.COMPONENT)) == 3
    r = await c.post("/_faststate/LimWidget/bump?component_id=w3", headers=DS)
    assert r.status_code == 200 and r.headers["x-faststate-error"] == "too_many_requests"
    assert patched_signals(r.text)[0]["_faststate"]["status"] == 429  # a page's error signal
    # a known id still works, and another session has its own allowance
    assert (await c.post("/_faststate/LimWidget/bump?component_id=w0", headers=API)).is_success
    other = await client_of(store)
    closing.append(other)
    await other.get("/key")
    assert (await other.post("/_faststate/LimWidget/bump?component_id=w3", headers=API)).is_success


async def test_streams_per_session_and_in_all_are_capped(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, max_streams_per_session=2, max_streams=3)
    closing.append(store)
    app = make_app(store)
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    closing.append(c)
    streams = []
    for _ in range(2):
        url = stream_url((await c.get("/")).text)
        streams.append(await Stream(app, url, c.cookies, {}).open())
    assert [s.status for s in streams] == [200, 200]
    url = stream_url((await c.get("/")).text)
    refused = await Stream(app, url, c.cookies, {}).open()
    await asyncio.wait_for(refused.finished.wait(), GUARD)
    assert refused.response_headers["x-faststate-error"] == "too_many_requests"
    assert "retry-after" in refused.response_headers
    assert len(store.hub.tabs) == 2
    other = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    closing.append(other)
    url2 = stream_url((await other.get("/")).text)
    streams.append(await Stream(app, url2, other.cookies, {}).open())
    assert streams[-1].status == 200 and len(store.hub.tabs) == 3
    url3 = stream_url((await other.get("/")).text)
    full = await Stream(app, url3, other.cookies, {}).open()
    await asyncio.wait_for(full.finished.wait(), GUARD)
    assert full.response_headers["x-faststate-error"] == "too_many_requests"
    # a tab that reconnects replaces its own stream: never refused for it
    await streams[0].close()
    again = await Stream(app, streams[0].url, c.cookies, {}).open()
    assert again.status == 200
    for s in [*streams[1:], again, refused, full]:
        await s.close()


async def test_streams_per_client_address_are_capped(clock: FakeClock, closing: list[Any]) -> None:
    """One client making a new session per stream cannot take every slot of the app."""
    store = store_with(clock, max_streams_per_address=2)
    closing.append(store)
    app = make_app(store)
    streams = []
    for address in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"):
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        closing.append(c)  # a new session each time
        url = stream_url((await c.get("/")).text)
        streams.append(await Stream(app, url, c.cookies, {}, client=address).open())
    refused = streams[2]
    await asyncio.wait_for(refused.finished.wait(), GUARD)
    assert refused.response_headers["x-faststate-error"] == "too_many_requests"
    assert [s.status for s in streams] == [200, 200, 200, 200]  # an SSE error reply is a 200
    assert streams[3].response_headers.get("x-faststate-error") is None  # another address
    assert len(store.hub.tabs) == 3 and store.hub.addresses == {"10.0.0.1": 2, "10.0.0.2": 1}
    # a tab of that address that reconnects (its old stream not yet seen gone) replaces its
    # own stream: never refused for it
    again = await Stream(app, streams[0].url, streams[0].cookies, {}, client="10.0.0.1").open()
    assert again.response_headers.get("x-faststate-error") is None
    assert store.hub.addresses == {"10.0.0.1": 2, "10.0.0.2": 1}
    for s in [*streams, again]:
        await s.close()
    assert store.hub.addresses == {}


# -- event rate ------------------------------------------------------------------------------------
async def test_events_per_session_go_through_a_token_bucket(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, event_rate=2, event_burst=3)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    key = (await c.get("/key")).json()["key"]
    for i in range(3):
        r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": str(i)})
        assert r.status_code == 200
    r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "refused"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "too_many_requests"
    assert store.get(key).text == "2"
    other = await client_of(store)  # another session (same address) is not slowed down
    closing.append(other)
    await other.get("/key")
    assert (await write(other, "o")).is_success
    clock.advance(0.5)  # one token back
    r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "later"})
    assert r.status_code == 200 and store.get(key).text == "later"


async def test_events_per_address_go_through_a_token_bucket(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, address_event_rate=1, address_event_burst=4)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    for i in range(4):
        c.cookies.clear()  # a new session every time: only the address is rate limited
        r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": str(i)})
        assert r.status_code == 200
    c.cookies.clear()
    before = len(store)
    r = await c.post("/_faststate/LimNote/write", headers=DS, json={"blob": "refused"})
    assert r.headers["x-faststate-error"] == "too_many_requests" and r.headers["retry-after"] == "1"
    assert len(store) == before and "set-cookie" not in r.headers
    clock.advance(1)
    assert (await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "ok"})).is_success


async def test_cross_site_requests_refused_by_csrf_spend_no_tokens_of_the_address(
    clock: FakeClock, closing: list[Any]
) -> None:
    """A page on another site can make a victim's browser send events; refused by the CSRF
    check, they must not drain the bucket of the victim's address (and everyone behind it)."""
    store = store_with(clock, address_event_rate=1, address_event_burst=2)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    # what a page on another site can send without a preflight: no custom header
    evil = {"content-type": "text/plain", "origin": "https://evil.example"}
    for _ in range(5):
        r = await c.post("/_faststate/LimNote/write", headers=evil, content=b'{"blob":"x"}')
        assert r.status_code == 403, r.text
    for i in range(2):  # the address's burst, whole
        r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": str(i)})
        assert r.status_code == 200, r.text
    r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "3rd"})
    assert r.status_code == 429  # the bucket counts what it let through


async def test_an_ipv6_client_is_one_address_for_its_whole_slash_64(
    clock: FakeClock, closing: list[Any]
) -> None:
    """A host on IPv6 is given a /64 and may send from any address in it: counted per full
    address, one client had as many event buckets (and stream slots) as it liked."""
    store = store_with(clock, address_event_rate=1, address_event_burst=4)
    closing.append(store)
    app = make_app(store)

    async def send_from(address: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(address, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "x"})

    for n in range(1, 5):
        assert (await send_from(f"2001:db8:1:2::{n:x}")).status_code == 200
    r = await send_from("2001:db8:1:2:ffff:ffff:ffff:fffe")  # the same /64
    assert r.status_code == 429, r.text
    assert (await send_from("2001:db8:1:3::1")).status_code == 200  # another /64
    # an IPv4 client is its address, whichever way the server writes it
    for _ in range(4):
        assert (await send_from("10.0.0.7")).status_code == 200
    assert (await send_from("::ffff:10.0.0.7")).status_code == 429
    assert (await send_from("10.0.0.8")).status_code == 200


# -- state size ------------------------------------------------------------------------------------
async def test_a_state_over_the_size_cap_is_refused_and_rolled_back(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, max_state_bytes=10_000)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    key = (await c.get("/key")).json()["key"]
    assert (await write(c, "small")).is_success
    version = store.get(key).version
    r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "é" * 6000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    assert store.get(key).text == "small" and store.get(key).version == version
    r = await c.post("/_faststate/LimNote/write", headers=API, json={"blob": "x" * 9000})
    assert r.status_code == 200 and store.get(key).text == "x" * 9000


def test_the_default_state_cap_is_a_few_hundred_kilobytes() -> None:
    assert 100_000 <= Limits().max_state_bytes <= 1_000_000


# -- the verified-cookie cache ---------------------------------------------------------------------
async def test_cookie_cache_keeps_our_value_not_the_whole_header(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = StateStore(clock=clock)
    closing.append(store)
    app = make_app(store)
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    closing.append(c)
    key = (await c.get("/key")).json()["key"]
    ours = c.cookies["faststate_sid"]
    mw = app.middleware_stack
    while not isinstance(mw, FastStateMiddleware):
        mw = mw.app
    for i in range(200):
        header = f"pad{i}={'x' * 60_000}; faststate_sid={ours}"
        r = await c.get("/key", headers={"cookie": header})
        assert r.json()["key"] == key  # the same session every time
    cached = list(mw.cookie._verified)
    assert cached == [ours.encode()]
    assert sum(len(k) for k in cached) < 100


# -- timeouts --------------------------------------------------------------------------------------
async def _call(app: Any, path: str, receive: Any) -> tuple[int, dict[str, str], bytes]:
    """Call the ASGI app directly with a hand-made ``receive``."""
    status = 0
    headers: dict[str, str] = {}
    body = b""

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, headers, body
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            body += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in API.items()],
        "client": ("127.0.0.9", 1),
        "server": ("t", 80),
    }
    await app(scope, receive, send)
    return status, headers, body


async def test_a_body_that_trickles_in_is_cut_off(clock: FakeClock, closing: list[Any]) -> None:
    store = store_with(clock, body_timeout=0.05)
    closing.append(store)
    app = make_app(store)
    sent = 0

    async def trickle() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        if sent == 1:
            return {"type": "http.request", "body": b'{"blob": "', "more_body": True}
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError

    call = _call(app, "/_faststate/LimNote/write", trickle)
    status, headers, body = await asyncio.wait_for(call, GUARD)
    assert status == 408 and headers["x-faststate-error"] == "request_timeout"
    assert b"Traceback" not in body
    assert store.keys(state_cls=LimNote) == []


@pytest.mark.parametrize(
    ("hang", "bump"),
    [
        ("hang", "bump"),  # an async event
        # a plain def on an idle state runs and commits at once, with no lock; what it
        # returns is awaited under the time limit and the lock, as any event's
        ("hang_later", "plain_bump"),
    ],
)
async def test_an_event_past_the_timeout_is_cancelled_rolled_back_and_unlocked(
    hang: str, bump: str, clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, event_timeout=0.05)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    r = await asyncio.wait_for(c.post(f"/_faststate/LimSlow/{hang}", headers=API), GUARD)
    assert r.status_code == 504 and r.json()["error"]["code"] == "event_timeout"
    slow = store.get("global:LimSlow")
    assert slow.n == 0 and slow.version == 0  # rolled back
    r = await c.post(f"/_faststate/LimSlow/{bump}", headers=API)  # the lock was released
    assert r.status_code == 200 and slow.n == 1 and slow.version == 1


async def test_a_grouped_event_whose_awaitable_hangs_is_cut_and_frees_the_state(
    clock: FakeClock, closing: list[Any]
) -> None:
    """A plain ``def`` event that returns an awaitable, sent while the state is busy, joins the
    next group commit: the group's task awaited it under the state's lock with no time bound.
    One that hung held the lock for ever (every later event on the state: a 504) and its own
    request never got a reply. It is cut at ``event_timeout`` and rolled back alone."""
    global RELEASE
    RELEASE = asyncio.Event()
    store = store_with(clock, event_timeout=0.1)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    busy = asyncio.ensure_future(c.post("/_faststate/LimSlow/hang", headers=API))
    slow = None
    while slow is None or not meta_of(slow).locked():  # the async event holds the state
        await asyncio.sleep(0.005)
        slow = store.get("global:LimSlow")
    grouped = asyncio.ensure_future(c.post("/_faststate/LimSlow/wait_for_release", headers=API))
    try:
        assert (await asyncio.wait_for(busy, GUARD)).status_code == 504
        done, _pending = await asyncio.wait({grouped}, timeout=2.0)
        assert grouped in done, "the grouped event never got a reply"
        r = grouped.result()
        assert r.status_code == 504 and r.json()["error"]["code"] == "event_timeout", r.text
        assert not meta_of(slow).locked()
        r = await asyncio.wait_for(c.post("/_faststate/LimSlow/plain_bump", headers=API), GUARD)
        assert r.status_code == 200, r.text
        assert slow.n == 1  # the bump; nothing of the events that timed out
    finally:
        RELEASE.set()  # on main: lets the stuck group end, so the test ends
        await asyncio.wait({grouped}, timeout=GUARD)


async def test_a_generator_step_past_the_timeout_is_cancelled(
    clock: FakeClock, closing: list[Any]
) -> None:
    store = store_with(clock, event_timeout=0.05)
    closing.append(store)
    c = await client_of(store)
    closing.append(c)
    r = await asyncio.wait_for(c.post("/_faststate/LimSlow/steps", headers=DS), GUARD)
    patches = patched_signals(r.text)
    assert patches[0] == {"limSlow": {"n": 1}}  # the first step was committed
    assert patches[-1]["_faststate"]["code"] == "event_timeout"
    slow = store.get("global:LimSlow")
    assert slow.n == 1 and slow.version == 1  # the step that hung was rolled back
    assert (await c.post("/_faststate/LimSlow/bump", headers=API)).status_code == 200


async def test_a_reader_that_stops_reading_a_generator_event_does_not_hold_its_state(
    clock: FakeClock, closing: list[Any]
) -> None:
    """A generator event writes each step to its reply under the state's lock: a client that
    stopped reading (its send never finishes) held the lock of a GLOBAL state for as long as it
    kept the connection open, and every other event on it waited, then got a 504. Each write is
    bounded by ``event_timeout`` like each step; the committed steps stay."""
    store = store_with(clock, event_timeout=0.05)
    closing.append(store)
    app = make_app(store)
    stalled = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message.get("more_body"):  # a step: the client reads no more
            stalled.set()
            await asyncio.Event().wait()

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/_faststate/LimSlow/progress",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in DS.items()],
        "client": ("10.0.0.9", 1),
    }
    stuck = asyncio.ensure_future(app(scope, receive, send))
    try:
        await asyncio.wait_for(stalled.wait(), GUARD)
        meta = meta_of(store.get("global:LimSlow"))

        async def released() -> None:
            while meta.locked():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(released(), GUARD)  # the stalled write was cut
        c = await client_of(store)
        closing.append(c)
        r = await asyncio.wait_for(c.post("/_faststate/LimSlow/bump", headers=API), GUARD)
        assert r.status_code == 200, r.text
        assert store.get("global:LimSlow").n == 2  # the first step, committed, and the bump
    finally:
        stuck.cancel()


def test_limits_are_validated() -> None:
    from faststate_mw import ConfigurationError

    with pytest.raises(ConfigurationError):
        Limits(max_streams=0)
    # NaN is no number of events: a bucket filled at a NaN rate lets every event through
    with pytest.raises(ConfigurationError):
        Limits(event_rate=float("nan"))
    with pytest.raises(ConfigurationError):
        FastStateMiddleware(Starlette(), "k", store=StateStore(), limits=Limits())
