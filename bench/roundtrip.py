"""Event round trips per second over loopback: faststate_mw against two hand-written baselines.

Three real uvicorn processes (one worker each) serve the same counter increment for ONE session:

- (a) faststate_mw: ``Counter.increment`` behind FastStateMiddleware;
- (b) the datastar-py idiom: ``read_signals`` + ``DatastarResponse(SSE.patch_signals(...))``;
- (c) the same bare endpoint replying with ``Response(sse_text, media_type="text/event-stream")``.

wrk drives each with Datastar's POST (``bench/post.lua``), after a short warm-up. Results are
compared as time per event (1 / throughput): a/b target <= 0.5, a/c target <= 1.3.
Environment: ``BENCH_SECONDS`` (default 5) per measurement, ``BENCH_WARMUP`` (default 1),
``BENCH_CONNECTIONS`` (default 16), ``BENCH_ROUNDS`` (default 2: the servers are measured in turn,
round after round, and each one's best round counts, which damps noise from other work on the
machine; only the first round has a warm-up).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tests.servers import Uvicorn, running
from tests.sse import patched_signals

from .client import HttpReply, cookie_header, request
from .wrk import WrkResult, run_wrk

EVENT_PATH = "/_faststate/Counter/increment?amount=1"
EVENT_HEADERS = {
    "Datastar-Request": "true",
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
}
EVENT_BODY = b'{"counter":{"count":0}}'

#: (key, label, uvicorn app)
SERVERS = [
    ("a", "faststate_mw", "bench.apps:app_a"),
    ("b", "datastar-py idiom", "bench.apps:app_b"),
    ("c", "bare text/event-stream", "bench.apps:app_c"),
]
#: (numerator, denominator, target): time per event of the numerator over the denominator's
TARGETS = [("a", "b", 0.5), ("a", "c", 1.3)]


def _env_float(name: str, default: float, minimum: float = 1) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum:g}")
    return value


@dataclass
class Measured:
    key: str
    label: str
    result: WrkResult
    warnings: list[str]
    #: requests/sec of every round, in order
    rounds: list[float]
    #: server CPU seconds per event (user + system), best round; None where unknown
    cpu_per_event: float | None = None


def _post_event(server: Uvicorn, cookie: str) -> HttpReply:
    headers = {**EVENT_HEADERS, "Cookie": cookie}
    return request("POST", server.url + EVENT_PATH, headers=headers, body=EVENT_BODY)


def _session(server: Uvicorn) -> tuple[str, int]:
    """Open a session with ``GET /``: its Cookie header and its count."""
    page = request("GET", server.url + "/")
    if page.status != 200:
        raise RuntimeError(f"GET / on {server.app} answered {page.status}: {page.body[:200]!r}")
    cookie = cookie_header(page)
    if not cookie:
        raise RuntimeError(f"GET / on {server.app} set no session cookie")
    return cookie, int(page.body)


def _count(server: Uvicorn, cookie: str) -> int:
    page = request("GET", server.url + "/", headers={"Cookie": cookie})
    if page.set_cookies:
        raise RuntimeError(f"{server.app} minted a new session: the cookie was not accepted")
    return int(page.body)


def _check_event(server: Uvicorn, cookie: str, expected: int) -> None:
    """One event by hand: a 200 SSE reply patching the count, not an error in disguise."""
    reply = _post_event(server, cookie)
    problems = []
    if reply.status != 200:
        problems.append(f"status {reply.status}")
    if not reply.headers.get("content-type", "").startswith("text/event-stream"):
        problems.append(f"content-type {reply.headers.get('content-type')!r}")
    if "x-faststate-error" in reply.headers:
        problems.append(f"x-faststate-error {reply.headers['x-faststate-error']!r}")
    patches = patched_signals(reply.body.decode(errors="replace"))
    if {"counter": {"count": expected}} not in patches:
        problems.append("no count patch")
    if problems:
        raise RuntimeError(
            f"event on {server.app} failed ({', '.join(problems)}): {reply.body[:300]!r}"
        )


def _measure(
    server: Uvicorn, cookie: str, seconds: float, warmup: float, conns: int
) -> tuple[WrkResult, float | None, list[str]]:
    """A warm-up run (if ``warmup``), then the measured one. Returns the latter, the server's
    CPU time per event served during it, and every problem seen."""
    url = server.url + EVENT_PATH
    problems = []
    if warmup:
        warm = run_wrk(url, seconds=warmup, connections=conns, script_args=(cookie,))
        problems += [f"warm-up: {p}" for p in warm.problems]
    before = _count(server, cookie)
    cpu_before = server.cpu_seconds()
    result = run_wrk(url, seconds=seconds, connections=conns, script_args=(cookie,))
    cpu_after = server.cpu_seconds()
    served = _count(server, cookie) - before
    problems += result.problems
    if served < result.requests:
        problems.append(
            f"the session's count rose by {served}, fewer than the {result.requests} "
            "requests wrk counted: events were not all served"
        )
    cpu = None
    if cpu_before is not None and cpu_after is not None and served > 0:
        cpu = (cpu_after - cpu_before) / served
    return result, cpu, problems


def run() -> dict[str, float]:
    seconds = _env_float("BENCH_SECONDS", 5)
    warmup = _env_float("BENCH_WARMUP", 1, minimum=0)
    conns = int(_env_float("BENCH_CONNECTIONS", 16))
    rounds = int(_env_float("BENCH_ROUNDS", 2))
    print(
        f"== roundtrip: event round trips over loopback, one session "
        f"(wrk -t1 -c{conns}, {warmup:g}s warm-up, best of {rounds} x {seconds:g}s)"
    )
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > 0.5 * cpus:
        print(f"  note: load average {load:.1f} on {cpus} cores: machine busy, figures noisy")
    best: dict[str, Measured] = {}
    with running(*(app for _, _, app in SERVERS)) as servers:
        cookies = {}
        for (key, _, _), server in zip(SERVERS, servers, strict=True):
            cookie, count = _session(server)
            _check_event(server, cookie, count + 1)
            cookies[key] = cookie
        for i in range(rounds):
            for (key, label, _), server in zip(SERVERS, servers, strict=True):
                warm = warmup if i == 0 else 0
                result, cpu, warnings = _measure(server, cookies[key], seconds, warm, conns)
                rps = [result.requests_per_sec]
                prev = best.get(key)
                if prev is not None:
                    warnings = prev.warnings + warnings
                    rps = prev.rounds + rps
                    if result.requests_per_sec <= prev.result.requests_per_sec:
                        result = prev.result
                    if cpu is None or (prev.cpu_per_event is not None and prev.cpu_per_event < cpu):
                        cpu = prev.cpu_per_event
                best[key] = Measured(key, label, result, warnings, rps, cpu)
    _report(best)
    return {key: m.result.requests_per_sec for key, m in best.items()}


def _report(best: dict[str, Measured]) -> None:
    width = max(len(f"({m.key}) {m.label}") for m in best.values())
    for m in best.values():
        name = f"({m.key}) {m.label}"
        rounds = " / ".join(f"{r:,.0f}" for r in m.rounds)
        cpu = f"; server CPU {m.cpu_per_event * 1e6:.0f} us/event" if m.cpu_per_event else ""
        print(
            f"  events/s  {name:<{width}} {m.result.requests_per_sec:>9,.0f}"
            f"   (rounds {rounds}; avg latency {m.result.latency_avg}{cpu})"
        )
    for m in best.values():
        for w in m.warnings:
            print(f"  WARNING ({m.key}) {m.label}: {w}")
    for num, den, target in TARGETS:
        if num not in best or den not in best:
            continue
        # time per event = 1 / throughput, so t_num / t_den = rps_den / rps_num
        ratio = best[den].result.requests_per_sec / best[num].result.requests_per_sec
        verdict = "PASS" if ratio <= target else "MISS"
        if best[num].warnings or best[den].warnings:
            verdict += " (unreliable: see the warnings above)"
        print(f"  time/event {num}/{den} = {ratio:.2f} (target <= {target:g})  {verdict}")
    cpu_ratios = [
        f"{num}/{den} = {best[num].cpu_per_event / best[den].cpu_per_event:.2f}"
        for num, den, _ in TARGETS
        if num in best and den in best and best[num].cpu_per_event and best[den].cpu_per_event
    ]
    if cpu_ratios:
        # CPU time per event barely moves when other work shares the machine; throughput does
        print(f"  server CPU/event {', '.join(cpu_ratios)} (cross-check, less sensitive to load)")
