"""Start, stop, several apps in one process, and background code."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    NoRequestContextError,
    State,
    StateConfig,
    StateScope,
    StateStore,
    current_store,
    event,
)
from faststate_mw._signals import chain_exit_signals
from tests.conftest import DS
from tests.servers import Uvicorn, free_port
from tests.sse import patched_signals, stream_url


class LifeCounter(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1


class LifeRecord(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    n: int = 0


def page(request: Any) -> HTMLResponse:
    button = f'<button data-on:click="{LifeCounter.increment()}">+</button>'
    body = f"{LifeCounter.current().to_html()}{button}"
    return HTMLResponse(f"<html><body>{body}</body></html>")


def make_app(mw: list[Middleware]) -> Starlette:
    return Starlette(routes=[Route("/", page)], middleware=mw)


def fs(store: StateStore | None = None, **kw: Any) -> Middleware:
    if store is not None:
        kw["store"] = store
    return Middleware(FastStateMiddleware, secret_key="lifecycle-secret", **kw)


def test_two_apps_share_nothing() -> None:
    one, two = StateStore(), StateStore()
    a = TestClient(make_app([fs(one, prefix="/_a")]))
    b = TestClient(make_app([fs(two, prefix="/_b")]))
    assert "/_a/LifeCounter/increment" in a.get("/").text
    assert "/_b/LifeCounter/increment" in b.get("/").text
    r = a.post("/_a/LifeCounter/increment", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"lifeCounter": {"count": 1}}]
    assert one.get("global:LifeCounter").count == 1
    assert two.get("global:LifeCounter").count == 0
    assert "/_b/stream?t=" in b.get("/").text
    # each app serves only its own prefix: /_a is just an unknown page for app b
    assert b.post("/_a/LifeCounter/increment", headers=DS, content=b"{}").status_code == 404
    assert two.get("global:LifeCounter").count == 0


def test_lifespan_starts_and_closes_the_store(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{db}")
    with TestClient(make_app([fs(store)])) as client:
        assert current_store() is store  # started by the lifespan, before any request
        client.get("/")
        client.post("/_faststate/LifeCounter/increment", headers=DS, content=b"{}")
        # not auto_persist: SQLite holds it only after eviction or a clean stop
        assert store.get("global:LifeCounter").count == 1
    with pytest.raises(NoRequestContextError):
        current_store()  # closed at shutdown
    again = StateStore(f"sqlite:///{db}")
    with TestClient(make_app([fs(again)])) as client:
        client.get("/")
        assert again.get("global:LifeCounter").count == 1


async def test_unreachable_redis_fails_at_startup() -> None:
    pytest.importorskip("redis")
    app = make_app([])
    mw = FastStateMiddleware(app, secret_key="s", backend=f"redis://127.0.0.1:{free_port()}/0")
    sent: list[dict[str, Any]] = []
    messages = [{"type": "lifespan.startup"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await mw({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "backend is unavailable" in sent[0]["message"]


def test_missing_datastar_file_is_a_clear_error(tmp_path: Path) -> None:
    app = make_app([fs(datastar_js=tmp_path / "missing.js")])
    with pytest.raises(Exception, match="datastar_js file not found"), TestClient(app):
        pass


def test_without_lifespan_the_store_starts_on_first_request() -> None:
    store = StateStore()
    client = TestClient(make_app([fs(store)]))
    assert client.get("/").status_code == 200
    assert store.get("global:LifeCounter") is not None


def test_background_code_finds_the_active_store() -> None:
    one, two = StateStore(), StateStore()
    with one.activate():
        assert current_store() is one
        LifeRecord.for_record(7).n = 5
    with two.activate():
        assert LifeRecord.for_record(7).n == 0
    assert one.get("record:LifeRecord:7").n == 5


def test_a_request_uses_its_apps_store_unless_it_activates_another() -> None:
    """An activation around the app (a test, a script) does not pick a request's store; one
    made inside the request does, for that block only."""
    mine, outer, inner = StateStore(), StateStore(), StateStore()
    seen: list[StateStore] = []

    def where(request: Any) -> HTMLResponse:
        seen.append(current_store())
        with inner.activate():
            seen.append(current_store())
        seen.append(current_store())
        return HTMLResponse("ok")

    app = Starlette(routes=[Route("/where", where)], middleware=[fs(mine)])
    with outer.activate(), TestClient(app) as client:
        assert client.get("/where").text == "ok"
        assert current_store() is outer
    assert seen == [mine, inner, mine]


async def test_background_code_finds_the_single_running_store() -> None:
    store = StateStore()
    await store.start()
    try:
        assert current_store() is store
        item = await LifeRecord.resolve(3)
        assert await item.update(n=4) == ["n"]
        assert store.get("record:LifeRecord:3").n == 4
        other = StateStore()
        await other.start()
        try:
            with pytest.raises(NoRequestContextError, match="several"):
                current_store()
        finally:
            await other.close()
    finally:
        await store.close()
    with pytest.raises(NoRequestContextError):
        current_store()


# -- stopping a real server while tabs watch -----------------------------------------------------
STOP_APP = "tests.apps.stop_app:app"
#: what the test allows uvicorn to take to stop (without the stop signal hook it never does:
#: it waits for the open stream, and this test runs it without --timeout-graceful-shutdown)
STOP_BOUND = 10.0


async def test_sigterm_ends_live_streams_so_uvicorn_stops_and_saves(tmp_path: Path) -> None:
    env = {"FS_BACKEND": f"sqlite:///{tmp_path}/state.db"}
    server = Uvicorn(STOP_APP, env).start()
    assert server.proc is not None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=STOP_BOUND) as client:
            url = stream_url((await client.get("/")).text)
            headers = {"datastar-request": "true", "accept": "text/event-stream"}
            async with client.stream("GET", url, headers=headers) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                r = await client.post("/_faststate/Board/increment", headers=DS, content=b"{}")
                assert r.status_code == 200
                async for line in lines:  # the tab sees the change: the stream is live
                    if line.startswith("data: signals") and '"count":1' in line:
                        break
                server.proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                code = await asyncio.to_thread(server.proc.wait, STOP_BOUND)
                # uvicorn re-raises the signal once it has stopped (a default handler: -15)
                assert code in (0, -signal.SIGTERM)
                assert time.monotonic() - started < STOP_BOUND
                # the server ended the stream (it does not send a last chunk: the tab
                # sees an error and retries against the next server)
                rest: list[str] = []
                with contextlib.suppress(httpx.RemoteProtocolError):
                    rest += [line async for line in lines]
                assert not any('"count"' in line for line in rest)
        server.start()  # again, on the same SQLite file: the change was saved at the stop
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/values")).json() == {"count": 1}
    finally:
        server.stop()


def test_stop_signals_run_the_callback_then_the_previous_handler() -> None:
    calls: list[str] = []

    def previous(signum: int, frame: object) -> None:
        calls.append(f"previous {signal.Signals(signum).name}")

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig in saved:
            signal.signal(sig, previous)
        restore = chain_exit_signals(lambda: calls.append("callback"))
        assert signal.getsignal(signal.SIGTERM) is not previous
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
        assert calls == ["callback", "previous SIGTERM", "callback", "previous SIGINT"]
        restore()
        assert all(signal.getsignal(sig) is previous for sig in saved)
        signal.raise_signal(signal.SIGTERM)
        assert calls[-1] == "previous SIGTERM" and calls.count("callback") == 2
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
