"""The hub (_hub.py): fan-out in per-key order, bounded logs (a slow consumer drops to one
snapshot and never blocks the others), stalled writers removed, nothing kept after a stream
closes."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import itertools
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request

from faststate_mw import (
    StateStore,
)
from faststate_mw._hub import Connection, Hub
from faststate_mw._types import ASGIApp, Message, Receive, Scope, Send
from faststate_mw.testing import FakeClock
from tests.apps.live import (
    SENTINEL,
    client_of,
    live_browser,
    make_app,
    mark,
)
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.sse import stream_url


@pytest.fixture
async def app_and_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    async with live_browser(store) as pair:
        yield pair


async def test_ordering_per_key_and_rapid_events_converge(
    app_and_browser: Any, store: StateStore
) -> None:
    _app, (browser, tab) = app_and_browser
    t1 = await tab(browser())
    t2 = await tab(browser())
    await asyncio.gather(*(t1.fire("LiveGlobal") for _ in range(30)))
    await mark(store)
    for t in (t1, t2):
        assert t.stream is not None
        values = [p["liveGlobal"]["n"] for p in await t.stream.before(SENTINEL)]
        assert values == list(range(1, 31))


async def test_slow_consumer_drops_to_one_snapshot_and_never_blocks_others(
    clock: FakeClock,
) -> None:
    store = StateStore(clock=clock, max_queue=4, write_timeout=5)
    app = make_app(store)
    async with client_of(app, store) as c:
        html_slow = (await c.get("/")).text
        html_fast = (await c.get("/")).text
        slow = await Stream(app, stream_url(html_slow), c.cookies, {}).open()
        fast = await Stream(app, stream_url(html_fast), c.cookies, {}).open()
        slow.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await slow.blocked.wait()  # the slow writer is blocked inside its write
        seen = [(await fast.next())["signals"]["liveGlobal"]["n"]]
        for _ in range(20):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            seen.append((await fast.next())["signals"]["liveGlobal"]["n"])
        assert seen == list(range(1, 22))  # the fast tab got every patch, in order
        slow.resume()
        await mark(store)
        got = [p["liveGlobal"]["n"] for p in await slow.before(SENTINEL)]
        # the stalled tab fell further behind than its queue: after the write it was blocked
        # in, one snapshot instead of the rest
        assert got == [1, 21]
        assert store.hub.stats()["dropped_to_resync"] == 1
        await slow.close()
        await fast.close()


@pytest.mark.parametrize("one_key", [False, True], ids=["page-stream", "one-key-stream"])
async def test_stalled_writer_is_removed(one_key: bool, clock: FakeClock) -> None:
    store = StateStore(clock=clock, write_timeout=0.05)
    app = make_app(store)
    hub = store.hub
    async with client_of(app, store) as c:
        if one_key:
            s = await one_key_stream(app, c)
        else:
            s = await Stream(app, stream_url((await c.get("/")).text), c.cookies, {}).open()
        assert len(hub.tabs) == 1
        s.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await asyncio.wait_for(s.finished.wait(), 2)
        assert len(hub.tabs) == 0 and hub.subscribers == {}
        await s.close()


async def test_ten_thousand_connect_disconnect_cycles_leak_nothing(store: StateStore) -> None:
    app = make_app(store)
    hub = store.hub
    async with client_of(app, store) as c:
        url = stream_url((await c.get("/")).text)

        async def cycle() -> None:
            s = await Stream(app, url, c.cookies, {}).open()
            await s.close()

        for _ in range(200):  # warm up
            await cycle()
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(10_000):
            await cycle()
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        assert len(hub.tabs) == 0 and hub.subscribers == {} and hub.sessions == {}
        assert grown < 200_000, f"{grown} bytes retained after 10,000 cycles"


PATCH = b"event: datastar-patch-signals\ndata: signals {}\n"


def test_a_key_that_started_over_resyncs_its_tabs() -> None:
    hub = Hub()
    conn = Connection("s", None, "tab", ["session:s:Note"], [5])  # the tab knows version 5
    hub.add(conn)
    # the state was made again (evicted, or the backend lost its data): it counts from 1
    hub.publish("session:s:Note", 1, PATCH)
    assert hub.pending(conn) is None
    assert conn.resync == {0}  # only a snapshot can tell this tab what the state is now
    # (without it, the tab would skip every change up to version 5, and miss what they did)


def test_a_tab_up_to_date_gets_nothing_and_no_resync() -> None:
    hub = Hub()
    conn = Connection("s", None, "tab", ["session:s:Note", "global:Motd"], [3, 0])
    hub.add(conn)
    hub.publish("session:s:Note", 3, PATCH)  # what it knows already
    hub.publish("global:Motd", 1, PATCH)
    assert hub.pending(conn) == [PATCH, b"id: " + f"{hub.epoch}:3.1".encode() + b"\n\n"]
    assert conn.resync == set()


def test_a_snapshot_ahead_of_the_log_resyncs_once_not_forever() -> None:
    hub = Hub()
    conn = Connection("s", None, "tab", ["global:Motd"], [5])
    hub.add(conn)
    hub.publish("global:Motd", 5, PATCH)
    # a snapshot read version 7 from a shared backend; 6 and 7 are still on their way
    conn.versions[0] = 7
    assert hub.pending(conn) is None and conn.resync == {0}
    conn.resync.clear()  # the snapshot was sent again: still 7
    for _ in range(3):  # the same log entry never asks for another one (no busy loop)
        assert hub.pending(conn) is None and conn.resync == set()
    hub.publish("global:Motd", 6, PATCH)  # the late changes are what it has: no resync
    hub.publish("global:Motd", 7, PATCH)
    assert hub.pending(conn) is None and conn.resync == set()
    hub.publish("global:Motd", 8, PATCH)
    out = hub.pending(conn)  # a one-key stream one change behind: the prebuilt message
    assert isinstance(out, dict) and out["body"] == PATCH + f"id: {hub.epoch}:8\n\n".encode()


def test_a_log_keeps_changes_for_seconds_not_for_as_long_as_the_key_is_watched() -> None:
    hub = Hub()
    behind = Connection("s", None, "old", ["global:Motd"], [0])
    hub.add(behind)
    for version in (1, 2, 3):
        hub.publish("global:Motd", version, PATCH)
    assert [e.version for e in hub.logs["global:Motd"]] == [1, 2, 3]
    held = hub.logs_bytes
    hub.now += hub.log_seconds + 1
    hub.publish("global:Motd", 4, PATCH)
    # the older changes went (their bytes too); the latest stays for tabs one change behind
    assert [e.version for e in hub.logs["global:Motd"]] == [4]
    assert hub.logs_bytes < held
    # a tab that had not taken them is resynced (one snapshot), never sent a gap
    assert hub.pending(behind) is None and behind.resync == {0}
    current = Connection("s", None, "new", ["global:Motd"], [3])
    hub.add(current)
    out = hub.pending(current)
    assert isinstance(out, dict) and out["body"] == PATCH + f"id: {hub.epoch}:4\n\n".encode()


# -- one-key streams: the hub writes their changes itself, without waking their tasks ----------


async def one_key_stream(app: Any, c: Any) -> Stream:
    return await Stream(app, stream_url((await c.get("/one")).text), c.cookies, {}).open()


async def test_one_key_streams_get_every_change_in_order_without_a_wake_up(
    store: StateStore,
) -> None:
    app = make_app(store)
    async with client_of(app, store) as c:
        tabs = [await one_key_stream(app, c) for _ in range(2)]
        conns = list(store.hub.tabs.values())
        assert [len(conn.keys) for conn in conns] == [1, 1]
        waiters = [conn.waiter for conn in conns]
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        for t in tabs:
            assert (await t.next())["signals"] == {"liveGlobal": {"n": 1}}
        # written by the hub: each stream still waits on the same future (its task never ran)
        assert [conn.waiter for conn in conns] == waiters
        assert not any(w is None or w.done() for w in waiters)
        await asyncio.gather(
            *(c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}") for _ in range(30))
        )
        for t in tabs:
            got = [(await t.next())["signals"]["liveGlobal"]["n"] for _ in range(30)]
            assert got == list(range(2, 32))
            await t.close()
        assert store.hub.tabs == {}


async def test_a_tab_of_several_states_is_written_its_own_id_without_a_wake_up(
    app_and_browser: Any, store: StateStore
) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser())
    assert t.stream is not None
    (conn,) = store.hub.tabs.values()
    assert len(conn.keys) == 3 and conn.send is not None
    waiter = conn.waiter
    await t.fire("LiveSession")
    first = await t.stream.next()
    assert first["signals"] == {"liveSession": {"n": 1}}
    assert first["id"].partition(":")[2] == "0.1.0"  # [LiveGlobal, LiveSession, LiveSentinel]
    assert conn.waiter is waiter and waiter is not None and not waiter.done()


async def test_a_slow_one_key_reader_is_finished_by_its_task_and_never_blocks_others(
    clock: FakeClock,
) -> None:
    store = StateStore(clock=clock, max_queue=4, write_timeout=5)
    app = make_app(store)
    async with client_of(app, store) as c:
        slow = await one_key_stream(app, c)
        fast = await one_key_stream(app, c)
        slow.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await slow.blocked.wait()  # the hub's write to it waits on the reader
        seen = [(await fast.next())["signals"]["liveGlobal"]["n"]]
        for _ in range(20):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            seen.append((await fast.next())["signals"]["liveGlobal"]["n"])
        assert seen == list(range(1, 22))
        slow.resume()
        # the write it was blocked in completes, then one snapshot instead of the rest
        assert (await slow.next())["signals"] == {"liveGlobal": {"n": 1}}
        assert (await slow.next())["signals"] == {"liveGlobal": {"n": 21}}
        assert store.hub.stats()["dropped_to_resync"] == 1
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        for t in (slow, fast):
            assert (await t.next())["signals"] == {"liveGlobal": {"n": 22}}
            await t.close()


def wrapped(app: ASGIApp, on_body: Any) -> ASGIApp:
    """``app`` behind a send wrapper that calls ``on_body(message)`` before each body write."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapper(message: Message) -> None:
            if message["type"] == "http.response.body":
                on_body(message)
            await send(message)

        await app(scope, receive, wrapper)

    return outer


