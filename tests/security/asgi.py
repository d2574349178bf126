"""A raw in-process ASGI driver for the security tests: any method, path bytes, header bytes and
body reach the app exactly as given (no client library normalizes ``..`` or ``%2F`` away), and
the app's lifespan runs on one event loop that the test drives synchronously."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

#: how long one request may take before the app counts as hung
REQUEST_TIMEOUT = 10.0


@dataclass
class Answer:
    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    #: a live stream that began (200, text/event-stream) and was cut by the driver
    streaming: bool = False

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)

    def cookies(self) -> dict[str, str]:
        out = {}
        for k, v in self.headers:
            if k.lower() == b"set-cookie":
                pair = v.decode("latin-1").split(";", 1)[0]
                name, _, value = pair.partition("=")
                out[name.strip()] = value.strip()
        return out

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class AsgiDriver:
    """``with AsgiDriver(app) as d: d.request("POST", b"/x", headers=[...], body=b"")``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._shutdown: asyncio.Event | None = None
        self._lifespan: asyncio.Task[None] | None = None

    def __enter__(self) -> AsgiDriver:
        self.loop.run_until_complete(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._shutdown is not None and self._lifespan is not None
        self._shutdown.set()
        self.loop.run_until_complete(asyncio.wait_for(self._lifespan, REQUEST_TIMEOUT))
        self.loop.close()

    async def _start(self) -> None:
        started = asyncio.Event()
        self._shutdown = asyncio.Event()
        sent_startup = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_startup
            if not sent_startup:
                sent_startup = True
                return {"type": "lifespan.startup"}
            assert self._shutdown is not None
            await self._shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()
            elif message["type"] == "lifespan.startup.failed":
                raise RuntimeError(message.get("message"))

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = self.loop.create_task(self.app(scope, receive, send))
        await asyncio.wait_for(started.wait(), REQUEST_TIMEOUT)

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the app's event loop (background code: ``state.update(...)``)."""
        return self.loop.run_until_complete(coro)

    def request(
        self,
        method: str,
        path: bytes,
        *,
        query: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> Answer:
        return self.loop.run_until_complete(self._request(method, path, query, headers, body))

    async def _request(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]] | None,
        body: bytes,
    ) -> Answer:
        from urllib.parse import unquote_to_bytes

        hdrs = [(k.lower(), v) for k, v in (headers or [])]
        if not any(k == b"host" for k, _ in hdrs):
            hdrs.append((b"host", b"testserver"))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            # as uvicorn does: the percent-decoded path, and the raw bytes beside it
            "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": raw_path,
            "root_path": "",
            "query_string": query,
            "headers": hdrs,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
            "state": {},
        }
        answer = Answer()
        body_sent = False
        began = asyncio.Event()

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects by itself
            return {"type": "http.disconnect"}  # pragma: no cover

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if message.get("more_body") and answer.header(b"content-type") == (
                    b"text/event-stream"
                ):
                    began.set()

        task = asyncio.ensure_future(self.app(scope, receive, send))
        waiter = asyncio.ensure_future(began.wait())
        done, _ = await asyncio.wait(
            {task, waiter}, timeout=REQUEST_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if task not in done:
            # a stream that began is cut, as a browser closing the tab does; anything else hung
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if not began.is_set():
                raise AssertionError(f"{method} {raw_path!r} did not answer in time")
            answer.streaming = True
        else:
            waiter.cancel()
            task.result()  # an exception that escaped the app fails the test
        return answer


def state_snapshot() -> dict[str, Any]:
    """Every live instance of the running store: its public data and version."""
    from faststate_mw import current_store

    store = current_store()
    out: dict[str, Any] = {}
    for key in store.keys():  # noqa: SIM118 (a method with filters, not a dict)
        inst = store.get(key)
        out[key] = (inst.model_dump(mode="json"), inst._fs.version)
    return out
