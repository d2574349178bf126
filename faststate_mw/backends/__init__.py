"""Storage and pub/sub backends, chosen by URL or passed as an object.

- ``memory://`` (default): this process only, nothing survives a restart; the fastest path.
- ``sqlite:///path.db``: embedded and durable on one host.
- ``redis://host:port/db``: durable (as the Redis server is) and shared by any number of workers
  and machines, with live changes delivered across them. Needs ``faststate-mw[redis]``.
- ``redis+cluster://host:port``: the same over a Redis Cluster (states sharded by key, sharded
  pub/sub for delivery).
"""

from __future__ import annotations

from .._exceptions import ConfigurationError
from .base import Backend, MemoryBackend, Stored


def backend_from_url(target: str | Backend | None) -> Backend:
    """A backend from a URL (or a Backend object, returned as is)."""
    if target is None:
        return MemoryBackend()
    if isinstance(target, Backend):
        return target
    if not isinstance(target, str):
        raise ConfigurationError(f"backend must be a URL or a Backend, not {type(target).__name__}")
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise ConfigurationError(
            f"backend URL {target!r} has no scheme (memory://, sqlite:///, redis://)"
        )
    if scheme == "memory":
        return MemoryBackend()
    if scheme == "sqlite":
        path = rest[1:] if rest.startswith("/") else rest
        if not path:
            raise ConfigurationError("sqlite backend URL needs a path: sqlite:///path/to/state.db")
        from .sqlite import SQLiteBackend

        return SQLiteBackend(path)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisBackend

        return RedisBackend(target)
    if scheme == "redis+cluster":
        from .redis_cluster import RedisClusterBackend

        return RedisClusterBackend(target)
    raise ConfigurationError(
        f"unknown backend scheme {scheme!r} (memory, sqlite, redis, redis+cluster)"
    )


__all__ = ["Backend", "MemoryBackend", "Stored", "backend_from_url"]