async def test_a_one_key_write_that_fails_ends_its_stream(store: StateStore) -> None:
    app = make_app(store)

    def gone(message: Message) -> None:
        if b"liveGlobal" in message.get("body", b""):
            raise OSError("the client went away")

    async with client_of(app, store) as c:
        url = stream_url((await c.get("/one")).text)
        s = await Stream(wrapped(app, gone), url, c.cookies, {}).open()
        assert len(store.hub.tabs) == 1
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await asyncio.wait_for(s.finished.wait(), 2)  # the stream's task ended it
        assert store.hub.tabs == {} and store.hub.subscribers == {}
        await s.close()


async def test_a_send_that_must_run_in_its_task_is_made_again_by_the_task(
    store: StateStore,
) -> None:
    app = make_app(store)

    async def timed(scope: Scope, receive: Receive, send: Send) -> None:
        async def within_a_deadline(message: Message) -> None:
            async with asyncio.timeout(5):  # needs to run in a task
                await send(message)

        await app(scope, receive, within_a_deadline)

    async with client_of(app, store) as c:
        url = stream_url((await c.get("/one")).text)
        s = await Stream(timed, url, c.cookies, {}).open()
        for n in (1, 2, 3):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            assert (await s.next())["signals"] == {"liveGlobal": {"n": n}}
        (conn,) = store.hub.tabs.values()
        assert conn.send is None  # the hub no longer writes for it: its task does
        await s.close()


