"""Backends side by side: event throughput with memory, sqlite and redis (ratio to memory),
cross-worker delivery latency with two workers on Redis (beside one worker on memory), and
Redis round trips per event.

Redis runs as a private redis-server on a free port without persistence (what is measured is
faststate_mw's cost, not the disk's); SQLite uses a file in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.servers import RedisServer, Uvicorn, running
from tests.sse import stream_url

from .client import cookie_header, request
from .roundtrip import EVENT_PATH, _env_float
from .soak import save
from .wrk import run_wrk

APP = "bench.backend_app:app"
LATENCY_SAMPLES = 200


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A private redis-server without persistence (tests.servers.RedisServer)."""
    server = RedisServer(workdir, durable=False).start()
    try:
        yield server.url
    finally:
        server.stop()


def servers(backend: str, count: int = 1) -> contextlib.AbstractContextManager[list[Uvicorn]]:
    """``count`` workers of the bench app, storing states in ``backend``."""
    return running(*[APP] * count, env={"FS_BACKEND": backend})


#: what faststate_mw's Redis backend sends: a script run, a read, a pipelined write (one
#: round trip each). Commands a script runs inside Redis show in commandstats too, so they are
#: not what is counted.
_ROUND_TRIP_COMMANDS = ("evalsha", "eval", "hmget", "exec")


def redis_calls(url: str) -> int:
    """Round trips clients have made so far, from Redis's own INFO commandstats."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return sum(calls.get(name, 0) for name in _ROUND_TRIP_COMMANDS)


def throughput(server: Uvicorn, seconds: float, conns: int) -> tuple[float, int]:
    page = request("GET", server.url + "/")
    cookie = cookie_header(page)
    before = int(page.body)
    url = server.url + EVENT_PATH
    run_wrk(url, seconds=1, connections=conns, script_args=(cookie,))
    result = run_wrk(url, seconds=seconds, connections=conns, script_args=(cookie,))
    for problem in result.problems:
        print(f"  WARNING {server.app}: {problem}")
    after = int(request("GET", server.url + "/", headers={"Cookie": cookie}).body)
    if after - before < result.requests:  # an error reply in disguise would not count up
        print(
            f"  WARNING {server.app}: the counter rose by {after - before}, fewer than the "
            f"{result.requests} requests wrk counted"
        )
    return result.requests_per_sec, result.requests


async def _stream_latency(watch: Uvicorn, writer: Uvicorn, samples: int) -> list[float]:
    """Open one live stream on ``watch``, change the GLOBAL state on ``writer`` ``samples``
    times, and time each change until the stream carries it."""
    page = request("GET", watch.url + "/live")
    start_n = int(re.search(rb'n(?:"|&quot;):(\d+)', page.body).group(1))  # type: ignore[union-attr]
    path = stream_url(page.body)
    cookie = cookie_header(page)
    reader, out = await asyncio.open_connection("127.0.0.1", watch.port)
    out.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        f"Datastar-Request: true\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    await out.drain()
    await asyncio.sleep(0.5)  # let the worker subscribe the key (not measured)
    post_reader, post_out = await asyncio.open_connection("127.0.0.1", writer.port)
    bump = (
        b"POST /_faststate/Shared/bump HTTP/1.1\r\nHost: 127.0.0.1\r\nDatastar-Request: true\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    times: list[float] = []
    buffer = b""
    seen = start_n
    for i in range(samples):
        expected = start_n + i + 1
        start = time.perf_counter()
        post_out.write(bump)
        await post_out.drain()
        while seen < expected:
            buffer += await asyncio.wait_for(reader.read(65536), 10)
            values = [int(v) for v in re.findall(rb'"n":(\d+)', buffer)]
            if values:
                seen = max(seen, *values)
                buffer = b""
        times.append(time.perf_counter() - start)
        # read the POST's reply off its connection before the next one
        head = await post_reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        await post_reader.readexactly(length)
        if i == 0:
            times.clear()  # the first one pays for warm-up
    out.close()
    post_out.close()
    return times


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run() -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        print(line)
        lines.append(line.strip("\n"))

    seconds = _env_float("BENCH_SECONDS", 5)
    conns = int(_env_float("BENCH_CONNECTIONS", 16))
    out(f"\n== backends: event throughput over loopback (wrk -t1 -c{conns}, {seconds:g}s) ==")
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        rates: dict[str, float] = {}
        for name, url in (
            ("memory", "memory://"),
            ("sqlite", f"sqlite:///{tmp}/bench.db"),
            ("redis", redis_url),
        ):
            with servers(url) as (server,):
                rate, _requests = throughput(server, seconds, conns)
                rates[name] = rate
                out(
                    f"  events/s  {name:<7} {rate:>8,.0f}   time/event vs memory "
                    f"{rates['memory'] / rate:5.2f}x"
                )
        with servers(redis_url) as (server,):
            page = request("GET", server.url + "/")
            cookie = cookie_header(page)
            headers = {"Datastar-Request": "true", "Content-Type": "application/json"}
            url = server.url + EVENT_PATH
            request("POST", url, headers={**headers, "Cookie": cookie}, body=b"{}")  # warm key
            before = redis_calls(redis_url)
            for _ in range(100):
                request("POST", url, headers={**headers, "Cookie": cookie}, body=b"{}")
            per_event = (redis_calls(redis_url) - before) / 100
            verdict = "PASS" if per_event <= 2 else "MISS"
            out(
                f"  Redis round trips per plain event on a warm key: {per_event:.2f}"
                f" (target <= 2)  {verdict}"
            )
        out("\n== backends: delivery latency of one change to a live stream ==")
        with servers("memory://") as (single,):
            base = asyncio.run(_stream_latency(single, single, LATENCY_SAMPLES))
        with servers(redis_url, 2) as (worker_a, worker_b):
            cross = asyncio.run(_stream_latency(worker_a, worker_b, LATENCY_SAMPLES))
        bm, bp = statistics.median(base), _pct(base, 0.99)
        cm, cp = statistics.median(cross), _pct(cross, 0.99)
        ms = 1000
        out(f"  one worker, memory (baseline)   median {bm * ms:6.2f} ms   p99 {bp * ms:6.2f} ms")
        out(
            f"  worker B -> tab on worker A     median {cm * ms:6.2f} ms   p99 {cp * ms:6.2f} ms"
            f"   ratio {cm / bm:.2f}x"
        )
    figures = {
        "connections": conns,
        "seconds": seconds,
        "events_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "redis_round_trips_per_event": per_event,
        "delivery_ms": {
            "memory_one_worker": {"median": round(bm * ms, 3), "p99": round(bp * ms, 3)},
            "redis_cross_worker": {"median": round(cm * ms, 3), "p99": round(cp * ms, 3)},
        },
    }
    save("backends", figures, lines)
