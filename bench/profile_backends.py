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
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from faststate_mw import FastStateMiddleware

from .backend_app import app as backend_app
from .backends import redis_server
from .inprocess import cpu_per_event
from .unrated import UNRATED


def _app(backend: str) -> Any:
    app = Starlette(routes=backend_app.routes)
    app.add_middleware(
        FastStateMiddleware, secret_key="bench-backends", backend=backend, limits=UNRATED
    )
    return app


async def _main(redis_url: str, n: int, top: int) -> None:
    apps = {"memory": _app("memory://"), "redis": _app(redis_url)}
    for app in apps.values():
        await cpu_per_event(app, n // 10)  # warm-up
    cpu: dict[str, list[float]] = {name: [] for name in apps}
    for _round in range(3):
        for name, app in apps.items():
            cpu[name].append(await cpu_per_event(app, n))
    mem, red = sorted(cpu["memory"])[1], sorted(cpu["redis"])[1]
    print(f"memory {mem:6.1f} µs CPU/event   redis {red:6.1f}   ratio {red / mem:.2f}x (medians)")
    profile = cProfile.Profile()
    profile.enable()
    await cpu_per_event(apps["redis"], n)
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
