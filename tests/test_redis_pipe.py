"""The Redis backend's pipelined commit connection (``backends/_pipe.py``), on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from faststate_mw.backends._pipe import CommitPipe, _Incomplete, _parse, pack
from faststate_mw.backends.redis import RedisBackend
from tests.servers import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, durable=False).start()
    yield server
    server.stop()


def test_replies_parse_whole_and_report_cut_short() -> None:
    reply = b'*2\r\n$1\r\n5\r\n$7\r\n{"n":5}\r\n:1\r\n'
    value, pos = _parse(reply, 0)
    assert value == [b"5", b'{"n":5}']
    assert _parse(reply, pos) == (1, len(reply))
    for cut in range(1, len(reply) - 4):  # every prefix of the first reply is incomplete
        with pytest.raises(_Incomplete):
            _parse(reply[:cut], 0)
    assert pack(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


async def test_concurrent_commits_each_get_their_own_reply(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    assert backend._pipe is not None
    # 200 keys committed at once on one pipelined connection: each reply reaches its caller
    results = await asyncio.gather(
        *(backend.commit(f"global:K{i}", 0, 1, f'{{"i":{i}}}', None, b"") for i in range(200))
    )
    assert results == [None] * 200
    stored = [await backend.load(f"global:K{i}") for i in range(200)]
    assert [s.data for s in stored if s is not None] == [f'{{"i":{i}}}' for i in range(200)]
    # the same version raced by 50 commits: one wins, every other one sees what it stored
    racing = await asyncio.gather(
        *(backend.commit("global:Race", 0, 1, f'{{"w":{i}}}', None, b"") for i in range(50))
    )
    winners = [i for i, r in enumerate(racing) if r is None]
    assert len(winners) == 1
    assert {(r.version, r.data) for r in racing if r is not None} == {(1, f'{{"w":{winners[0]}}}')}
    await backend.close()


async def test_a_flushed_script_cache_is_refilled(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    assert await backend.commit("global:T", 0, 1, '{"n":1}', None, b"") is None
    with redis.Redis.from_url(redis_server.url) as admin:
        admin.script_flush()  # e.g. a restarted server
    assert await backend.commit("global:T", 1, 2, '{"n":2}', None, b"") is None
    stored = await backend.load("global:T")
    assert stored is not None and (stored.version, stored.data) == (2, '{"n":2}')
    await backend.close()


async def test_a_restarted_server_is_reconnected(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url)
    assert await backend.commit("global:T", 0, 1, '{"n":1}', None, b"") is None
    redis_server.stop()
    redis_server.start()  # not durable: the state is gone, version 0 again
    # the pooled pipe connection is dead; the commit goes through on a new one, no 503
    assert await backend.commit("global:T", 0, 1, '{"n":1}', None, b"") is None
    await backend.close()


def test_only_plain_urls_get_a_pipe() -> None:
    assert CommitPipe.from_url("redis://127.0.0.1:1/3", 1.0) is not None
    assert CommitPipe.from_url("rediss://127.0.0.1:1/0", 1.0) is None
    assert CommitPipe.from_url("unix:///tmp/redis.sock", 1.0) is None


async def _server_answering(count: int) -> tuple[asyncio.Server, int]:
    """A stand-in for a stalled Redis on loopback: it answers the first ``count`` commands
    (``+OK``) and then nothing."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        while data := await reader.read(65536):
            for _ in range(data.count(b"*")):  # our commands: one array each, no '*' inside
                if answered < count:
                    answered += 1
                    writer.write(b"+OK\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_command_unanswered_in_time_fails_the_connection() -> None:
    server, port = await _server_answering(2)
    pipe = CommitPipe("127.0.0.1", port, timeout=0.05)
    try:
        assert await pipe.call(b"PING") == b"OK"
        assert await pipe.call(b"PING") == b"OK"  # answered: its deadline passes harmlessly
        # the third is never answered: it fails once its own deadline passes, not before
        # its caller waited (the earlier commands' deadlines were no reason to fail)
        late = asyncio.ensure_future(pipe.call(b"PING"))
        with pytest.raises(ConnectionError, match="did not answer in time"):
            await asyncio.wait_for(late, 10.0)
    finally:
        pipe.close()
        server.close()
        await server.wait_closed()


async def test_a_command_its_caller_gave_up_on_does_not_fail_the_connection() -> None:
    server, port = await _server_answering(0)
    pipe = CommitPipe("127.0.0.1", port, timeout=0.05)
    try:
        with pytest.raises(TimeoutError):  # the caller stops waiting first
            await asyncio.wait_for(pipe.call(b"PING"), 0.01)
        protocol = pipe._protocol
        assert protocol is not None
        # its deadline passes (the loop runs timers in order: the connection's comes first)
        # and nobody waits for its reply, so the connection stays up
        passed = asyncio.Event()
        asyncio.get_running_loop().call_at(protocol._armed_at + 0.01, passed.set)
        await passed.wait()
        assert protocol._timer is None and not protocol.lost
    finally:
        pipe.close()
        server.close()
        await server.wait_closed()
