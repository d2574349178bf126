"""Instructions per event, repeatable on a busy machine: run under callgrind twice and subtract.

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.0 python -m bench.callgrind_event 0
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.1000 python -m bench.callgrind_event 1000

(Ir of the second minus Ir of the first) / 1000 is what one event costs, start-up, imports and
the warm-up being the same in both. Drives benchmark app (a) in process (``bench.inprocess``),
or, with ``--backend URL`` (e.g. ``redis://127.0.0.1:P/0`` of a redis-server you started), the
backend benchmark's app on that backend: only this process's instructions count. Not a
``python -m bench`` section: a diagnostic. ``--runner asyncio`` uses asyncio's own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from .inprocess import call, cookie, request_scope

WARM_UP = 200


def _app(backend: str | None) -> Any:
    if backend is None:
        from .apps import app_a

        return app_a
    from starlette.applications import Starlette

    from faststate_mw import FastStateMiddleware

    from .backend_app import app as backend_app
    from .unrated import UNRATED

    app = Starlette(routes=backend_app.routes)
    app.add_middleware(
        FastStateMiddleware, secret_key="bench-callgrind", backend=backend, limits=UNRATED
    )
    return app


async def _main(app: Any, n: int, idle: float) -> None:
    event = request_scope("/_faststate/Counter/increment", b"amount=1", await cookie(app))
    body = b'{"counter":{"count":0}}'
    for _ in range(WARM_UP):
        sent = await call(app, event, body)
    assert sent[0]["status"] == 200, sent
    started = time.monotonic()
    for _ in range(n):
        await call(app, event, body)
    print(f"{n} events took {time.monotonic() - started:.2f}s", file=sys.stderr)
    if idle:
        await asyncio.sleep(idle)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind_event", description=__doc__)
    parser.add_argument("n", type=int, help="events after the warm-up")
    parser.add_argument("--backend", default=None, help="a backend URL (default: app (a))")
    parser.add_argument("--idle", type=float, default=0.0, help="seconds idle at the end")
    parser.add_argument("--runner", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    runner: Any = asyncio.run
    if args.runner == "uvloop":
        import uvloop

        runner = uvloop.run
    runner(_main(_app(args.backend), args.n, args.idle))


if __name__ == "__main__":
    main()
