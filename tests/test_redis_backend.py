"""The Redis backend's connection pool and error reporting (real redis-server, real uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from starlette.applications import Starlette

from faststate_mw import (
    BackendUnavailable,
    ConfigurationError,
    FastStateMiddleware,
    Limits,
    StateStore,
)
from faststate_mw._config import meta_of
from faststate_mw.backends import Stored
from faststate_mw.backends.redis import DEFAULT_MAX_CONNECTIONS, RedisBackend
from tests.conftest import DS
from tests.servers import RedisServer, Uvicorn, redis_cli
from tests.test_changes import Hot, _outcome, _post, deadline_passed, time_passes
from tests.test_scaleout import APP


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, durable=False).start()
    yield server
    server.stop()


async def _request(port: int, method: str, path: str, body: bytes = b"") -> int:
    """One HTTP/1.1 request on a connection of its own; its status code. (A bare socket
    client: an HTTP client library's own pool would be what a burst of 2,000 measures.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
        "Datastar-Request: true\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    return int(reply.split(b" ", 2)[1])


async def test_a_burst_of_1000_page_loads_and_1000_events_gets_no_5xx(
    redis_server: RedisServer,
) -> None:
    worker = Uvicorn(APP, {"FS_BACKEND": redis_server.url, "FS_SECRET": "burst"}).start()
    try:
        pages = (_request(worker.port, "GET", "/values") for _ in range(1000))
        events = (
            _request(worker.port, "POST", "/_faststate/Tally/increment", b"{}") for _ in range(1000)
        )
        statuses = await asyncio.gather(*pages, *events)
        assert {s: statuses.count(s) for s in set(statuses)} == {200: 2000}
        async with httpx.AsyncClient(base_url=worker.url) as c:
            assert (await c.get("/values")).json()["count"] == 1000
    finally:
        worker.stop()


async def test_a_full_pool_waits_for_a_connection_instead_of_failing(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url, max_connections=2, pool_timeout=5.0)
    try:
        rows = await asyncio.gather(*(backend.load(f"k{i}") for i in range(50)))
        assert rows == [None] * 50
    finally:
        await backend.close()


async def test_every_backend_error_is_logged_and_names_no_host_to_clients(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(redis_server.url, timeout=0.5)
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="faststate_mw.redis"):
        with pytest.raises(BackendUnavailable) as err:
            await backend.load("global:Tally")
        with pytest.raises(BackendUnavailable):
            await backend.commit("global:Tally", 0, 1, "{}", None, b"")
    await backend.close()
    assert str(redis_server.port) not in err.value.message
    assert "127.0.0.1" not in err.value.message
    logged = [r for r in caplog.records if r.name == "faststate_mw.redis"]
    assert len(logged) == 2 and all("ConnectionError" in r.getMessage() for r in logged)
    assert backend.stats()["errors"] == 2


async def _clients_of(server: RedisServer) -> list[str]:
    """The clients connected to ``server`` (and their last command), the asking one left out."""
    admin = redis.asyncio.Redis(port=server.port)
    try:
        listed = await admin.client_list()
        me = await admin.client_id()
    finally:
        await admin.aclose()
    return [f"{c['addr']} (last: {c['cmd']})" for c in listed if int(c["id"]) != me]


async def test_closing_the_backend_closes_every_connection_it_opened(
    redis_server: RedisServer,
) -> None:
    # a store closed on shutdown or reload must not keep pooled connections open (each one a
    # client of Redis until the process exits, and a ResourceWarning when collected)
    backend = RedisBackend(redis_server.url, max_connections=4)
    await backend.start(lambda *_: None, "origin")
    backend.subscribe("global:Tally")
    assert await backend.commit("global:Tally", 0, 1, "{}", None, b"") is None
    await asyncio.gather(*(backend.load(f"global:K{i}") for i in range(20)))
    assert len(await _clients_of(redis_server)) >= 2  # pooled, piped, subscribed: all in use
    await backend.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10  # Redis sees each close once the FIN reaches it
    while (left := await _clients_of(redis_server)) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert left == []


def test_a_closed_backend_starts_again_in_a_new_event_loop(redis_server: RedisServer) -> None:
    # an app's lifespan closes its store on shutdown, and a server (or a test client) started
    # again runs it in a new loop: the pool must not keep what it bound to the old one (a
    # request that waited for a connection binds the pool's condition to its loop)
    backend = RedisBackend(redis_server.url, max_connections=2)

    async def serve(version: int) -> Stored | None:
        await backend.start(lambda *_: None, "origin")
        try:
            await asyncio.gather(*(backend.load(f"global:K{i}") for i in range(8)))
            return await backend.commit("global:Tally", version, version + 1, "{}", None, b"")
        finally:
            await backend.close()

    assert asyncio.run(serve(0)) is None
    assert asyncio.run(serve(1)) is None


class _SwallowsOneCancel(RedisBackend):
    """A listener whose read swallows the first cancel, as redis-py's pub/sub read can."""

    reading = False
    swallowed = 0

    async def _next_message(self, pubsub: Any) -> Any:
        self.reading = True
        try:
            return await super()._next_message(pubsub)
        except asyncio.CancelledError:
            if self.swallowed:
                raise
            self.swallowed += 1
            return None


async def test_closing_ends_a_listener_that_swallowed_a_cancel(redis_server: RedisServer) -> None:
    # a store closes its backend on shutdown: a close that waited for ever would hold it up
    backend = _SwallowsOneCancel(redis_server.url)
    await backend.start(lambda *_: None, "origin")
    listener = backend._task
    assert listener is not None
    while not backend.reading:
        await asyncio.sleep(0.01)
    closing = asyncio.ensure_future(backend.close())
    try:
        done, _ = await asyncio.wait({closing}, timeout=5)
        assert closing in done and listener.done()
        assert backend.swallowed == 1
    finally:
        closing.cancel()  # (left waiting, its cancel reaches the listener it awaits)


def test_pool_settings_are_checked() -> None:
    assert DEFAULT_MAX_CONNECTIONS > 100  # redis-py's own default failed bursts of 200 pages
    with pytest.raises(ConfigurationError):
        RedisBackend("redis://127.0.0.1:1/0", max_connections=0)
    with pytest.raises(ConfigurationError):
        RedisBackend("redis://127.0.0.1:1/0", pool_timeout=0)


def test_a_state_missing_from_redis_reruns_the_event_on_defaults(
    redis_server: RedisServer,
) -> None:
    worker = Uvicorn(APP, {"FS_BACKEND": redis_server.url, "FS_SECRET": "gone"}).start()
    try:
        with httpx.Client(base_url=worker.url) as client:
            for _ in range(3):
                r = client.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
                assert r.status_code == 200
            # the stored state is gone (it expired, or Redis lost its data) while the worker
            # still caches version 3
            cli = [redis_cli(), "-p", str(redis_server.port)]
            subprocess.run([*cli, "DEL", "faststate:state:global:Tally"], check=True)
            r = client.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
            assert r.status_code == 200  # not a StoredStateError
            assert client.get("/values").json()["count"] == 1  # a new state: defaults, then +1
            stored = subprocess.run(
                [*cli, "HGET", "faststate:state:global:Tally", "d"], check=True, capture_output=True
            )
            assert b'"count":1' in stored.stdout
    finally:
        worker.stop()


# -- a commit Redis holds (CLIENT PAUSE WRITE) when the request is cancelled -----------------------


@contextlib.asynccontextmanager
async def _writes_paused(server: RedisServer) -> AsyncIterator[None]:
    """Redis holds every write (the commit script too) until the block ends, then runs them."""
    admin = redis.asyncio.Redis(port=server.port)
    await admin.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
    try:
        yield
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()


async def _stored_hot(server: RedisServer) -> tuple[int, int]:
    """(version, count) of the Hot state as Redis has it."""
    admin = redis.asyncio.Redis(port=server.port)
    row = await admin.hgetall("faststate:state:global:Hot")
    await admin.aclose()
    return int(row[b"v"]), json.loads(row[b"d"])["count"]


def _hot_store(server: RedisServer) -> StateStore:
    # the backend's own timeout is long: only the event deadline runs out here
    return StateStore(backend=RedisBackend(server.url, timeout=60), limits=Limits(event_timeout=5))


async def test_an_event_whose_deadline_passes_while_redis_holds_its_commit_replies_with_it(
    redis_server: RedisServer,
) -> None:
    store = _hot_store(redis_server)
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="held", store=store)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert _outcome(await _post(client, "add", "w")) == "ok"
            inst = store.get("global:Hot")
            async with _writes_paused(redis_server):
                late = asyncio.ensure_future(_post(client, "add", "late"))
                while not meta_of(inst).locked():
                    await asyncio.sleep(0)
                time_passes(10)
                await deadline_passed(store)
            reply = await late
        assert _outcome(reply) == "ok"
        assert (meta_of(inst).version, inst.count) == await _stored_hot(redis_server) == (2, 2)
    finally:
        await store.close()


async def test_a_change_cancelled_while_redis_holds_its_commit_ends_as_redis_stored_it(
    redis_server: RedisServer,
) -> None:
    store = _hot_store(redis_server)
    await store.start()
    try:
        inst = await Hot.resolve(store=store)
        await inst.update(count=1)
        seen: list[tuple[int, int]] = []  # this worker's copy when the cancelled change ended
        async with _writes_paused(redis_server):
            change = asyncio.ensure_future(inst.update(count=7))
            change.add_done_callback(lambda _: seen.append((meta_of(inst).version, inst.count)))
            while not meta_of(inst).locked():
                await asyncio.sleep(0)
            change.cancel()  # e.g. the server shutting down
            await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await change  # the cancel goes on, once the change is finished here
        assert seen == [await _stored_hot(redis_server)] == [(2, 7)]
    finally:
        await store.close()
