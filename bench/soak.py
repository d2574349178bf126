"""``make soak``: a bounded soak run against a real uvicorn server over loopback.

``python -m bench.soak [--seconds S] [--tabs N] [--rate R] [--backend URL]`` drives
``bench.soak_app`` (a counter state in every scope: SESSION, GLOBAL, USER, COMPONENT, RECORD,
TEMPORARY and a custom one) with N browser tabs, each holding a live stream, and a steady rate of
events from all of them, mixed with page loads (a new stream), stream reconnects with
``Last-Event-ID``, sign-ins and sign-outs. It checks as it goes and at the end:

- every counter the clients were told succeeded is in the server's final state (private states:
  exactly this client's acknowledged events; shared ones: everyone's);
- no tab is stale: once the load stops, each tab's signals and versions equal the server's;
- no unexpected error.

It reports events/s sustained, p50/p99 event latency (request to reply) and delivery latency
(request to the patch on the sender's own stream), resident memory at start (once the states
idle visitors left can have been swept), middle and end (target: flat within 10%), and
instances and streams left at the end. The figures
go to ``bench/results/soak.json`` and ``soak.md`` (and a plot with the ``plots`` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import importlib.util
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import Uvicorn as Server

from .soak_client import EVENT, Jar, Stream, deep_merge, request

STATES = ["SoakSession", "SoakGlobal", "SoakComponent", "SoakRecord", "SoakTemp", "SoakTenant"]
#: states one client alone writes: their count must equal its acknowledged events exactly
PRIVATE = {"SoakSession", "SoakComponent", "SoakTemp"}
STREAM_URL = re.compile(r"@get\('([^']+)'")
SIGNALS = re.compile(r'data-signals="([^"]*)"')
TAB = re.compile(r"&quot;tab&quot;:&quot;([^&]+)&quot;|\"tab\":\"([^\"]+)\"")


def namespace(name: str, component_id: str) -> list[str]:
    """The signal path of a state's ``n`` on the page."""
    ns = name[:1].lower() + name[1:]
    return [ns, component_id, "n"] if name == "SoakComponent" else [ns, "n"]


def lookup(signals: dict[str, Any], path: list[str]) -> Any:
    for part in path:
        if not isinstance(signals, dict):
            return None
        signals = signals.get(part)  # type: ignore[assignment]
    return signals


@dataclass
class Tally:
    """What the whole run saw."""

    acked: Counter[str] = field(default_factory=Counter)
    #: (when, seconds) of every acknowledged event
    latencies: list[tuple[float, float]] = field(default_factory=list)
    deliveries: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    #: when each error happened (fault scenarios tell expected ones from the rest)
    error_times: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    lost_examples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors[what] += 1
        self.error_times.append(time.monotonic())


