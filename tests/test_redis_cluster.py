"""Scale-out over a real Redis Cluster: three masters with a replica each, on free loopback
ports, and real uvicorn workers using ``redis+cluster://``."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from faststate_mw.backends.redis import CONTROL
from faststate_mw.backends.redis_cluster import RedisClusterBackend
from tests.conftest import DS
from tests.servers import RedisCluster, Uvicorn, running
from tests.sse import stream_url
from tests.test_scaleout import APP, LiveStream, browser, count_on


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    started = RedisCluster(tmp_path).start()
    yield started
    started.stop()


@pytest.fixture
def workers(cluster: RedisCluster) -> Iterator[list[Uvicorn]]:
    env = {"FS_BACKEND": cluster.url, "FS_SECRET": "cluster"}
    # running() stops the first worker too when the second fails to start (left running, it
    # would outlive the test run)
    with running(APP, APP, env=env, log=False) as started:
        yield started


def cli(cluster: RedisCluster, port: int, *args: str) -> str:
    out = subprocess.run(
        [cluster.cli, "-p", str(port), *args], capture_output=True, timeout=10, check=True
    )
    return out.stdout.decode().strip()


async def shard_subscribed(cluster: RedisCluster, key: str, timeout: float = 15.0) -> None:
    """Until a worker's sharded subscription to ``key``'s channel holds on its master."""
    backend = RedisClusterBackend(cluster.url)
    channel = backend.channel(key)
    async with asyncio.timeout(timeout):
        while True:
            port = cluster.master_of(channel)
            reply = cli(cluster, port, "pubsub", "shardnumsub", channel).split()
            if reply[-1] != "0":
                return
            await asyncio.sleep(0.05)


async def test_a_state_its_version_and_its_channel_share_one_slot() -> None:
    backend = RedisClusterBackend("redis+cluster://127.0.0.1:1")
    key = "record:Product:a%3Ab"
    assert backend.state_key(key) == "faststate:state:{record:Product:a%3Ab}"
    assert backend.channel(key) == "faststate:chan:{record:Product:a%3Ab}"
    assert backend.key_of_channel(backend.channel(key)) == key
    assert backend.publish_command == "SPUBLISH"


async def test_two_workers_lose_no_increment_and_states_spread_over_the_shards(
    cluster: RedisCluster, workers: list[Uvicorn]
) -> None:
    a, b = workers

    async def hammer(worker: Uvicorn, n: int) -> list[int]:
        async with browser(worker.url) as c:
            sem = asyncio.Semaphore(16)

            async def one() -> int:
                async with sem:
                    r = await c.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
                    return r.status_code

            return list(await asyncio.gather(*(one() for _ in range(n))))

    statuses = await asyncio.gather(hammer(a, 200), hammer(b, 200))
    assert statuses == [[200] * 200, [200] * 200]
    assert await count_on(a) == 400 and await count_on(b) == 400
    # states of many keys are spread over the shards
    backend = RedisClusterBackend(cluster.url)
    for i in range(30):
        assert await backend.commit(f"session:s{i}:Memo", 0, 1, "{}", 60.0, b"") is None
    await backend.close()
    masters = {cluster.master_of(backend.state_key(f"session:s{i}:Memo")) for i in range(30)}
    assert len(masters) == 3
    assert all(int(cli(cluster, p, "dbsize")) > 0 for p in masters)


async def test_a_tab_on_worker_a_sees_a_change_made_on_worker_b(
    cluster: RedisCluster, workers: list[Uvicorn]
) -> None:
    a, b = workers
    async with browser(a.url) as tab_client, browser(b.url) as other:
        html = (await tab_client.get("/")).text
        async with LiveStream(tab_client, stream_url(html)) as stream:
            await shard_subscribed(cluster, "global:Tally")  # only worker A streams it
            r = await other.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
            assert r.status_code == 200
            await stream.wait_for(lambda s: s.get("tally", {}).get("count") == 1)


async def test_the_failover_of_a_master_is_survived_with_a_resync(
    cluster: RedisCluster, workers: list[Uvicorn]
) -> None:
    a, b = workers
    api = {"datastar-request": "true", "content-type": "application/json"}
    async with browser(a.url) as tab_client, browser(b.url) as other:
        for _ in range(3):
            r = await other.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
            assert r.status_code == 200
        html = (await tab_client.get("/")).text
        async with LiveStream(tab_client, stream_url(html)) as stream:
            await stream.wait_for(lambda s: s.get("tally", {}).get("count") == 3)
            await shard_subscribed(cluster, "global:Tally")
            master = cluster.master_of("faststate:state:{global:Tally}")
            # the replica has every acknowledged write before its master dies
            assert cli(cluster, master, "wait", "1", "5000") == "1"
            cluster.kill(master)
            statuses = []
            for _ in range(400):  # fail fast (503) until the replica has taken over
                r = await other.post("/_faststate/Tally/increment", headers=api, content=b"{}")
                statuses.append(r.status_code)
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert statuses[-1] == 200 and set(statuses) <= {200, 503}
            # worker A resubscribes on the new master and its tab is resynced to the new value
            await stream.wait_for(lambda s: s.get("tally", {}).get("count") == 4, timeout=30)
        assert await count_on(a) == 4


async def test_a_message_between_workers_reaches_the_others_over_sharded_pubsub(
    cluster: RedisCluster,
) -> None:
    """What ``store.end_session`` and ``store.refresh_user`` send the other workers."""
    got: list[tuple[str, object]] = []
    a, b = RedisClusterBackend(cluster.url), RedisClusterBackend(cluster.url)
    a.on_control(lambda m: got.append(("a", m)))
    b.on_control(lambda m: got.append(("b", m)))
    await a.start(lambda *_: None, "worker-a")
    await b.start(lambda *_: None, "worker-b")
    try:
        channel = a.channel(CONTROL)
        port = cluster.master_of(channel)
        async with asyncio.timeout(15):
            while cli(cluster, port, "pubsub", "shardnumsub", channel).split()[-1] != "2":
                await asyncio.sleep(0.05)
            await a.publish_control({"end_session": "s1", "user": None})
            while not got:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # the sender's own copy comes back too: it is skipped
        assert got == [("b", {"end_session": "s1", "user": None})]
    finally:
        await a.close()
        await b.close()
