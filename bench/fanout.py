"""Fan-out: one GLOBAL change delivered to N open live streams.

In-process (N = 100, 1,000, 10,000): streams are opened against the ASGI app directly, the change
is made with ``State.update``, and we time until the last stream has written the patch. The
baseline pushes the same bytes into N asyncio queues read by N tasks, its rounds interleaved with
ours while the streams stay open. Also: memory per idle connection, measured with tracemalloc
over 10,000 open streams.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from typing import Any

from starlette.applications import Starlette

from faststate_mw import (
    FastStateMiddleware,
    Limits,
    State,
    StateConfig,
    StateScope,
    StateStore,
    view,
)
from tests.servers import running
from tests.sse import stream_url

from .client import cookie_header, request
from .soak import save

ROUNDS = 15
SIZES = (100, 1_000, 10_000)


class Broadcasted(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    value: int = 0


class ViewedList(State):
    """A 100-item list shown through a viewer-independent live view."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    items: list[str] = [f"item {i}" for i in range(100)]

    @view
    def items_view(self) -> str:
        return "<ul>" + "".join(f"<li>{item}</li>" for item in self.items) + "</ul>"


def _app() -> tuple[Starlette, FastStateMiddleware]:
    app = Starlette()
    # the live-view part keeps two sets of 10,000 streams open at once
    store = StateStore(heartbeat=3600, limits=Limits(max_streams=2 * max(SIZES)))
    app.add_middleware(FastStateMiddleware, secret_key="bench", store=store)
    stack = app.build_middleware_stack()
    mw = stack
    while not isinstance(mw, FastStateMiddleware):
        mw = mw.app
    app.middleware_stack = stack
    return app, mw


class Round:
    """Counts arrivals of one change; the last one sets ``done`` (one waiter, not N)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count == self.n:
            self.last = time.perf_counter()
            self.done.set()


class Tab:
    __slots__ = ("disconnect", "round", "task")

    def __init__(self) -> None:
        self.round: Round | None = None
        self.disconnect = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


async def open_tabs(
    app: Any,
    mw: FastStateMiddleware,
    n: int,
    entry: list[Any] | None = None,
    marker: bytes = b"datastar-patch-signals",
    first: int = 0,
    ending: bytes | None = None,
) -> list[Tab]:
    """``n`` streams opened in process; a tab counts its round's change arrived at a body that
    holds ``marker``, or (``ending``) that ends with it."""
    tabs = []
    for i in range(first, first + n):
        token = mw.signer.dumps(None, f"tab{i}", [entry or ["Broadcasted", None, 0]])
        tab = Tab()
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/_faststate/stream",
            "query_string": f"t={token}".encode(),
            "headers": [(b"accept", b"text/event-stream")],
            "app": app,
        }

        async def receive(tab: Tab = tab) -> dict[str, Any]:
            await tab.disconnect.wait()
            return {"type": "http.disconnect"}

        if ending is None:

            async def send(message: dict[str, Any], tab: Tab = tab) -> None:
                if tab.round is not None and marker in message.get("body", b""):
                    tab.round.arrive()

        else:  # a long body: found without scanning it (a scan would be the bench's own cost)

            async def send(message: dict[str, Any], tab: Tab = tab) -> None:
                if tab.round is not None and message.get("body", b"").endswith(ending):
                    tab.round.arrive()

        tab.task = asyncio.ensure_future(app(scope, receive, send))
        tabs.append(tab)
    while len(mw.store.hub.tabs) < first + n:
        await asyncio.sleep(0.01)
    return tabs


async def close_tabs(tabs: list[Tab]) -> None:
    for tab in tabs:
        tab.disconnect.set()
    await asyncio.gather(*(t.task for t in tabs if t.task is not None))


async def faststate_round(tabs: list[Tab], inst: Broadcasted) -> float:
    current = Round(len(tabs))
    for tab in tabs:
        tab.round = current
    start = time.perf_counter()
    await inst.update(value=inst.value + 1)
    await current.done.wait()
    return current.last - start


async def baseline_round(n: int, payload: bytes) -> float:
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in range(n)]
    current = Round(n)

    async def consume(i: int) -> None:
        await queues[i].get()
        current.arrive()

    tasks = [asyncio.ensure_future(consume(i)) for i in range(n)]
    await asyncio.sleep(0)
    start = time.perf_counter()
    for q in queues:
        q.put_nowait(payload)
    await current.done.wait()
    await asyncio.gather(*tasks)
    return current.last - start


async def view_round(tabs: list[Tab], inst: ViewedList) -> float:
    current = Round(len(tabs))
    for tab in tabs:
        tab.round = current
    start = time.perf_counter()
    await inst.update(items=[*inst.items[1:], inst.items[0]])  # one item moves to the end
    await current.done.wait()
    return current.last - start


async def _run_views(n: int) -> tuple[float, float, float, float, int]:
    """One change of a 100-item list's view reaching ``n`` streams, beside the signals-only
    fan-out to ``n`` other streams open at the same time, rounds interleaved (so both see the
    same heap and the same moments of a busy machine); and the renders the view's rounds cost."""
    app, mw = _app()
    await mw.store.start()
    plain = await mw.store.resolve(Broadcasted, None)
    assert isinstance(plain, Broadcasted)
    listed = await mw.store.resolve(ViewedList, None)
    assert isinstance(listed, ViewedList)
    plain_tabs = await open_tabs(app, mw, n)
    entry = ["ViewedList", None, listed.version, ["items_view"]]
    # the view's patch ends the body that carries it: the end of its list
    view_tabs = await open_tabs(app, mw, n, entry, first=n, ending=b"</ul></div>\n\n")
    await faststate_round(plain_tabs, plain)  # warm-up
    await view_round(view_tabs, listed)
    renders = mw.store.hub.stats()["view_renders"]
    signals_only, with_views = [], []
    for _ in range(ROUNDS):
        signals_only.append(await faststate_round(plain_tabs, plain))
        with_views.append(await view_round(view_tabs, listed))
    renders = mw.store.hub.stats()["view_renders"] - renders
    await close_tabs(plain_tabs + view_tabs)
    await mw.store.close()
    return (*_stats(with_views), *_stats(signals_only), renders)


