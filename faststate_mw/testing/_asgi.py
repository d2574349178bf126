"""Calling an ASGI app in process: one-shot requests, long-lived streams, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .._types import ASGIApp, Message


class Response:
    """A complete HTTP response."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        #: (name, value) pairs, names lower-cased, in the order sent
        self.header_list = headers
        self.body = body

    @property
    def headers(self) -> dict[str, str]:
        """The last value of each header."""
        return dict(self.header_list)

    @property
    def text(self) -> str:
        return self.body.decode()

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def make_scope(
    method: str, path: str, query: str, headers: list[tuple[str, str]], extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        **extra,
    }


async def request(app: ASGIApp, scope: dict[str, Any], body: bytes) -> Response:
    """Run one request to completion."""
    status = 0
    headers: list[tuple[str, str]] = []
    chunks: list[bytes] = []
    sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in message["headers"]]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return Response(status, headers, b"".join(chunks))


class Streaming:
    """A request whose response body arrives over time (an SSE stream)."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any], on_chunk: Callable[[bytes], None]):
        self.app = app
        self.scope = scope
        self.on_chunk = on_chunk
        self.status = 0
        self.headers: dict[str, str] = {}
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        self._disconnect = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
                self.started.set()
            elif message["type"] == "http.response.body":
                self.on_chunk(message.get("body", b""))
                if not message.get("more_body", False):
                    self.finished.set()

        async def run() -> None:
            try:
                await self.app(self.scope, receive, send)
            finally:
                self.started.set()
                self.finished.set()

        self.task = asyncio.ensure_future(run())
        await asyncio.wait_for(self.started.wait(), 5)

    async def close(self) -> None:
        """Disconnect, as a closed tab does, and wait for the app to finish the request."""
        self._disconnect.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 5)


class Lifespan:
    """Runs the app's ASGI lifespan: startup on :meth:`start`, shutdown on :meth:`stop`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failed: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async def receive() -> Message:
            return await self._inbox.get()

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.failed":
                self._failed = message.get("message", "startup failed")
                self._started.set()
            elif kind == "lifespan.startup.complete":
                self._started.set()
            elif kind.startswith("lifespan.shutdown"):
                self._stopped.set()

        async def run() -> None:
            try:
                await self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
            except BaseException:
                pass  # an app without lifespan support
            finally:
                self._started.set()
                self._stopped.set()

        self._task = asyncio.ensure_future(run())
        await self._inbox.put({"type": "lifespan.startup"})
        await asyncio.wait_for(self._started.wait(), 10)
        if self._failed is not None:
            raise RuntimeError(f"the app failed to start: {self._failed}")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._stopped.wait(), 10)
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self._task, 5)


__all__ = ["Lifespan", "Response", "Streaming", "make_scope", "request"]