async def test_a_send_that_waits_on_every_write_gets_every_change(store: StateStore) -> None:
    # BaseHTTPMiddleware hands the response over through an anyio stream that yields each time
    app = make_app(store)

    async def passthrough(request: Request, call_next: Any) -> Any:
        return await call_next(request)

    outer = BaseHTTPMiddleware(app, dispatch=passthrough)
    bumps = itertools.count(1)
    async with client_of(app, store) as c:
        for page in ("/one", "/"):  # one state, and three
            s = await Stream(outer, stream_url((await c.get(page)).text), c.cookies, {}).open()
            for _ in range(3):
                await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
                assert (await s.next())["signals"] == {"liveGlobal": {"n": next(bumps)}}
            await s.close()


WRITING = contextvars.ContextVar[bool]("WRITING", default=False)


async def test_a_write_that_waits_is_finished_in_the_context_it_began_in(
    store: StateStore,
) -> None:
    app = make_app(store)

    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapper(message: Message) -> None:
            token = WRITING.set(True)  # e.g. a tracing span around each write
            try:
                await send(message)
            finally:
                WRITING.reset(token)  # only in the context that set it

        await app(scope, receive, wrapper)

    async with client_of(app, store) as c:
        s = await Stream(marked, stream_url((await c.get("/one")).text), c.cookies, {}).open()
        s.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await s.blocked.wait()  # the hub's write waits on the reader: its task finishes it
        s.resume()
        assert (await s.next())["signals"] == {"liveGlobal": {"n": 1}}
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        assert (await s.next())["signals"] == {"liveGlobal": {"n": 2}}
        await s.close()