def run_views() -> None:
    print("\n== fan-out of a live view: one change of a 100-item list's view to N streams ==")
    print(f"  {'N':>7}  {'view median':>11} {'p99':>9}   {'signals median':>14} {'p99':>9}")
    for n in (1_000, 10_000):
        med, p99, smed, sp99, renders = asyncio.run(_run_views(n))
        verdict = "PASS" if med / smed <= 1.5 else "MISS"
        print(
            f"  {n:>7,}  {med * 1000:9.2f}ms {p99 * 1000:7.2f}ms   {smed * 1000:12.2f}ms"
            f" {sp99 * 1000:7.2f}ms   {med / smed:5.2f}x (target <= 1.5x) {verdict}"
            f"   renders {renders} for {ROUNDS} changes"
        )


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


async def _run_size(n: int) -> tuple[float, float, float, float]:
    app, mw = _app()
    await mw.store.start()
    inst = await mw.store.resolve(Broadcasted, None)
    assert isinstance(inst, Broadcasted)
    tabs = await open_tabs(app, mw, n)
    payload = b'event: datastar-patch-signals\ndata: signals {"broadcasted":{"value":1}}\n\n'
    # rounds interleaved, with the streams open during both: a burst of load from elsewhere
    # on this shared machine, and the heap the collector walks, weigh on both sides alike
    ours: list[float] = []
    base: list[float] = []
    for _ in range(ROUNDS):
        ours.append(await faststate_round(tabs, inst))
        base.append(await baseline_round(n, payload))
    await close_tabs(tabs)
    await mw.store.close()
    return (*_stats(ours), *_stats(base))


async def _idle_memory(n: int) -> float:
    app, mw = _app()
    await mw.store.start()
    await mw.store.resolve(Broadcasted, None)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tabs = await open_tabs(app, mw, n)
    await asyncio.sleep(0.05)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await close_tabs(tabs)
    await mw.store.close()
    return (after - before) / n


LOOPBACK_STREAMS = 1_000
LOOPBACK_ROUNDS = 10


async def _open_http_streams(port: int, paths: list[tuple[str, str]]) -> list[Any]:
    conns = []
    for path, cookie in paths:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        headers = "Accept: text/event-stream\r\nDatastar-Request: true\r\n"
        if cookie:
            headers += f"Cookie: {cookie}\r\n"
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
        conns.append((reader, writer))
    for _reader, writer in conns:
        await writer.drain()
    return conns


