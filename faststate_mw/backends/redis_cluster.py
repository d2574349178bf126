"""``redis+cluster://host:port``: states sharded over a Redis Cluster.

The same protocol as ``redis://`` (one Lua compare-and-set per change), with two differences:

- every name carries the state key as a hash tag, ``faststate:state:{<key>}`` and
  ``faststate:chan:{<key>}``, so a state, its version and its channel live in one slot, and the
  commit script may write the state and publish in one step on the shard that owns it;
- delivery uses sharded pub/sub (``SPUBLISH`` / ``SSUBSCRIBE``): a change travels only inside its
  shard instead of being broadcast to every node of the cluster.

Keys never contain ``{`` or ``}`` (ids are percent-encoded, names are identifiers), so the tag is
the whole key. When a master fails, commands fail (503) until its replica takes over; the
subscriber then reconnects, subscribes again on the new master and every tab resyncs.
Any node of the cluster can be named in the URL: the client discovers the others.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ._pipe import CommitPipe
from .redis import RedisBackend

STATE_PREFIX = "faststate:state:{"
CHANNEL_PREFIX = "faststate:chan:{"


class RedisClusterBackend(RedisBackend):
    """Redis Cluster for state and sharded pub/sub. Needs ``pip install faststate-mw[redis]``.

    ``max_connections`` bounds the connections to each node."""

    publish_command = "SPUBLISH"

    def __init__(self, url: str, **options: Any) -> None:
        # redis-py reads a cluster URL as redis://; the scheme only chose this backend
        super().__init__(url.replace("redis+cluster://", "redis://", 1), **options)
        self.url = url
        #: the client behind the sharded subscriptions (renewed on every reconnect)
        self._sub_client: Any = None

    def _make_client(self) -> Any:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(
            self.url.replace("redis+cluster://", "redis://", 1),
            max_connections=self.max_connections,
            **self._options,
        )

    def _make_pipe(self, timeout: float) -> CommitPipe | None:
        return None  # commits go through the cluster client, which routes them by slot

    def state_key(self, key: str) -> str:
        return f"{STATE_PREFIX}{key}}}"

    def channel(self, key: str) -> str:
        return f"{CHANNEL_PREFIX}{key}}}"

    def key_of_channel(self, channel: str) -> str:
        return channel[len(CHANNEL_PREFIX) : -1]

    async def _new_pubsub(self) -> Any:
        # a client of its own, initialized now: it learns the current slot owners (after a
        # failover, the promoted replicas)
        old, self._sub_client = self._sub_client, self._make_client()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.aclose()
        await self._sub_client.initialize()
        return self._sub_client.pubsub()

    async def close(self) -> None:
        await super().close()
        if self._sub_client is not None:
            with contextlib.suppress(Exception):
                await self._sub_client.aclose()
            self._sub_client = None

    async def _publish(self, channel: str, data: str) -> None:
        await self._async.spublish(channel, data)

    async def _subscribe(self, pubsub: Any, channels: list[str]) -> None:
        await pubsub.ssubscribe(*channels)

    async def _unsubscribe(self, pubsub: Any, channel: str) -> None:
        await pubsub.sunsubscribe(channel)

    async def _next_message(self, pubsub: Any) -> Any:
        return await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.05)


__all__ = ["RedisClusterBackend"]