class Client:
    """One browser tab: its cookies, its page's states and its live stream."""

    def __init__(self, port: int, index: int, tally: Tally, records: int, tenants: int) -> None:
        self.port = port
        self.index = index
        self.tally = tally
        self.jar = Jar()
        self.record_id = str(index % records)
        self.component_id = f"c{index}"
        self.headers = {"x-tenant": f"t{index % tenants}"}
        self.users = records
        self.user: str | None = None
        #: state name -> key of this tab's page
        self.keys: dict[str, str] = {}
        #: versions of the page's keys when it was rendered (before any patch)
        self.rendered: list[int] = []
        self.acked: Counter[str] = Counter()
        self.stream: Stream | None = None
        self.tab = ""
        self.waiting: list[tuple[list[str], int, float]] = []

    @property
    def query(self) -> str:
        return f"record_id={self.record_id}&component_id={self.component_id}"

    async def load_page(self) -> None:
        """Load the page: its signals, its stream (a new one), its keys."""
        # the old page goes first: a load that fails (a restart) leaves the tab without a page,
        # as a browser shows its error page, and its next action loads the page again (else
        # the tab would keep the stream of the page before a sign-in and look stale)
        old, self.stream = self.stream, None
        if old is not None:
            await old.close()
        status, body = await request(
            self.port, "GET", f"/page?{self.query}", jar=self.jar, headers=self.headers
        )
        self._check(status, "page")
        page = body.decode()
        url, tab = STREAM_URL.search(page), TAB.search(page)
        if url is None or tab is None:
            raise AssertionError("the page has no live stream")
        self.tab = tab.group(1) or tab.group(2)
        # the page's signals first, as a browser applies them before its stream opens
        signals: dict[str, Any] = {}
        for raw in SIGNALS.findall(page):
            deep_merge(signals, json.loads(html.unescape(raw)))
        self.rendered = [row["v"] for row in await self.values()]
        await self._open(html.unescape(url.group(1)), signals=signals)

    async def _open(
        self, path: str, last_id: str | None = None, signals: dict[str, Any] | None = None
    ) -> None:
        old = self.stream
        if old is not None:
            await old.close()
        stream = Stream(self.port, path, self.jar, last_id, self._patched, self.headers)
        # a reconnecting tab keeps what it shows; a new page starts from its own signals
        if signals is not None:
            stream.signals = signals
        elif old is not None:
            stream.signals = old.signals
        self.stream = stream.start()
        await asyncio.wait_for(stream.opened.wait(), 30)
        self._check(self.stream.status, "stream")

    async def reconnect(self) -> None:
        """Drop the stream and open it again with its Last-Event-ID (a network blip)."""
        if self.stream is None:
            await self.load_page()
        else:
            await self._open(self.stream.path, self.stream.last_id or "")

    async def values(self) -> list[dict[str, Any]]:
        """The server's view of this tab's states, in page order."""
        status, body = await request(
            self.port, "GET", f"/values?{self.query}", jar=self.jar, headers=self.headers
        )
        self._check(status, "values")
        rows: list[dict[str, Any]] = json.loads(body) if status == 200 else []
        self.keys = {row["name"]: row["key"] for row in rows}
        return rows

    def event_query(self, name: str) -> str:
        """The id an event URL carries: only the state's own (other names are a 422)."""
        if name == "SoakRecord":
            return f"?record_id={self.record_id}"
        if name == "SoakComponent":
            return f"?component_id={self.component_id}"
        return ""

    async def event(self, name: str) -> None:
        key = self.keys.get(name)
        if key is None:
            return
        body = json.dumps({"faststate": {"tab": self.tab}}).encode()
        started = time.perf_counter()
        # watched before the request: the patch may reach the stream before the reply arrives
        wait = (namespace(name, self.component_id), self.acked[key] + 1, started)
        if name in PRIVATE:
            self.waiting.append(wait)
        try:
            status, _ = await request(
                self.port,
                "POST",
                f"/_faststate/{name}/inc{self.event_query(name)}",
                jar=self.jar,
                headers={**EVENT, **self.headers},
                body=body,
            )
        except BaseException:
            status = 0
            raise
        finally:
            if status not in (200, 204) and wait in self.waiting:
                self.waiting.remove(wait)
        if status not in (200, 204):
            self._check(status, f"event {name}")
            return
        self.tally.latencies.append((time.monotonic(), time.perf_counter() - started))
        self.acked[key] += 1
        self.tally.acked[key] += 1

    def _patched(self, signals: dict[str, Any], now: float) -> None:
        still = []
        for path, target, started in self.waiting:
            value = lookup(signals, path)
            if isinstance(value, int) and value >= target:
                self.tally.deliveries.append(now - started)
            else:
                still.append((path, target, started))
        self.waiting = still

    async def toggle_user(self) -> None:
        """Sign in as one of the users, or sign out; then load the page again."""
        if self.user is None:
            self.user = f"u{self.index % self.users}"
            status, _ = await request(self.port, "POST", f"/login?user={self.user}", jar=self.jar)
        else:
            self.user = None
            status, _ = await request(self.port, "POST", "/logout", jar=self.jar)
        self._check(status, "sign-in/out")
        self.waiting.clear()  # the session may be a new one: its states start over
        await self.load_page()

    def _check(self, status: int, what: str) -> None:
        if status >= 300 or status == 0:
            self.tally.error(f"{what}: {status}")

    async def run(self, until: float, mean_gap: float) -> None:
        names = [*STATES, "SoakUser"]
        due = time.monotonic()
        while True:
            # a steady rate: the next action is due at a random (Poisson) time after the last
            # one was due, however long that one took
            due += random.expovariate(1 / mean_gap)
            if due > until:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            roll = random.random()
            try:
                if self.stream is None or self.stream.ended.is_set():
                    # the stream dropped (a restart, a stall): reconnect as Datastar's
                    # retry: 'always' does, with the Last-Event-ID
                    self.tally.actions["stream reopened after a drop"] += 1
                    await self.reconnect()
                elif roll < 0.90:
                    self.tally.actions["event"] += 1
                    await self.event(random.choice(names if self.user else STATES))
                elif roll < 0.93:
                    self.tally.actions["page load"] += 1
                    await self.load_page()
                elif roll < 0.94:
                    # a new visitor takes this tab's place: the old session's states are left
                    # for the ttl sweeper
                    self.tally.actions["new visitor"] += 1
                    self.jar, self.user = Jar(), None
                    self.acked.clear()
                    await self.load_page()
                elif roll < 0.98:
                    self.tally.actions["stream reconnect"] += 1
                    await self.reconnect()
                else:
                    self.tally.actions["sign-in/out"] += 1
                    await self.toggle_user()
            except (OSError, EOFError, TimeoutError, AssertionError, ValueError, KeyError) as exc:
                self.tally.error(type(exc).__name__)

    async def stale(self) -> bool:
        """Whether this tab shows other values or versions than the server has."""
        rows = await self.values()
        if self.stream is None:
            return True  # its page did not load again yet
        shown = self.stream.last_id.partition(":")[2] if self.stream.last_id else None
        versions = ".".join(str(row["v"]) for row in rows)
        if shown is None:
            shown = ".".join(map(str, self.rendered))
        same = all(
            lookup(self.stream.signals, namespace(row["name"], self.component_id)) == row["n"]
            for row in rows
        )
        return not same or shown != versions

    async def lost_and_extra(self) -> tuple[int, int]:
        """Acknowledged events missing from the server's counters (lost), and events counted
        that were never acknowledged (a reply cut off by a fault: not a loss). Private states
        count this client's own events, shared ones everyone's."""
        lost = extra = 0
        for row in await self.values():
            private = row["name"] in PRIVATE
            expected = (self.acked if private else self.tally.acked)[row["key"]]
            lost += max(0, expected - row["n"])
            extra += max(0, row["n"] - expected)
            if expected > row["n"]:
                self.tally.lost_examples.append(f"{row['key']}: {row['n']} < {expected}")
        return lost, extra


