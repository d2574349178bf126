"""Backends side by side: event throughput with memory, sqlite and redis (ratio to memory),
cross-worker delivery latency with two workers on Redis (beside one worker on memory), and
Redis round trips per event.

Redis runs as a private redis-server on a free port without persistence (what is measured is
faststate_mw's cost, not the disk's); SQLite uses a file in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tests.servers import RedisServer, Uvicorn, running
from tests.sse import stream_url

from .client import cookie_header, request
from .roundtrip import EVENT_PATH, _env_float
from .soak import save
from .wrk import WrkResult, run_wrk

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


def _redis_info(url: str, section: str) -> dict[str, Any]:
    """One section of the server's INFO, over a connection of its own."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info(section)
    finally:
        client.close()
    return info


def redis_calls(url: str) -> int:
    """Round trips clients have made so far, from Redis's own INFO commandstats."""
    stats = _redis_info(url, "commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return sum(calls.get(name, 0) for name in _ROUND_TRIP_COMMANDS)


def redis_cpu_seconds(url: str) -> float:
    """User + system CPU seconds the redis-server process has used so far (INFO cpu)."""
    cpu = _redis_info(url, "cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


CORES = os.cpu_count() or 1


def machine_idle_seconds() -> float:
    """CPU seconds all cores of the machine have been idle so far: idle, iowait and steal time
    of ``/proc/stat``. A tickless kernel measures idle time exactly but busy time (user,
    system, softirq...) by sampling timer ticks, which misses short bursts: under the workers'
    load the fields added up to only 1.90 of 2 cores, and the busy ones came out below the CPU
    time of the processes alone. So busy time is taken as cores x wall time - idle time."""
    with open("/proc/stat") as f:
        # cpu  user nice system idle iowait irq softirq steal guest guest_nice
        ticks = [int(v) for v in f.readline().split()[1:9]]
    _user, _nice, _system, idle, iowait, _irq, _softirq, steal = ticks
    return (idle + iowait + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """Where the cores went during timed loads: CPU seconds of the uvicorn workers, of the wrk
    processes and of the redis-server, and the whole machine's busy time, over ``wall`` seconds
    in which ``events`` requests were served. Runs add up (``+``)."""

    wall: float = 0.0
    events: int = 0
    workers: float = 0.0
    wrk: float = 0.0
    redis: float = 0.0
    machine: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def other(self) -> float:
        """Busy time nobody measured here owns: the bench's driver, the kernel's loopback work
        not charged to a process, other programs on the machine."""
        return self.machine - self.workers - self.wrk - self.redis

    @property
    def own(self) -> float:
        """CPU seconds of the processes the load needs: workers, wrk, redis."""
        return self.workers + self.wrk + self.redis

    def cores(self, seconds: float) -> float:
        return seconds / self.wall if self.wall else float("nan")

    def per_event(self, seconds: float) -> float:
        """µs per event."""
        return seconds / self.events * 1e6 if self.events else float("nan")

    def summary(self) -> dict[str, float]:
        parts = ("machine", "workers", "wrk", "redis", "other")
        return {
            "wall_s": round(self.wall, 2),
            "events": self.events,
            **{f"cores_{p}": round(self.cores(getattr(self, p)), 3) for p in parts},
            **{f"us_per_event_{p}": round(self.per_event(getattr(self, p)), 1) for p in parts},
        }


def _session(server: Uvicorn) -> tuple[str, int]:
    page = request("GET", server.url + "/")
    return cookie_header(page), int(page.body)


def throughput(
    server: Uvicorn, seconds: float, conns: int, path: str = EVENT_PATH
) -> tuple[float, float | None]:
    """Events/s of one wrk against ``server`` and the server's CPU µs per event."""
    rates, _usage = load(
        [server], seconds, conns, path, warm=True, check_counter=path == EVENT_PATH
    )
    return rates[0]


def load(
    servers: list[Uvicorn],
    seconds: float,
    conns: int,
    path: str = EVENT_PATH,
    *,
    warm: bool = False,
    check_counter: bool = True,
    redis_url: str | None = None,
) -> tuple[list[tuple[float, float | None]], Usage]:
    """One wrk per server, all at once (separate load generators, one session each): the
    events/s and the server CPU µs per event of each, and where the machine's cores went over
    the timed run (the redis-server's share with ``redis_url``)."""
    sessions = [_session(server) for server in servers]
    urls = [server.url + path for server in servers]

    def one(i: int, secs: float) -> WrkResult:
        return run_wrk(urls[i], seconds=secs, connections=conns, script_args=(sessions[i][0],))

    with ThreadPoolExecutor(len(servers)) as pool:
        if warm:
            list(pool.map(one, range(len(servers)), [1] * len(servers)))
        redis_before = redis_cpu_seconds(redis_url) if redis_url else 0.0
        machine_start, idle_before = time.monotonic(), machine_idle_seconds()
        cpu_before = [s.cpu_seconds() for s in servers]
        start = time.monotonic()
        results = list(pool.map(one, range(len(servers)), [seconds] * len(servers)))
        wall = time.monotonic() - start
        cpu_after = [s.cpu_seconds() for s in servers]
        idle = machine_idle_seconds() - idle_before
        machine = CORES * (time.monotonic() - machine_start) - idle
        redis_cpu = redis_cpu_seconds(redis_url) - redis_before if redis_url else 0.0
    usage = Usage(
        wall=wall,
        events=sum(r.requests for r in results),
        workers=sum(
            (c1 or 0.0) - (c0 or 0.0) for c0, c1 in zip(cpu_before, cpu_after, strict=True)
        ),
        wrk=sum(r.cpu_seconds or 0.0 for r in results),
        redis=redis_cpu,
        machine=machine,
    )
    out = []
    for server, (cookie, before), result, c0, c1 in zip(
        servers, sessions, results, cpu_before, cpu_after, strict=True
    ):
        for problem in result.problems:
            print(f"  WARNING {server.app}: {problem}")
        if check_counter:
            after = int(request("GET", server.url + "/", headers={"Cookie": cookie}).body)
            if after - before < result.requests:  # an error reply in disguise would not count
                print(
                    f"  WARNING {server.app}: the counter rose by {after - before}, fewer than"
                    f" the {result.requests} requests wrk counted"
                )
        cpu = None
        if c0 is not None and c1 is not None and result.requests:
            cpu = (c1 - c0) / result.requests * 1e6
        out.append((result.requests_per_sec, cpu))
    return out, usage


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


def _med(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else float("nan")


def run() -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        print(line)
        lines.append(line.strip("\n"))

    seconds = _env_float("BENCH_SECONDS", 5)
    conns = int(_env_float("BENCH_CONNECTIONS", 16))
    rounds = int(_env_float("BENCH_ROUNDS", 3))
    out(
        f"\n== backends: event throughput over loopback (wrk -t1 -c{conns}, {seconds:g}s,"
        f" {rounds} interleaved rounds, medians) =="
    )
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        names = {"memory": "memory://", "sqlite": f"sqlite:///{tmp}/bench.db", "redis": redis_url}
        rates: dict[str, list[float]] = {n: [] for n in names}
        cpus: dict[str, list[float | None]] = {n: [] for n in names}
        with contextlib.ExitStack() as stack:
            started = [stack.enter_context(servers(url))[0] for url in names.values()]
            for _round in range(rounds):
                for name, server in zip(names, started, strict=True):
                    rate, cpu = throughput(server, seconds, conns)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
        base_rate, base_cpu = _med(list(rates["memory"])), _med(cpus["memory"])
        for name in names:
            rate, cpu = _med(list(rates[name])), _med(cpus[name])
            each = " ".join(f"{c:.0f}" for c in cpus[name] if c is not None)
            out(
                f"  {name:<7} events/s {rate:>8,.0f}   server CPU/event {cpu:6.1f} µs"
                f" ({each})   CPU vs memory {cpu / base_cpu:5.2f}x"
                f"   time/event vs memory {base_rate / rate:5.2f}x"
            )
        ratio = _med(cpus["redis"]) / base_cpu
        out(
            f"  Redis CPU per event {ratio:.2f}x memory's (target <= 1.5x)"
            f"  {'PASS' if ratio <= 1.5 else 'MISS'}"
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
        workers, workers_cores = _workers(redis_url, seconds, conns, rounds, out)
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
        "rounds": rounds,
        "events_per_s": {name: round(_med(list(v)), 1) for name, v in rates.items()},
        "cpu_us_per_event": {name: round(_med(v), 1) for name, v in cpus.items()},
        "redis_round_trips_per_event": per_event,
        "workers": workers,
        "workers_cores": workers_cores,
        "delivery_ms": {
            "memory_one_worker": {"median": round(bm * ms, 3), "p99": round(bp * ms, 3)},
            "redis_cross_worker": {"median": round(cm * ms, 3), "p99": round(cp * ms, 3)},
        },
    }
    save("backends", figures, lines)


SHARED_PATH = "/_faststate/Shared/bump"


def _workers(
    redis_url: str, seconds: float, conns: int, rounds: int, out: Callable[[str], None] = print
) -> tuple[dict[str, float], dict[str, dict[str, object]]]:
    """One process per worker on Redis, each behind its own wrk (load balancing belongs to the
    proxy, not to uvicorn --workers): sessions spread over 2 workers, and one hot GLOBAL key
    served by 2, each beside 1 worker in the same round.

    Returns the ratios (2 workers' events/s over 1's) and where the cores went: with everything
    on one machine, the workers share its cores with their wrk load generators and the
    redis-server, so 2 workers can reach at most ``CORES / x`` times 1 worker's events/s, ``x``
    being the cores 1 worker, its wrk and redis keep busy (at the same CPU per event)."""
    out(
        f"\n== backends: workers on Redis, one wrk -c{conns} per worker port "
        f"({rounds} interleaved rounds, medians) =="
    )
    ratios: dict[str, float] = {}
    cores: dict[str, dict[str, object]] = {}
    with servers(redis_url, 2) as (worker_a, worker_b):
        for label, path, check in (
            ("sessions spread", EVENT_PATH, True),
            ("one hot GLOBAL key", SHARED_PATH, False),
        ):
            one: list[float] = []
            two: list[float] = []
            cpu_one: list[float | None] = []
            cpu_two: list[float | None] = []
            usage_one, usage_two = Usage(), Usage()
            load([worker_a, worker_b], 1, conns, path, check_counter=False)  # warm both
            for _round in range(rounds):
                ((rate, cpu),), used = load(
                    [worker_a], seconds, conns, path, check_counter=check, redis_url=redis_url
                )
                one.append(rate)
                cpu_one.append(cpu)
                usage_one += used
                both, used = load(
                    [worker_a, worker_b], seconds, conns, path, check_counter=check,
                    redis_url=redis_url,
                )  # fmt: skip
                two.append(sum(r for r, _c in both))
                cpu_two.append(_med([c for _r, c in both]))
                usage_two += used
            r1, r2 = statistics.median(one), statistics.median(two)
            target = 1.8 if check else 1.0
            out(
                f"  {label:<19} 1 worker {r1:>8,.0f}/s ({_med(cpu_one):5.0f} µs CPU/event)"
                f"   2 workers {r2:>8,.0f}/s ({_med(cpu_two):5.0f} µs)"
                f"   {r2 / r1:4.2f}x (target >= {target}x)"
                f"  {'PASS' if r2 / r1 >= target else 'MISS'}"
            )
            out(f"    rounds: 1 worker {_ints(one)}; 2 workers {_ints(two)}")
            ratios[label] = round(r2 / r1, 3)
            for n, used in (("1 worker ", usage_one), ("2 workers", usage_two)):
                out(f"    cores busy of {CORES}, {n}: {_cores_line(used)}")
            # 1 worker's events at its CPU per event, on all the cores: the most 2 can reach
            ceiling = CORES / usage_one.cores(usage_one.own)
            out(
                f"    ceiling for 2 workers: {CORES} cores / {usage_one.cores(usage_one.own):.2f}"
                f" (1 worker + its wrk + redis) = {ceiling:.2f}x; measured {r2 / r1:.2f}x;"
                f" all processes' CPU/event {usage_one.per_event(usage_one.own):.0f} µs"
                f" -> {usage_two.per_event(usage_two.own):.0f} µs with 2 workers"
            )
            other = max(u.cores(u.other) for u in (usage_one, usage_two))
            if other > OTHER_LIMIT:
                out(
                    f"    WARNING other work kept up to {other:.2f} cores busy: the ratio and"
                    " the ceiling are disturbed by the machine's other load"
                )
            cores[label] = {
                "1_worker": usage_one.summary(),
                "2_workers": usage_two.summary(),
                "ceiling_2_workers": round(ceiling, 3),
                "ratio": round(r2 / r1, 3),
            }
    return ratios, cores


#: cores busy beyond the bench's processes (the driver, the kernel, other programs) above which
#: the workers' figures are disturbed; on a quiet machine it is 0.0 to 0.1
OTHER_LIMIT = 0.2


def _cores_line(used: Usage) -> str:
    """``1.71 = workers 0.95 + wrk 0.40 + redis 0.21 + other 0.15 (CPU/event µs: ...)``, summed
    over the rounds."""
    parts = {"workers": used.workers, "wrk": used.wrk, "redis": used.redis, "other": used.other}
    cores = " + ".join(f"{name} {used.cores(v):.2f}" for name, v in parts.items())
    per_event = ", ".join(f"{name} {used.per_event(v):.0f}" for name, v in parts.items())
    return f"{used.cores(used.machine):.2f} = {cores}   (µs CPU/event: {per_event})"


def run_workers() -> None:
    """Only the workers part: ``python -c "import bench.backends as b; b.run_workers()"``."""
    seconds = _env_float("BENCH_SECONDS", 5)
    conns = int(_env_float("BENCH_CONNECTIONS", 16))
    rounds = int(_env_float("BENCH_ROUNDS", 3))
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        _workers(redis_url, seconds, conns, rounds)


def _ints(values: list[float]) -> str:
    return " ".join(f"{v:,.0f}" for v in values)
