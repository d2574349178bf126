"""A small asyncio HTTP/1.1 client for load: one connection per request (``Connection: close``),
cookies, and long-lived SSE streams parsed as they arrive. Bare sockets, because an HTTP client
library's own pool and parsing would dominate what a soak of 1,000 streams measures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"


class Jar:
    """The cookies one browser holds."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def take(self, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                if val and "max-age=0" not in value.lower():
                    self.cookies[key.strip()] = val.strip()
                else:
                    self.cookies.pop(key.strip(), None)


def _head(method: str, path: str, jar: Jar | None, extra: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}", "Connection: close"]
    if jar is not None and jar.cookies:
        lines.append(f"Cookie: {jar.header()}")
    lines += [f"{k}: {v}" for k, v in extra.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        if ":" in line:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
    return status, headers


async def request(
    port: int,
    method: str,
    path: str,
    *,
    jar: Jar | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body). Cookies it sets go into ``jar``. A
    Datastar error reply (200 with ``X-FastState-Error``, as pages get errors) is returned with
    the error's real status, so callers never count it as a success."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(_head(method, path, jar, headers or {}, body))
            await writer.drain()
            status, hdrs = await _read_head(reader)
            if jar is not None:
                jar.take(hdrs)
            data = await reader.read()
        finally:
            writer.close()
    if ("transfer-encoding", "chunked") in hdrs:
        data = _dechunk(data)
    if status == 200 and any(k == "x-faststate-error" for k, _v in hdrs):
        status = _error_status(data)
    return status, data


def _error_status(body: bytes) -> int:
    """The status a Datastar error reply carries in its ``$_faststate`` signal."""
    match = re.search(rb'"status":\s*(\d+)', body)
    return int(match.group(1)) if match else 500


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


EVENT = {
    "Datastar-Request": "true",
    "Content-Type": "application/json",
    "Accept": "text/event-stream",
}


def deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            deep_merge(into[k], v)
        else:
            into[k] = v


class Stream:
    """One tab's live stream, read in the background. ``signals`` follows every patch (merged as
    Datastar merges them); ``on_patch(signals, now)`` runs after each one."""

    def __init__(
        self,
        port: int,
        path: str,
        jar: Jar,
        last_event_id: str | None = None,
        on_patch: Callable[[dict[str, Any], float], None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.headers = headers or {}
        self.path = path
        self.jar = jar
        self.last_id = last_event_id
        self.on_patch = on_patch
        self.signals: dict[str, Any] = {}
        self.status = 0
        self.patches = 0
        self.opened = asyncio.Event()
        self.ended = asyncio.Event()
        self.paused = False
        self._writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Stream:
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port, limit=1 << 20)
            self._writer = writer
            extra = {"Datastar-Request": "true", "Accept": "text/event-stream", **self.headers}
            if self.last_id:
                extra["Last-Event-ID"] = self.last_id
            writer.write(_head("GET", self.path, self.jar, extra, b""))
            await writer.drain()
            self.status, _ = await _read_head(reader)
            self.opened.set()
            if self.status == 200:
                await self._read_events(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.opened.set()
            self.ended.set()
            if self._writer is not None:
                self._writer.close()

    async def _read_events(self, reader: asyncio.StreamReader) -> None:
        buffer = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            buffer += await reader.readexactly(size + 2)
            buffer = buffer[:-2] if buffer.endswith(b"\r\n") else buffer
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                self._event(block.decode())
            while self.paused:  # a slow consumer: stop reading (the socket fills up)
                await asyncio.sleep(0.05)

    def _event(self, block: str) -> None:
        kind, data = "", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("id: "):
                self.last_id = line[4:]
            elif line.startswith("data: signals "):
                data.append(line[len("data: signals ") :])
        if kind == "datastar-patch-signals" and data:
            deep_merge(self.signals, json.loads("\n".join(data)))
            self.patches += 1
            if self.on_patch is not None:
                self.on_patch(self.signals, time.perf_counter())

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


__all__ = ["EVENT", "Jar", "Stream", "deep_merge", "request"]