def rss_mib(server: Server) -> float:
    """Resident memory of a server process (0 while it is down: a restart)."""
    if server.proc is None:
        return 0.0
    try:
        with open(f"/proc/{server.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _settle(clients: list[Client], timeout: float) -> tuple[int, int, int]:
    """After the load: wait until every tab shows the server's values and versions. Returns
    (stale tabs, acknowledged events lost, events counted but never acknowledged)."""
    deadline = time.monotonic() + timeout
    while True:
        for c in clients:
            if c.stream is None or c.stream.ended.is_set():
                with contextlib.suppress(OSError, EOFError, TimeoutError, AssertionError):
                    await c.reconnect()
        stale = [c for c in clients if await c.stale()]
        if not stale or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    if os.environ.get("SOAK_DEBUG"):
        for c in stale[:4]:
            if c.stream is None:
                print("stale tab: its page did not load again", c.port)
                continue
            rows = await c.values()
            server = [(r["name"], r["n"], r["v"]) for r in rows]
            shown = [lookup(c.stream.signals, namespace(r["name"], c.component_id)) for r in rows]
            print("stale tab:", c.port, c.stream.last_id, server, shown, c.stream.ended.is_set())
    lost = extra = 0
    for c in clients:
        one_lost, one_extra = await c.lost_and_extra()
        lost, extra = lost + one_lost, extra + one_extra
    return len(stale), lost, extra


#: the clients of the running soak (fault scenarios reach its tabs through it)
LIVE_CLIENTS: list[Client] = []


@dataclass
class Plan:
    """One run: the servers (clients are spread over their ports), the load, and a fault to
    inject at ``fault_at`` (a fraction of the run)."""

    servers: list[Server]
    tabs: int
    seconds: float
    rate: float
    fault: Callable[[], Awaitable[None]] | None = None
    fault_at: float = 0.4
    records: int = 20
    tenants: int = 5
    #: seconds to wait for tabs to catch up after the load
    settle: float = 20.0
    #: seconds into the run from which memory counts: once the states the first visitors left
    #: behind can have idled out and been swept (before then memory grows by design)
    memory_from: float = 0.0


async def _timeline(plan: Plan, tally: Tally, stop: asyncio.Event) -> list[dict[str, Any]]:
    """Once a second: resident memory of the servers, events and latency of that second."""
    rows: list[dict[str, Any]] = []
    begin = time.monotonic()
    seen = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        now = time.monotonic()
        window = [lat for when, lat in tally.latencies[seen:]]
        seen = len(tally.latencies)
        rows.append(
            {
                "t": round(now - begin, 1),
                "rss_mib": round(sum(rss_mib(s) for s in plan.servers), 1),
                "events": len(window),
                "p50_ms": round(percentile(window, 0.5) * 1000, 2) if window else None,
                "p99_ms": round(percentile(window, 0.99) * 1000, 2) if window else None,
                "errors": sum(tally.errors.values()),
            }
        )
    return rows


async def drive(plan: Plan) -> dict[str, Any]:
    """Open the tabs, run the load (and the fault), settle, and check."""
    tally = Tally()
    ports = [s.port for s in plan.servers]
    clients = [
        Client(ports[i % len(ports)], i, tally, plan.records, plan.tenants)
        for i in range(plan.tabs)
    ]
    sem = asyncio.Semaphore(50)

    async def open_one(c: Client) -> None:
        async with sem:
            await c.load_page()

    await asyncio.gather(*(open_one(c) for c in clients))
    LIVE_CLIENTS[:] = clients
    started = time.monotonic()
    until = started + plan.seconds
    stop = asyncio.Event()
    timeline = asyncio.ensure_future(_timeline(plan, tally, stop))
    runners = asyncio.gather(*(c.run(until, plan.tabs / plan.rate) for c in clients))
    window: tuple[float, float] | None = None
    if plan.fault is not None:
        await asyncio.sleep(plan.seconds * plan.fault_at)
        fault_start = time.monotonic()
        await plan.fault()
        window = (fault_start, time.monotonic())
    await runners
    elapsed = time.monotonic() - started
    stop.set()
    rows = await timeline
    stale, lost, extra = await _settle(clients, plan.settle)
    _status, body = await request(ports[0], "GET", "/stats")
    stats = json.loads(body)
    for c in clients:
        if c.stream is not None:
            await c.stream.close()
    events = len(tally.latencies)
    latencies = [lat for _when, lat in tally.latencies]
    after = [t for t in tally.error_times if window is None or t > window[1] + 5.0]
    memory_from = max(plan.seconds * 0.1, plan.memory_from)
    steady = memory_from <= plan.seconds * 0.5
    if not steady:  # too short a run to reach the steady state: the report says so
        memory_from = plan.seconds * 0.1
    warm = [r["rss_mib"] for r in rows if r["t"] >= memory_from] or [0.0]
    return {
        "tabs": plan.tabs,
        "workers": len(plan.servers),
        "seconds": round(elapsed, 1),
        "events": events,
        "events_per_s": round(events / elapsed, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.5) * 1000, 2),
            "p99": round(percentile(latencies, 0.99) * 1000, 2),
        },
        "delivery_ms": {
            "p50": round(percentile(tally.deliveries, 0.5) * 1000, 2),
            "p99": round(percentile(tally.deliveries, 0.99) * 1000, 2),
            "samples": len(tally.deliveries),
        },
        "memory_mib": {
            "start": warm[0],
            "middle": warm[len(warm) // 2],
            "end": warm[-1],
        },
        "memory_growth": round(warm[-1] / warm[0] - 1, 3) if warm[0] else None,
        "memory_from_s": round(memory_from, 1),
        "memory_steady": steady,
        "actions": dict(tally.actions),
        "errors": dict(tally.errors),
        "errors_after_recovery": len(after),
        "fault_seconds": round(window[1] - window[0], 1) if window else None,
        "fault_window_s": (
            [round(window[0] - started, 1), round(window[1] - started, 1)] if window else None
        ),
        "stale_tabs": stale,
        "lost_acknowledged": lost,
        "lost_examples": sorted(set(tally.lost_examples)),
        "counted_unacknowledged": extra,
        "instances": stats["instances"],
        "by_scope": stats["by_scope"],
        "streams_open_at_end": stats["streams"]["connections"],
        "timeline": rows,
    }


