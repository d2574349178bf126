"""In-process view of where an event's time goes, without HTTP: ``python -m bench.profile_apps``.

Calls each benchmark app's ASGI callable directly in a loop (the same event request the
roundtrip section sends), prints microseconds of this process's CPU time per event (CPU time, not
wall time: another process taking the core does not count), then cProfiles app (a) with the same
clock. Not a
``python -m bench`` section: it is a diagnostic for when (a) falls behind its targets.
Options: ``-n N`` events per app (default 20000), ``--top K`` profile rows (default 25).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

from .apps import app_a, app_b, app_c


def _scope(path: str, query: bytes, cookie: bytes, method: str = "POST") -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"cookie", cookie)]
    if method == "POST":
        headers += [
            (b"datastar-request", b"true"),
            (b"content-type", b"application/json"),
            (b"accept", b"text/event-stream"),
            (b"content-length", b"23"),
        ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(app: Any, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        # Like a server whose client stays connected: wait (until cancelled by the app).
        await asyncio.get_running_loop().create_future()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(dict(scope), receive, send)
    return sent


async def _cookie(app: Any) -> bytes:
    sent = await _call(app, _scope("/", b"", b"", method="GET"))
    for k, v in sent[0]["headers"]:
        if k == b"set-cookie":
            return bytes(v.split(b";")[0])
    raise RuntimeError("GET / set no cookie")


async def _loop(app: Any, n: int) -> float:
    scope = _scope("/_faststate/Counter/increment", b"amount=1", await _cookie(app))
    body = b'{"counter":{"count":0}}'
    sent = await _call(app, scope, body)
    assert sent[0]["status"] == 200, sent
    started = time.process_time()
    for _ in range(n):
        await _call(app, scope, body)
    return (time.process_time() - started) / n * 1e6


async def _main(n: int, top: int) -> None:
    for name, app in (("a", app_a), ("b", app_b), ("c", app_c)):
        await _loop(app, n // 10)  # warm-up
        print(f"({name}) {await _loop(app, n):7.1f} us/event in-process (CPU time)")
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    await _loop(app_a, n)
    profile.disable()
    print(f"\ncProfile of (a), {n} events, by own time:")
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)
    print("by cumulative time:")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_apps", description=__doc__)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_main(args.n, args.top))


if __name__ == "__main__":
    main()
