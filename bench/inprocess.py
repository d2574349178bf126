"""One event request run in process, without HTTP: the driver of the profiling diagnostics
(``bench.profile_apps``, ``bench.profile_backends``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faststate_mw.testing._asgi import make_scope


def request_scope(path: str, query: bytes, cookie: bytes, method: str = "POST") -> dict[str, Any]:
    headers = [("host", "127.0.0.1:8000"), ("cookie", cookie.decode("latin-1"))]
    if method == "POST":
        headers += [
            ("datastar-request", "true"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("content-length", "23"),
        ]
    # the testing client's scope, served as on 127.0.0.1:8000
    return make_scope(method, path, query.decode(), headers, {"server": ("127.0.0.1", 8000)})


async def call(app: Any, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
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


async def cookie(app: Any) -> bytes:
    sent = await call(app, request_scope("/", b"", b"", method="GET"))
    for k, v in sent[0]["headers"]:
        if k == b"set-cookie":
            return bytes(v.split(b";")[0])
    raise RuntimeError("GET / set no cookie")


async def cpu_per_event(app: Any, n: int) -> float:
    event = request_scope("/_faststate/Counter/increment", b"amount=1", await cookie(app))
    body = b'{"counter":{"count":0}}'
    sent = await call(app, event, body)
    assert sent[0]["status"] == 200, sent
    started = time.process_time()
    for _ in range(n):
        await call(app, event, body)
    return (time.process_time() - started) / n * 1e6


__all__ = ["call", "cookie", "cpu_per_event", "request_scope"]
