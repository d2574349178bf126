"""A tiny in-process client for long-lived SSE streams: it calls the ASGI app directly, so a test
can hold many streams open, read events as they arrive, stall a reader, and disconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.sse import SSEReader


class Stream:
    def __init__(
        self,
        app: Any,
        url: str,
        cookies: httpx.Cookies,
        headers: dict[str, str],
        client: str = "127.0.0.1",
    ) -> None:
        self.app = app
        self.client = client
        self.url = url
        self.cookies = cookies
        self.headers = headers
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.reader = SSEReader()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.comments = 0
        self.disconnected = asyncio.Event()
        self.started = asyncio.Event()
        self.finished = asyncio.Event()
        #: set while the reader takes writes; cleared by :meth:`stall` (a stalled consumer)
        self.flowing = asyncio.Event()
        self.flowing.set()
        #: set once a write is waiting on a stalled reader
        self.blocked = asyncio.Event()
        #: replaced (after being set) on every message the app sends: see :meth:`wait_for`
        self._progress = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> Stream:
        parts = urlsplit(self.url)
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = [(b"host", b"test"), (b"accept", b"text/event-stream")]
        headers += [(b"datastar-request", b"true")]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        headers += [(k.encode(), v.encode()) for k, v in self.headers.items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "headers": headers,
            "client": (self.client, 1),
            "server": ("test", 80),
        }
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self.disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self.response_headers = {
                    k.decode(): v.decode() for k, v in message.get("headers", [])
                }
                self.started.set()
                self._progressed()
                return
            if not self.flowing.is_set():
                self.blocked.set()
                await self.flowing.wait()
            self._parse(message.get("body", b""))
            if not message.get("more_body", False):
                self.finished.set()
            self._progressed()

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                self.finished.set()
                self.started.set()
                self._progressed()

        self.task = asyncio.ensure_future(run())
        await asyncio.wait_for(self.started.wait(), 5)
        return self

    def _progressed(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    def _parse(self, chunk: bytes) -> None:
        for event in self.reader.feed(chunk):
            self.comments += event["comments"]
            if event["event"]:
                self.events.put_nowait(event)

    def stall(self) -> None:
        """From now on the app's writes block until :meth:`resume`."""
        self.blocked.clear()
        self.flowing.clear()

    def resume(self) -> None:
        self.flowing.set()

    async def next(self, timeout: float = 2.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def before(self, signal: str, timeout: float = 2.0) -> list[dict[str, Any]]:
        """The signal patches (or other events) that arrive before the first patch of the
        top-level signal ``signal``: send a sentinel change after the changes under test, and
        this is everything they made this stream receive (a stream sends the changes of one key
        in order, and batches several keys in page order, so the sentinel's state must come last
        on the page)."""
        out: list[dict[str, Any]] = []
        while True:
            event = await self.next(timeout)
            got = event.get("signals")
            if got is not None and signal in got:
                return out
            out.append(event if got is None else got)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 2.0) -> None:
        """Wait until ``condition()`` holds, checking it after every message the app sends."""
        async with asyncio.timeout(timeout):
            while not condition():
                await self._progress.wait()

    async def close(self) -> None:
        self.disconnected.set()
        self.resume()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)