REQUEST = contextvars.ContextVar[int]("REQUEST")


async def test_a_one_key_write_runs_in_the_streams_context(store: StateStore) -> None:
    app = make_app(store)
    seen: list[int] = []
    numbers = itertools.count()

    def record(message: Message) -> None:
        if b"liveGlobal" in message.get("body", b""):
            seen.append(REQUEST.get())

    async def numbered(scope: Scope, receive: Receive, send: Send) -> None:
        REQUEST.set(next(numbers))  # every request its own number, in its own context
        streaming = scope["path"] == "/_faststate/stream"
        await (wrapped(app, record) if streaming else app)(scope, receive, send)

    async with client_of(app, store) as c:
        s = await Stream(numbered, stream_url((await c.get("/one")).text), c.cookies, {}).open()
        stream_number = next(numbers) - 1
        transport = httpx.ASGITransport(app=numbered)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as bump:
            for _ in range(2):
                await bump.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
                await s.next()
        assert seen == [stream_number, stream_number]
        await s.close()


async def one_key_conn(hub: Hub, key: str, sent: list[Message]) -> Connection:
    async def send(message: Message) -> None:
        sent.append(message)

    conn = Connection("s", None, "tab", [key], [0])
    conn.send, conn.context = send, contextvars.copy_context()
    hub.add(conn)
    conn.waiter = asyncio.get_running_loop().create_future()
    return conn


async def test_the_hub_writes_a_waiting_one_key_tab_only_what_it_may_see() -> None:
    hub = Hub()
    sent: list[Message] = []
    conn = await one_key_conn(hub, "global:Motd", sent)
    hub.publish("global:Motd", 1, PATCH)
    await asyncio.sleep(0)
    assert [m["body"] for m in sent] == [PATCH + f"id: {hub.epoch}:1\n\n".encode()]
    assert conn.versions == [1] and conn.waiter is not None and not conn.waiter.done()
    # unsubscribed (its user may no longer see the key) between the change and the write
    hub.publish("global:Motd", 2, PATCH)
    hub.unsubscribe(conn, "global:Motd")
    await asyncio.sleep(0)
    assert len(sent) == 1 and conn.versions == [1]
    assert conn.waiter.done()  # woken instead: it asks pending(), which has nothing for it
    assert hub.pending(conn) is None


async def test_changes_made_before_the_hubs_write_go_out_as_one_write() -> None:
    hub = Hub()
    sent: list[Message] = []
    conn = await one_key_conn(hub, "global:Motd", sent)
    hub.publish("global:Motd", 1, PATCH)
    hub.publish("global:Motd", 2, PATCH)
    await asyncio.sleep(0)
    assert sent == [] and conn.waiter is not None and conn.waiter.done()  # woken, not written
    assert hub.pending(conn) == [
        PATCH,
        f"id: {hub.epoch}:1\n\n".encode(),
        PATCH,
        f"id: {hub.epoch}:2\n\n".encode(),
    ]


# -- the hub's writes under attack: what a tab gets when a write waits, fails or is cut -----------


async def test_a_change_of_another_key_that_comes_while_the_hubs_write_waits_follows_it(
    app_and_browser: Any, store: StateStore
) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser())
    s = t.stream
    assert s is not None
    s.stall()
    await t.fire("LiveGlobal")
    await s.blocked.wait()  # the hub's write waits on the reader: its task finishes it
    await t.fire("LiveSession")
    await t.fire("LiveGlobal")
    s.resume()
    got = [await s.next() for _ in range(3)]
    # each key in order, every change once; each id: the versions sent so far
    # ([LiveGlobal, LiveSession, LiveSentinel]), so a reconnect resumes where this tab is
    assert [(e["signals"], e["id"].partition(":")[2]) for e in got] == [
        ({"liveGlobal": {"n": 1}}, "1.0.0"),
        ({"liveGlobal": {"n": 2}}, "2.0.0"),
        ({"liveSession": {"n": 1}}, "2.1.0"),
    ]
    await t.fire("LiveSession")  # written by the hub again
    last = await s.next()
    assert last["signals"] == {"liveSession": {"n": 2}}
    assert last["id"].partition(":")[2] == "2.2.0"