async def _loopback_rounds(
    port: int, conns: list[Any], trigger: Any, marker: bytes, rounds: int
) -> list[float]:
    """Each round: trigger one change, time until every connection has read ``marker % n``."""
    times = []
    for n in range(1, rounds + 1):
        want = marker % n
        start = time.perf_counter()
        await trigger()

        async def wait(reader: asyncio.StreamReader, want: bytes = want) -> float:
            buf = b""
            while want not in buf:
                buf = buf[-64:] + await asyncio.wait_for(reader.read(65536), 30)
            return time.perf_counter()

        done = await asyncio.gather(*(wait(r) for r, _w in conns))
        times.append(max(done) - start)
    for _r, w in conns:
        w.close()
    return times


def _loopback() -> tuple[float, float, float, float]:
    async def ours(server: Any) -> list[float]:
        paths = []
        for _ in range(LOOPBACK_STREAMS):
            page = request("GET", server.url + "/live")
            paths.append((stream_url(page.body), cookie_header(page)))
        conns = await _open_http_streams(server.port, paths)
        await asyncio.sleep(1.0)  # let every stream open (not measured)
        post_reader, post_writer = await asyncio.open_connection("127.0.0.1", server.port)
        body = (
            b"POST /_faststate/Shared/bump HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Datastar-Request: true\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n{}"
        )

        async def trigger() -> None:
            post_writer.write(body)
            await post_writer.drain()
            await post_reader.readuntil(b"\r\n\r\n")
            await post_reader.read(4096)

        return await _loopback_rounds(
            server.port, conns, trigger, b'"shared":{"n":%d}', LOOPBACK_ROUNDS
        )

    async def bare(server: Any) -> list[float]:
        conns = await _open_http_streams(server.port, [("/sse", "")] * LOOPBACK_STREAMS)
        await asyncio.sleep(1.0)

        async def trigger() -> None:
            request("POST", server.url + "/push")

        return await _loopback_rounds(
            server.port, conns, trigger, b'"shared":{"n":%d}', LOOPBACK_ROUNDS
        )

    with running("bench.backend_app:app", "bench.fanout_bare:app") as (ours_srv, bare_srv):
        a = asyncio.run(ours(ours_srv))
        b = asyncio.run(bare(bare_srv))
    return (*_stats(a), *_stats(b))


def run() -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        print(line)
        lines.append(line)

    figures: dict[str, Any] = {"sizes": []}
    out("\n== fan-out: one GLOBAL change to N live streams (in-process) ==")
    out(f"  {'N':>7}  {'median':>9} {'p99':>9}   {'baseline median':>15} {'p99':>9}   ratio")
    for n in SIZES:
        med, p99, bmed, bp99 = asyncio.run(_run_size(n))
        figures["sizes"].append(
            {
                "n": n,
                "median_ms": round(med * 1000, 3),
                "p99_ms": round(p99 * 1000, 3),
                "bare_median_ms": round(bmed * 1000, 3),
                "bare_p99_ms": round(bp99 * 1000, 3),
            }
        )
        out(
            f"  {n:>7,}  {med * 1000:7.2f}ms {p99 * 1000:7.2f}ms   {bmed * 1000:13.2f}ms"
            f" {bp99 * 1000:7.2f}ms   {med / bmed:5.2f}x"
        )
        if n == 10_000:
            verdict = "PASS" if med <= 0.100 else "MISS"
            out(f"  10,000 streams median {med * 1000:.1f} ms (target <= 100 ms)  {verdict}")
            verdict = "PASS" if med / bmed <= 2.0 else "MISS"
            out(f"  ratio to bare asyncio {med / bmed:.2f}x (target <= 2.0x)  {verdict}")
    run_views()
    med, p99, bmed, bp99 = _loopback()
    figures["loopback"] = {
        "n": LOOPBACK_STREAMS,
        "median_ms": round(med * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "bare_median_ms": round(bmed * 1000, 3),
        "bare_p99_ms": round(bp99 * 1000, 3),
    }
    out(
        f"  {LOOPBACK_STREAMS:>7,} over loopback (uvicorn): {med * 1000:7.2f}ms {p99 * 1000:7.2f}ms"
        f"   bare Starlette SSE + queues {bmed * 1000:7.2f}ms {bp99 * 1000:7.2f}ms"
        f"   ratio {med / bmed:5.2f}x"
    )
    per_conn = asyncio.run(_idle_memory(10_000))
    figures["idle_stream_kib"] = round(per_conn / 1024, 2)
    verdict = "PASS" if per_conn < 10 * 1024 else "MISS"
    out(f"  memory per idle stream {per_conn / 1024:.2f} KiB (target < 10 KiB)  {verdict}")
    save("fanout", figures, [line.strip("\n") for line in lines])
