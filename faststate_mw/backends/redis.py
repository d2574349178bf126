"""``redis://host:port/db``: states shared by any number of workers and machines.

Each state is a hash ``faststate:state:<key>`` with its version ``v`` and JSON ``d``. A change is
one Lua script run (one round trip): compare the version, write, set the ttl, publish on
``faststate:chan:<key>``. A worker subscribes once per key that its own streams watch, however
many tabs watch it. When Redis goes away, requests fail fast with BackendUnavailable (503) and
nothing is acknowledged; the listener reconnects with backoff, resubscribes, and every tab that
watches a key gets a resync snapshot.

Connections come from a bounded pool (``max_connections``, default 256 per worker); a burst that
finds every connection busy waits up to ``pool_timeout`` seconds for one instead of failing at
once. Every backend error is logged (``faststate_mw.redis``) and reaches clients as a 503 that
names no host.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from .._exceptions import BackendUnavailable, ConfigurationError, StoredStateError
from ._pipe import CommitPipe, ConnectionLost, ReplyError
from .base import Backend, Listener, Stored

log = logging.getLogger("faststate_mw.redis")

STATE_PREFIX = "faststate:state:"
CHANNEL_PREFIX = "faststate:chan:"
#: the channel name (in place of a state key) of messages between workers; no state key is
#: this (keys start with their scope and a colon)
CONTROL = "__faststate__"

#: connections per worker (redis-py's default of 100 failed bursts of page loads at once)
DEFAULT_MAX_CONNECTIONS = 256
#: how long a request waits for a free pooled connection before it gets a 503
DEFAULT_POOL_TIMEOUT = 5.0

# KEYS[1] state hash; ARGV: expected version, new version, data, ttl ms, channel, message.
# PUBLISH_COMMAND becomes PUBLISH, or SPUBLISH on a cluster (the channel shares the key's slot).
_COMMIT = """
local cur = redis.call('HGET', KEYS[1], 'v')
if (cur or '0') ~= ARGV[1] then
  return {cur or '0', redis.call('HGET', KEYS[1], 'd') or ''}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'd', ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('PUBLISH_COMMAND', ARGV[5], ARGV[6])