RESULTS = Path(__file__).resolve().parent / "results"


def report(result: dict[str, Any]) -> list[str]:
    """The run as lines of text, with PASS/MISS beside each target."""
    mem = result["memory_mib"]
    growth = result["memory_growth"]
    errors = sum(result["errors"].values())
    lines = [
        f"== soak: {result['tabs']} tabs with live streams, {result['seconds']} s "
        f"({result['backend']}) ==",
        f"  events acknowledged   {result['events']:,}  ({result['events_per_s']:,} events/s)",
        f"  event latency         p50 {result['latency_ms']['p50']} ms   "
        f"p99 {result['latency_ms']['p99']} ms",
        f"  delivery to stream    p50 {result['delivery_ms']['p50']} ms   "
        f"p99 {result['delivery_ms']['p99']} ms   ({result['delivery_ms']['samples']:,} samples)",
        f"  resident memory       start {mem['start']} MiB   middle {mem['middle']} MiB   "
        f"end {mem['end']} MiB   growth {growth:+.1%} from {result.get('memory_from_s', '?')} s"
        f"{'' if result.get('memory_steady', True) else ' (a run too short for the ttl)'}"
        " (target within 10%)  "
        f"{'PASS' if abs(growth) <= 0.10 else 'MISS'}",
        f"  actions               {result['actions']}",
        f"  errors                {errors} {result['errors'] or ''} (target 0)  "
        f"{'PASS' if errors == 0 else 'MISS'}",
        f"  stale tabs            {result['stale_tabs']} (target 0)  "
        f"{'PASS' if result['stale_tabs'] == 0 else 'MISS'}",
        f"  acknowledged but lost {result['lost_acknowledged']} (target 0)  "
        f"{'PASS' if result['lost_acknowledged'] == 0 else 'MISS'};  counted but never "
        f"acknowledged {result['counted_unacknowledged']}",
        f"  at the end            {result['instances']} instances {result['by_scope']}; "
        f"{result['streams_open_at_end']} streams open (expected {result['tabs']})",
    ]
    return lines


