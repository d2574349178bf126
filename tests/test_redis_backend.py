"""The Redis backend's connection pool and error reporting (real redis-server, real uvicorn)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from faststate_mw import BackendUnavailable, ConfigurationError
from faststate_mw.backends.redis import DEFAULT_MAX_CONNECTIONS, RedisBackend
from tests.conftest import DS
from tests.servers import RedisServer, Uvicorn, redis_cli
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