async def test_a_tab_that_goes_away_while_the_hubs_write_waits_ends_its_stream(
    store: StateStore,
) -> None:
    app = make_app(store)
    async with client_of(app, store) as c:
        s = await one_key_stream(app, c)
        s.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await s.blocked.wait()
        await s.close()  # http.disconnect; the write it was blocked in completes
        assert s.task is not None and s.task.done() and s.task.exception() is None
        assert store.hub.tabs == {} and store.hub.subscribers == {}


async def test_a_send_wrapper_under_an_anyio_deadline_gets_every_change_once(
    store: StateStore,
) -> None:
    app = make_app(store)
    refused: list[BaseException] = []

    async def deadline(scope: Scope, receive: Receive, send: Send) -> None:
        async def within(message: Message) -> None:
            try:
                with anyio.fail_after(5):  # a cancel scope needs its task, as asyncio.timeout
                    await send(message)
            except Exception as exc:
                refused.append(exc)
                raise

        await app(scope, receive, within)

    async with client_of(app, store) as c:
        s = await Stream(deadline, stream_url((await c.get("/one")).text), c.cookies, {}).open()
        got = []
        for _ in range(3):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            got.append((await s.next())["signals"]["liveGlobal"]["n"])
        assert got == [1, 2, 3] and s.events.empty()
        assert len(refused) == 1  # refused once outside its task; from then on its task writes
        (conn,) = store.hub.tabs.values()
        assert conn.send is None
        await s.close()


async def test_an_ended_stream_is_freed_at_once_with_what_the_hub_writes_through(
    app_and_browser: Any, store: StateStore
) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser())
    assert t.stream is not None
    await t.fire("LiveGlobal")
    await t.stream.next()
    (conn,) = store.hub.tabs.values()
    assert conn.send is not None and conn.context is not None
    gc.collect()
    gc.disable()  # no reference cycle keeps a stream's send, context or views alive
    try:
        del conn
        await t.close()
        assert not [o for o in gc.get_objects() if type(o) is Connection]
    finally:
        gc.enable()


@pytest.mark.xfail(
    strict=True,
    reason="known limit of the hub's writes: a send that writes and then raises outside its "
    "task (here: it needs asyncio.current_task()) is made again by the task, so the tab "
    "gets that change twice",
)
async def test_a_send_that_writes_then_fails_outside_its_task_sends_the_change_once(
    store: StateStore,
) -> None:
    app = make_app(store)

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapper(message: Message) -> None:
            await send(message)
            task = asyncio.current_task()  # e.g. metrics per task, after the write
            assert task is not None

        await app(scope, receive, wrapper)

    async with client_of(app, store) as c:
        s = await Stream(counted, stream_url((await c.get("/one")).text), c.cookies, {}).open()
        for n in (1, 2):
            await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
            assert (await s.next())["signals"] == {"liveGlobal": {"n": n}}
        await s.close()


async def test_a_write_the_hub_began_is_cancelled_with_its_stream_in_its_context(
    store: StateStore,
) -> None:
    app = make_app(store)
    cleanups: list[bool] = []

    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapper(message: Message) -> None:
            token = WRITING.set(True)  # e.g. a tracing span around each write
            try:
                await send(message)
            finally:
                try:
                    WRITING.reset(token)  # only in the context that set it
                    cleanups.append(True)
                except ValueError:
                    cleanups.append(False)

        await app(scope, receive, wrapper)

    async with client_of(app, store) as c:
        s = await Stream(marked, stream_url((await c.get("/one")).text), c.cookies, {}).open()
        (conn,) = store.hub.tabs.values()
        s.stall()
        await c.post("/_faststate/LiveGlobal/bump", headers=DS, content=b"{}")
        await s.blocked.wait()  # the hub's write waits; its task has not taken it over yet
        assert conn.task is not None and conn.handoff is not None
        conn.task.cancel()  # e.g. a server that cancels its requests when it stops
        assert s.task is not None
        with pytest.raises(asyncio.CancelledError):
            await s.task
        # the write got the cancellation at once, in its context, as an awaited write does
        # (not later, from the garbage collector, in whatever context it runs)
        assert cleanups == [True, True]  # the response's start, and the cancelled write
        assert store.hub.tabs == {}
