"""One pipelined Redis connection for the commit script (``redis://`` host and port only).

Every change is one EVALSHA. Through redis-py's pool each one pays for taking a connection,
packing, a timeout scope, a ``send`` and a parse; here the commits of one event-loop turn are
written together in one ``send`` and their replies read back in order from one socket (Redis
answers a connection's commands in the order they came). Still one round trip per change, and
the version check stays in the script, so no update is lost whatever the interleaving.

A command whose reply does not come within ``timeout`` seconds, or a connection that drops,
fails every command waiting on it with ``ConnectionError`` (the caller answers 503). The next
command connects again; a command is never sent twice (it may have run).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any, cast


class ReplyError(Exception):
    """Redis answered with an error (``-ERR ...``, ``-NOSCRIPT ...``)."""


def pack(*args: bytes) -> bytes:
    """One command in RESP."""
    return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args])


class ConnectionLost(ConnectionError):
    """The connection closed before the reply came (the command may or may not have run)."""


class _Incomplete(Exception):
    pass


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One reply from ``buf`` at ``pos``: (value, next position); _Incomplete if cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line = buf[pos : pos + 1], buf[pos + 1 : end]
    pos = end + 2
    if kind == b":":
        return int(line), pos
    if kind == b"+":
        return line, pos
    if kind == b"-":
        return ReplyError(line.decode(errors="replace")), pos
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return buf[pos : pos + size], pos + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, pos
        items = []
        for _ in range(count):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    raise ConnectionError(f"unexpected reply type {kind!r} from redis")


class _Protocol(asyncio.Protocol):
    """The connection: commands written in order, replies handed back in order. ``timeout``:
    a command whose reply does not come within that many seconds fails the connection (one
    timer, at the oldest waiting command's deadline: replies come in order, so the oldest
    command is always the first to run out of time)."""

    def __init__(self, timeout: float | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        #: each sent command's future and deadline (inf: no deadline), oldest first
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self.buffer = b""
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.lost = False
        self.timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, command: bytes, timed: bool = False) -> asyncio.Future[Any]:
        """Queue ``command``; ``timed``: it must be answered within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        deadline = _NEVER
        if timed and self.timeout is not None:
            deadline = loop.time() + self.timeout
            if self._timer is None:
                self._arm(loop, deadline)
        self.waiting.append((future, deadline))
        self.out.append(command)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        return future

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._armed_at = when
        self._timer = loop.call_at(when, self._expire)

    def _expire(self) -> None:
        """The oldest deadline came: a command still waiting past its own fails the
        connection (one its caller gave up on does not); else the timer moves on."""
        self._timer = None
        if self.lost:
            return
        loop = asyncio.get_running_loop()
        now = max(loop.time(), self._armed_at)
        for future, deadline in self.waiting:
            if deadline > now:
                if deadline != _NEVER:
                    self._arm(loop, deadline)
                return
            if not future.done():
                self.fail(ConnectionError("redis did not answer in time"))
                return

    def flush(self) -> None:
        self.flush_scheduled = False
        out, self.out = self.out, []
        if out and self.transport is not None and not self.lost:
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos = 0
        try:
            while pos < len(buf):
                value, pos = _parse(buf, pos)
                if not self.waiting:
                    raise ConnectionError("a reply from redis that no command asked for")
                future = self.waiting.popleft()[0]
                if not future.done():
                    if isinstance(value, ReplyError):
                        future.set_exception(value)
                    else:
                        future.set_result(value)
        except _Incomplete:
            pass
        except (ConnectionError, ValueError) as exc:
            self.fail(ConnectionError(f"bad reply from redis: {exc}"))
            return
        self.buffer = buf[pos:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionLost("connection to redis lost"))

    def fail(self, exc: Exception) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.waiting:
            future = self.waiting.popleft()[0]
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None:
            self.transport.close()


_NEVER = float("inf")


class CommitPipe:
    """``await pipe.call(*args)``: one command on the shared pipelined connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password = username, password
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    @classmethod
    def from_url(cls, url: str, timeout: float) -> CommitPipe | None:
        """A pipe for a plain ``redis://host:port/db`` URL; None for anything else (TLS, a
        unix socket, extra options), which keeps to redis-py."""
        from redis.asyncio.connection import parse_url

        if not url.startswith("redis://"):
            return None
        options = parse_url(url)
        if set(options) - {"host", "port", "db", "username", "password"}:
            return None
        return cls(
            str(options.get("host", "localhost")),
            int(options.get("port", 6379)),
            db=int(options.get("db", 0)),
            username=options.get("username"),
            password=options.get("password"),
            timeout=timeout,
        )

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self.timeout), self.host, self.port),
                self.timeout,
            )
        except OSError as exc:  # refused, unreachable, timed out: as redis-py reports it
            raise ConnectionError(
                f"Error {exc.errno} connecting to {self.host}:{self.port}. {exc}"
            ) from exc
        hello: list[asyncio.Future[Any]] = []
        if self.password is not None:
            auth = [self.username.encode()] if self.username else []
            hello.append(protocol.send(pack(b"AUTH", *auth, self.password.encode())))
        if self.db:
            hello.append(protocol.send(pack(b"SELECT", str(self.db).encode())))
        try:
            for future in hello:
                await asyncio.wait_for(future, self.timeout)
        except BaseException:
            protocol.fail(ConnectionError("redis refused the connection"))
            raise
        return protocol

    async def _ready(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.lost:
            return protocol
        if self._connecting is None:  # one connect for every command that waits for it
            self._connecting = asyncio.ensure_future(self._connect())
        connecting = self._connecting
        try:
            protocol = self._protocol = await asyncio.shield(connecting)
        finally:
            if self._connecting is connecting and connecting.done():
                self._connecting = None
        return protocol

    async def call(self, *args: bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost:  # not connected yet, or lost: (re)connect
            protocol = await self._ready()
        # timed by the connection's one timer, not wait_for (no task, no timer per command); a
        # command cancelled meanwhile still takes its reply off the connection, in order
        return await protocol.send(pack(*args), timed=True)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.fail(ConnectionError("closed"))
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            with contextlib.suppress(BaseException):
                connecting.exception()


__all__ = ["CommitPipe", "ConnectionLost", "ReplyError", "pack"]