return 1
"""


class RedisBackend(Backend):
    """Redis for state and pub/sub. Needs ``pip install faststate-mw[redis]``.

    ``max_connections``: the size of this worker's connection pool; ``pool_timeout``: how long a
    request waits for a free connection when all are busy (then a 503); ``timeout``: connect
    and read timeout of one command.
    """

    durable = True
    shared = True
    #: the publish command the commit script runs
    publish_command = "PUBLISH"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        try:
            import redis
            import redis.asyncio as aioredis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "the redis backend needs the redis package: pip install 'faststate-mw[redis]'"
            ) from exc
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        if max_connections < 1 or pool_timeout <= 0 or timeout <= 0:
            raise ConfigurationError("max_connections, pool_timeout and timeout: positive")
        self.url = url
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        # every redis error: a down server, a full pool, a refused command
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._options: dict[str, Any] = {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            # one immediate retry: a pooled connection the server closed (a restart) is
            # replaced at once; a server that is really down fails fast
            "retry": Retry(NoBackoff(), 1),
            "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
        }
        self._aioredis = aioredis
        self._script = _COMMIT.replace("PUBLISH_COMMAND", self.publish_command).encode()
        self._sha = hashlib.sha1(self._script).hexdigest().encode()
        self._async: Any = None
        self._commit: Any = None
        self._connect()
        #: the commits' own pipelined connection (None: through redis-py, e.g. a cluster)
        self._pipe = self._make_pipe(timeout)
        self._keys: set[str] = set()
        self._pending: list[tuple[bool, str]] = []
        self._listener: Listener | None = None
        self._on_resubscribed: Callable[[list[str]], Any] | None = None
        self._on_control: Callable[[dict[str, Any]], Any] | None = None
        self._origin = ""
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        self.round_trips = 0
        self.errors = 0
        self.reconnects = 0
        #: commits that found another worker's newer version (the change was re-run)
        self.conflicts = 0

    def _connect(self) -> None:
        """A new client, and the commit script registered with it."""
        self._async = self._make_client()
        self._commit = self._async.register_script(self._script.decode())

    # -- what a cluster changes ----------------------------------------------------------------
    def _make_client(self) -> Any:
        pool = self._aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.pool_timeout,
            **self._options,
        )
        # from_pool: the client owns the pool, so aclose() in close() disconnects its
        # connections (a client given a pool leaves them open, to be collected unclosed)
        return self._aioredis.Redis.from_pool(pool)

    def _make_pipe(self, timeout: float) -> CommitPipe | None:
        return CommitPipe.from_url(self.url, timeout)

    def state_key(self, key: str) -> str:
        """The Redis key of a state's hash."""
        return STATE_PREFIX + key

    def channel(self, key: str) -> str:
        """The pub/sub channel of a state's changes."""
        return CHANNEL_PREFIX + key

    def key_of_channel(self, channel: str) -> str:
        """The state key a channel carries changes of (the inverse of :meth:`channel`)."""
        return channel[len(CHANNEL_PREFIX) :]

    async def _new_pubsub(self) -> Any:
        options = {**self._options, "socket_timeout": None}
        return self._aioredis.Redis.from_url(self.url, **options).pubsub()

    async def _subscribe(self, pubsub: Any, channels: list[str]) -> None:
        await pubsub.subscribe(*channels)

    async def _unsubscribe(self, pubsub: Any, channel: str) -> None:
        await pubsub.unsubscribe(channel)

    async def _next_message(self, pubsub: Any) -> Any:
        return await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)

    # -- storage --------------------------------------------------------------------------------
    async def load(self, key: str) -> Stored | None:
        try:
            self.round_trips += 1
            row = await self._async.hmget(self.state_key(key), "v", "d")
        except self._errors as exc:
            raise self._unavailable(exc) from None
        return _stored(key, row)

    async def save(self, key: str, version: int, data: str, ttl: float | None) -> None:
        name = self.state_key(key)
        try:
            self.round_trips += 1
            async with self._async.pipeline(transaction=True) as pipe:
                pipe.hset(name, mapping={"v": version, "d": data})
                if ttl:
                    pipe.pexpire(name, int(ttl * 1000))
                await pipe.execute()
        except self._errors as exc:
            raise self._unavailable(exc) from None

    async def commit(
        self, key: str, expected: int, version: int, data: str, ttl: float | None, sse: bytes
    ) -> Stored | None:
        # the message other workers get, built as text (no dict, no json.dumps of one)
        message = (
            f'{{"o":{_quote(self._origin)},"v":{version},"s":{_quote(data)},'
            f'"d":{_quote(sse.decode())},"t":{time.time()!r}}}'
        )
        ttl_ms = int(ttl * 1000) if ttl else 0
        name, channel = self.state_key(key), self.channel(key)
        try:
            self.round_trips += 1
            if self._pipe is not None:
                result = await self._commit_piped(
                    name, expected, version, data, ttl_ms, channel, message
                )
            else:
                args = [expected, version, data, ttl_ms, channel, message]
                result = await self._commit(keys=[name], args=args)
        except self._errors as exc:
            raise self._unavailable(exc) from None
        if result == 1:
            return None
        self.conflicts += 1
        current, stored = result
        # no stored state (it expired, or the server lost its data): the change is re-run on
        # defaults, as a new state
        return Stored(_version(key, current), _text(stored) or "{}")

    async def _commit_piped(
        self,
        name: str,
        expected: int,
        version: int,
        data: str,
        ttl_ms: int,
        channel: str,
        message: str,
    ) -> Any:
        assert self._pipe is not None
        args = (
            b"1",
            name.encode(),
            b"%d" % expected,
            b"%d" % version,
            data.encode(),
            b"%d" % ttl_ms,
            channel.encode(),
            message.encode(),
        )
        try:
            try:
                return await self._pipe.call(b"EVALSHA", self._sha, *args)
            except ConnectionLost:
                # a connection the server closed (a restart): once more on a new one. If the
                # first one ran, the version check answers with exactly what we wrote: ours.
                result = await self._pipe.call(b"EVALSHA", self._sha, *args)
                if result == [b"%d" % version, args[4]]:
                    return 1
                return result
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise ConnectionError(f"redis refused the commit: {exc}") from None
        # a new or flushed server: send the script itself (Redis caches it for EVALSHA)
        try:
            return await self._pipe.call(b"EVAL", self._script, *args)
        except ReplyError as exc:
            raise ConnectionError(f"redis refused the commit: {exc}") from None

    async def delete(self, key: str) -> None:
        try:
            await self._async.delete(self.state_key(key))
        except self._errors as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        """The client-safe error; the cause (host, port, errno) goes to the log only."""
        self.errors += 1
        log.warning("redis unavailable: %s: %s", type(exc).__name__, exc)
        return BackendUnavailable("the state backend is unavailable; try again shortly")

    # -- pub/sub --------------------------------------------------------------------------------
    async def start(self, listener: Listener, origin: str) -> None:
        try:
            await self._async.ping()
        except self._errors as exc:
            raise self._unavailable(exc) from None
        self._listener = listener
        self._origin = origin
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen())

    def on_resubscribed(self, callback: Callable[[list[str]], Any]) -> None:
        """``callback(keys)`` runs after (re)subscribing: those keys may have changed unseen."""
        self._on_resubscribed = callback

    def on_control(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        self._on_control = callback

    async def publish_control(self, message: dict[str, Any]) -> None:
        data = json.dumps({"o": self._origin, "c": message}, separators=(",", ":"))
        try:
            await self._publish(self.channel(CONTROL), data)
        except self._errors as exc:
            raise self._unavailable(exc) from None

    async def _publish(self, channel: str, data: str) -> None:
        await self._async.publish(channel, data)

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
            pubsub: Any = None
            try:
                pubsub = await self._new_pubsub()
                await self._resubscribe(pubsub)
                backoff = 0.05
                while True:
                    await self._apply_pending(pubsub)
                    message = await self._next_message(pubsub)
                    if message is not None:
                        self._deliver(message)
            except asyncio.CancelledError:
                await _close_quietly(pubsub)
                raise
            except self._errors as exc:
                if self.healthy:
                    log.warning("redis pub/sub lost (%s); reconnecting", exc)
                    self.errors += 1
                self.healthy = False
                await _close_quietly(pubsub)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # never let the listener die silently
                log.exception("redis listener failed; restarting it")
                self.errors += 1
                await _close_quietly(pubsub)
                await asyncio.sleep(backoff)

    async def _resubscribe(self, pubsub: Any) -> None:
        """Subscribe a new pubsub connection to every watched key, then tell the store, which
        resyncs the tabs watching them (they may have changed meanwhile)."""
        keys = sorted(self._keys)
        self._pending.clear()
        channels = [self.channel(CONTROL), *(self.channel(k) for k in keys)]
        await self._subscribe(pubsub, channels)
        if not self.healthy:
            self.reconnects += 1
            log.warning("redis is back: resubscribed %d keys", len(keys))
        self.healthy = True
        if keys and self._on_resubscribed is not None:
            self._on_resubscribed(keys)

    async def _apply_pending(self, pubsub: Any) -> None:
        while self._pending:
            subscribe, key = self._pending.pop(0)
            if subscribe:
                await self._subscribe(pubsub, [self.channel(key)])
                if self._on_resubscribed is not None:
                    self._on_resubscribed([key])  # changes before the subscription took hold
            else:
                await self._unsubscribe(pubsub, self.channel(key))

    def _deliver(self, message: dict[str, Any]) -> None:
        try:
            channel = _text(message["channel"])
            body = json.loads(message["data"])
            if self._listener is None:
                return
            key = self.key_of_channel(channel)
            if key == CONTROL:  # another worker's message (our own come back too: skipped)
                if body.get("o") != self._origin and self._on_control is not None:
                    self._on_control(body["c"])
                return
            # our own changes come back too: the store skips those it delivered already
            observe = self.delivery_observer
            if observe is not None and "t" in body and body.get("o") != self._origin:
                observe(time.time() - float(body["t"]))
            self._listener(key, int(body["v"]), str(body["s"]), str(body["d"]).encode())
        except Exception:
            log.exception("bad message on %r", message.get("channel"))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # cancelled again until it ends: a pub/sub read of redis-py can swallow a cancel
            # (its read timeout and the cancel landing together: 2 closes in 6 against a real
            # cluster), and a close waiting for ever would hold up the app's shutdown
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(BaseException):
                await task
        if self._pipe is not None:
            self._pipe.close()
        # a new client for the next start: the pool binds its condition to the loop of the
        # first request that waited for a connection, and a store started again (a new
        # lifespan, a new test client) may run in another loop
        client = self._async
        self._connect()
        with contextlib.suppress(Exception):
            await client.aclose()

    def stats(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "subscribed_keys": len(self._keys),
            "round_trips": self.round_trips,
            "errors": self.errors,
            "reconnects": self.reconnects,
            "conflicts": self.conflicts,
        }


async def _close_quietly(pubsub: Any) -> None:
    if pubsub is not None:
        with contextlib.suppress(Exception):
            await pubsub.aclose()


#: a str as a JSON string literal (the C encoder json.dumps uses)
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stored(key: str, row: list[Any]) -> Stored | None:
    version, data = row
    if version is None or data is None:
        return None
    return Stored(_version(key, version), _text(data))


def _version(key: str, value: Any) -> int:
    """A stored version field as an int; anything else (a hash edited by hand, another
    program's key) is a StoredStateError (500, ``stored_state_invalid``), the cause logged."""
    try:
        return int(value)
    except (TypeError, ValueError):
        log.error("redis: state %s has a corrupt version field: %r", key, value)
        raise StoredStateError(f"stored state {key!r} has a corrupt version") from None


__all__ = ["RedisBackend"]