def run_soak(
    seconds: float = 180.0, tabs: int = 1000, rate: float = 100.0, backend: str = "memory://"
) -> dict[str, Any]:
    """Start the soak app, drive it, stop it; the result as a dict. Session, component and
    temporary states idle out after ``SOAK_SESSION_TTL`` seconds (default 30 here): memory
    counts from when the first ones can have been swept, so that its growth shows a leak, not
    the states a run of minutes keeps by design."""
    ttl = os.environ.get("SOAK_SESSION_TTL", "30")
    sweep = os.environ.get("SOAK_SWEEP", "5")
    server = soak_server({"SOAK_BACKEND": backend, "SOAK_SESSION_TTL": ttl, "SOAK_SWEEP": sweep})
    plan = Plan([server], tabs, seconds, rate, memory_from=float(ttl) + 2 * float(sweep))
    try:
        result = asyncio.run(drive(plan))
    finally:
        server.stop()
    result["backend"] = backend
    return result


def soak_server(env: dict[str, str], port: int | None = None) -> Server:
    """A started uvicorn process serving the soak app (a fixed secret, so a restarted server
    accepts the same cookies and stream tokens)."""
    server = Server("bench.soak_app:app", {"SOAK_SECRET": "soak-secret", **env}, port)
    return server.start()


def save(name: str, result: dict[str, Any], lines: list[str]) -> None:
    """Write ``bench/results/<name>.json`` and ``<name>.md``."""
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = round(os.getloadavg()[1], 2)  # the last 5 minutes: how busy the shared machine was
    result = {**result, "measured": stamp, "load_average_5min": load}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    body = "\n".join(lines)
    (RESULTS / f"{name}.md").write_text(
        f"Measured {stamp} on this project's 2-core machine (load average {load} over the last"
        f" 5 minutes).\n\n```\n{body}\n```\n"
    )


def plot_results() -> None:
    """Redraw the PNGs of ``bench/results/`` (with the ``plots`` extra: matplotlib)."""
    if importlib.util.find_spec("matplotlib") is None:
        print("plots skipped: matplotlib not installed")
        return
    from . import plots  # matplotlib is an optional extra: imported only when installed

    for path in plots.draw_all():
        print(f"plot: {path.relative_to(RESULTS.parent.parent)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 180)))
    parser.add_argument("--tabs", type=int, default=int(os.environ.get("SOAK_TABS", 1000)))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 100)))
    parser.add_argument("--backend", default=os.environ.get("SOAK_BACKEND", "memory://"))
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    result = run_soak(args.seconds, args.tabs, args.rate, args.backend)
    lines = report(result)
    print("\n".join(lines))
    if not args.no_save:
        save("soak", result, lines)
        plot_results()
    failed = sum(result["errors"].values()) or result["stale_tabs"] or result["lost_acknowledged"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
