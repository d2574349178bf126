"""``redis://host:port/db``: states shared by any number of workers and machines.

Each state is a hash ``faststate:state:<key>`` with its version ``v`` and JSON ``d``. A change is
one Lua script run (one round trip): compare the version, write, set the ttl, publish on
``faststate:chan:<key>``. A worker subscribes once per key that its own streams watch, however
many tabs watch it. When Redis goes away, requests fail fast with BackendUnavailable (503) and
nothing is acknowledged; the listener reconnects with backoff, resubscribes, and every tab that
watches a key gets a resync snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from .._exceptions import BackendUnavailable, ConfigurationError
from .base import Backend, Listener, Stored

log = logging.getLogger("faststate_mw.redis")

STATE_PREFIX = "faststate:state:"
CHANNEL_PREFIX = "faststate:chan:"

# KEYS[1] state hash; ARGV: expected version, new version, data, ttl ms, channel, message
_COMMIT = """
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '0') ~= ARGV[1] then
  return {cur or '0', redis.call('HGET', KEYS[1], 'd') or ''}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""


class RedisBackend(Backend):
    """Redis for state and pub/sub. Needs ``pip install faststate-mw[redis]``."""

    durable = True
    shared = True

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        try:
            import redis
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "the redis backend needs the redis package: pip install 'faststate-mw[redis]'"
            ) from exc
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
        )
        options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            # one immediate retry: a pooled connection the server closed (a restart) is
            # replaced at once; a server that is really down fails fast
            "retry": Retry(NoBackoff(), 1),
            "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        }
        self._async = aioredis.Redis.from_url(url, **options)
        self._commit = self._async.register_script(_COMMIT)
        self._pubsub_options = {**options, "socket_timeout": None}
        self._aioredis = aioredis
        self._keys: set[str] = set()
        self._pending: list[tuple[bool, str]] = []
        self._listener: Listener | None = None
        self._on_resubscribed: Callable[[list[str]], Any] | None = None
        self._origin = ""
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        self.round_trips = 0

    # -- storage --------------------------------------------------------------------------------
    async def load(self, key: str) -> Stored | None:
        try:
            self.round_trips += 1
            row = await self._async.hmget(STATE_PREFIX + key, "v", "d")
        except self._errors as exc:
            raise _unavailable(exc) from None
        return _stored(row)

    async def save(self, key: str, version: int, data: str, ttl: float | None) -> None:
        try:
            self.round_trips += 1
            async with self._async.pipeline(transaction=True) as pipe:
                pipe.hset(STATE_PREFIX + key, mapping={"v": version, "d": data})
                if ttl:
                    pipe.pexpire(STATE_PREFIX + key, int(ttl * 1000))
                await pipe.execute()
        except self._errors as exc:
            raise _unavailable(exc) from None

    async def commit(
        self, key: str, expected: int, version: int, data: str, ttl: float | None, sse: bytes
    ) -> Stored | None:
        message = json.dumps(
            {"o": self._origin, "v": version, "s": data, "d": sse.decode()},
            separators=(",", ":"),
        )
        args: list[Any] = [
            expected,
            version,
            data,
            int(ttl * 1000) if ttl else 0,
            CHANNEL_PREFIX + key,
            message,
        ]
        try:
            self.round_trips += 1
            result = await self._commit(keys=[STATE_PREFIX + key], args=args)
        except self._errors as exc:
            raise _unavailable(exc) from None
        if result == 1:
            return None
        current, stored = result
        return Stored(int(current), _text(stored))

    async def delete(self, key: str) -> None:
        try:
            await self._async.delete(STATE_PREFIX + key)
        except self._errors as exc:
            raise _unavailable(exc) from None

    # -- pub/sub --------------------------------------------------------------------------------
    async def start(self, listener: Listener, origin: str) -> None:
        try:
            await self._async.ping()
        except self._errors as exc:
            raise _unavailable(exc) from None
        self._listener = listener
        self._origin = origin
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())

    def on_resubscribed(self, callback: Callable[[list[str]], Any]) -> None:
        """``callback(keys)`` runs after (re)subscribing: those keys may have changed unseen."""
        self._on_resubscribed = callback

    def subscribe(self, key: str) -> None:
        if key not in self._keys:
            self._keys.add(key)
            self._pending.append((True, key))

    def unsubscribe(self, key: str) -> None:
        if key in self._keys:
            self._keys.discard(key)
            self._pending.append((False, key))

    async def _listen(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self._aioredis.Redis.from_url(self.url, **self._pubsub_options).pubsub()
            try:
                keys = sorted(self._keys)
                self._pending.clear()
                await pubsub.subscribe(CHANNEL_PREFIX + "__faststate__")
                if keys:
                    await pubsub.subscribe(*(CHANNEL_PREFIX + k for k in keys))
                if not self.healthy:
                    log.warning("redis is back: resubscribed %d keys", len(keys))
                self.healthy = True
                backoff = 0.05
                if keys and self._on_resubscribed is not None:
                    self._on_resubscribed(keys)
                while True:
                    await self._apply_pending(pubsub)
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                    if message is not None:
                        self._deliver(message)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                raise
            except self._errors as exc:
                if self.healthy:
                    log.warning("redis pub/sub lost (%s); reconnecting", exc)
                self.healthy = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # never let the listener die silently
                log.exception("redis listener failed; restarting it")
                await asyncio.sleep(backoff)

    async def _apply_pending(self, pubsub: Any) -> None:
        while self._pending:
            subscribe, key = self._pending.pop(0)
            if subscribe:
                await pubsub.subscribe(CHANNEL_PREFIX + key)
                if self._on_resubscribed is not None:
                    self._on_resubscribed([key])  # changes before the subscription took hold
            else:
                await pubsub.unsubscribe(CHANNEL_PREFIX + key)

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            channel = _text(message["channel"])
            body = json.loads(message["data"])
            if body.get("o") == self._origin or self._listener is None:
                return  # our own change: already delivered locally
            key = channel[len(CHANNEL_PREFIX) :]
            self._listener(key, int(body["v"]), str(body["s"]), str(body["d"]).encode())
        except Exception:
            log.exception("bad message on %r", message.get("channel"))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._async.aclose()

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "subscribed_keys": len(self._keys),
            "round_trips": self.round_trips,
        }


def _unavailable(exc: BaseException) -> BackendUnavailable:
    """The client-safe error; the cause (host, port, errno) goes to the log only."""
    log.warning("redis unavailable: %s", exc)
    return BackendUnavailable("the state backend is unavailable; try again shortly")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stored(row: list[Any]) -> Stored | None:
    version, data = row
    if version is None or data is None:
        return None
    return Stored(int(version), _text(data))


__all__ = ["RedisBackend"]
