"""Scale-out with Redis: real redis-server and real uvicorn workers over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import DS
from tests.servers import RedisServer, Uvicorn, running
from tests.sse import SSEReader, stream_url

APP = "tests.apps.shared_app:app"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[list[Uvicorn]]:
    env = {"FS_BACKEND": redis_server.url, "FS_SECRET": "scale"}
    # running() stops the first worker too when the second fails to start (left running, it
    # would outlive the test run)
    with running(APP, APP, env=env, log=False) as started:
        yield started


class LiveStream:
    """A tab's live stream over real HTTP, read in the background."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveStream:
        ready = asyncio.Event()

        async def run() -> None:
            headers = {"datastar-request": "true", "accept": "text/event-stream"}
            async with self.client.stream("GET", self.url, headers=headers, timeout=None) as r:
                assert r.status_code == 200
                ready.set()
                reader = SSEReader()
                async for chunk in r.aiter_bytes():
                    for event in reader.feed(chunk):
                        if event["event"]:
                            self.events.put_nowait(event)

        self.task = asyncio.ensure_future(run())
        await asyncio.wait_for(ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        async def look() -> dict[str, Any]:
            while True:
                ev = await self.events.get()
                if "signals" in ev and predicate(ev["signals"]):
                    return ev

        return await asyncio.wait_for(look(), timeout)


@contextlib.asynccontextmanager
async def browser(base: str) -> AsyncIterator[httpx.AsyncClient]:
    # idle connections are dropped after 1 s, before uvicorn closes them (5 s): a request on a
    # connection the server is closing fails with ReadError, and a POST is never retried
    limits = httpx.Limits(max_connections=64, keepalive_expiry=1.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        yield client


async def subscribed(server: RedisServer, key: str, timeout: float = 10.0) -> None:
    """Wait until some worker's subscription to ``key``'s change channel has taken hold in
    Redis itself (not merely been asked for)."""
    client = aioredis.from_url(server.url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                ((_, count),) = await client.pubsub_numsub(f"faststate:chan:{key}")
                if count:
                    return
                await asyncio.sleep(0.01)
    finally:
        await client.aclose()


async def count_on(worker: Uvicorn) -> int:
    async with browser(worker.url) as c:
        return int((await c.get("/values")).json()["count"])


@pytest.mark.parametrize("event_name", ["increment", "slow_increment"])
async def test_two_workers_500_concurrent_increments_each_lose_nothing(
    workers: list[Uvicorn], event_name: str
) -> None:
    a, b = workers

    async def hammer(worker: Uvicorn, n: int) -> list[int]:
        async with browser(worker.url) as c:
            sem = asyncio.Semaphore(32)

            async def one() -> int:
                async with sem:
                    r = await c.post(f"/_faststate/Tally/{event_name}", headers=DS, content=b"{}")
                    return r.status_code

            return list(await asyncio.gather(*(one() for _ in range(n))))

    statuses = await asyncio.gather(hammer(a, 500), hammer(b, 500))
    assert statuses[0] == [200] * 500 and statuses[1] == [200] * 500
    assert await count_on(a) == 1000
    assert await count_on(b) == 1000


async def test_a_tab_on_worker_a_sees_a_change_made_on_worker_b(
    workers: list[Uvicorn], redis_server: RedisServer
) -> None:
    a, b = workers
    async with browser(a.url) as tab_client, browser(b.url) as other:
        html = (await tab_client.get("/")).text
        async with LiveStream(tab_client, stream_url(html)) as stream:
            await subscribed(redis_server, "global:Tally")  # only worker A streams it
            r = await other.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
            assert r.status_code == 200
            ev = await stream.wait_for(lambda s: s.get("tally", {}).get("count") == 1)
            assert ev["id"]


async def test_redis_outage_fails_fast_and_recovers_with_resync(
    workers: list[Uvicorn], redis_server: RedisServer
) -> None:
    a, b = workers
    async with browser(a.url) as tab_client, browser(b.url) as other:
        html = (await tab_client.get("/")).text
        for _ in range(3):
            assert (
                await other.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
            ).status_code == 200
        async with LiveStream(tab_client, stream_url(html)) as stream:
            await stream.wait_for(lambda s: s.get("tally", {}).get("count") == 3)
            redis_server.stop()
            r = await other.post(
                "/_faststate/Tally/increment",
                headers={"datastar-request": "true", "content-type": "application/json"},
                content=b"{}",
            )
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "backend_unavailable"
            assert (await other.get("/values")).status_code == 503
            redis_server.start()
            # workers reconnect by themselves; the write acknowledged before the outage is there
            for _ in range(200):
                r = await other.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 200
            # the tab on worker A is resynced after the reconnect and then sees the new value
            await stream.wait_for(lambda s: s.get("tally", {}).get("count") == 4, timeout=15)
        assert await count_on(a) == 4


async def test_all_workers_killed_hard_lose_no_persisted_state(
    workers: list[Uvicorn],
) -> None:
    a, b = workers
    async with browser(a.url) as c:
        await c.get("/")
        for _ in range(5):
            assert (
                await c.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
            ).status_code == 200
        r = await c.post("/_faststate/Memo/set_text", headers=DS, json={"memo": {"text": "hi"}})
        assert r.status_code == 200
        a.kill()
        b.kill()
        a.start()
        assert (await c.get("/values")).json() == {"count": 5, "text": "hi"}


async def test_redis_round_trips_per_event_on_a_warm_key(workers: list[Uvicorn]) -> None:
    a, _ = workers
    async with browser(a.url) as c:
        await c.get("/")
        await c.post("/_faststate/Tally/increment", headers=DS, content=b"{}")  # warm the key
        before = (await c.get("/stats")).json()["round_trips"]
        for _ in range(20):
            await c.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
        after = (await c.get("/stats")).json()["round_trips"]
        # /stats itself costs nothing; each event is one Lua round trip (compare, write, publish)
        assert (after - before) / 20 <= 2
