"""Where an event's CPU goes on each backend, without HTTP: ``python -m bench.profile_backends``.

Calls the backend benchmark's app (one counter per session) directly in a loop, once on memory
and once on a private redis-server, prints this process's CPU µs per event (the app's cost:
Redis's own CPU is another process) and their ratio, then cProfiles the Redis loop. Not a
``python -m bench`` section: a diagnostic for when Redis falls behind its target.
Options: ``-n N`` events per backend (default 10000), ``--top K`` profile rows (default 30).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from faststate_mw import FastStateMiddleware

from .backend_app import app as backend_app
from .backends import redis_server


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
        await asyncio.get_running_loop().create_future()  # a client that stays connected
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


def _app(backend: str) -> Any:
    app = Starlette(routes=backend_app.routes)
    app.add_middleware(FastStateMiddleware, secret_key="bench-backends", backend=backend)
    return app


async def _loop(app: Any, n: int) -> float:
    scope = _scope("/_faststate/Counter/increment", b"amount=1", await _cookie(app))
    body = b'{"counter":{"count":0}}'
    sent = await _call(app, scope, body)
    assert sent[0]["status"] == 200, sent
    started = time.process_time()
    for _ in range(n):
        await _call(app, scope, body)
    return (time.process_time() - started) / n * 1e6


async def _main(redis_url: str, n: int, top: int) -> None:
    apps = {"memory": _app("memory://"), "redis": _app(redis_url)}
    for app in apps.values():
        await _loop(app, n // 10)  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for _round in range(3):
        for name, app in apps.items():
            cpu[name].append(await _loop(app, n))
    mem, red = sorted(cpu["memory"])[1], sorted(cpu["redis"])[1]
    print(f"memory {mem:6.1f} µs CPU/event   redis {red:6.1f}   ratio {red / mem:.2f}x (medians)")
    profile = cProfile.Profile()
    profile.enable()
    await _loop(apps["redis"], n)
    profile.disable()
    print(f"\ncProfile of redis, {n} events, by own time:")
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_backends", description=__doc__)
    parser.add_argument("-n", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        runner(_main(url, args.n, args.top))


if __name__ == "__main__":
    main()
