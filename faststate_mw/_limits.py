"""The bounds on what clients can make one app hold, and the token buckets that rate events.

Every resource a client can create or keep busy has a bound here, with a safe default, set per
app with ``StateStore(limits=Limits(...))`` or ``FastStateMiddleware(..., limits=Limits(...))``
(see README, "Limits"). Going over a bound is a clear error (429, 413, 408 or 504), never
unbounded growth.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ._exceptions import ConfigurationError, TooManyRequests


@dataclass(frozen=True)
class Limits:
    """The bounds of one app. Every field is a positive number; the defaults suit one process
    serving a few thousand users."""

    #: seconds a state made by a request without a session cookie lives idle, until the
    #: client comes back with the cookie (then it gets its scope's normal ttl)
    fresh_session_ttl: float = 120.0
    #: how many such unconfirmed sessions are held, and how many bytes their states may take
    #: (as JSON); the oldest one's states go first
    max_fresh_sessions: int = 1_000
    max_fresh_bytes: int = 16 * 1024 * 1024
    #: live instances in all, and per scope (``session``, ``record``, ...); the least recently
    #: used idle ones are saved (as the ttl sweep saves) and dropped to make room
    max_instances: int = 200_000
    max_instances_per_scope: int = 100_000
    #: the bytes (as JSON, at their last change) of every state together; the least recently
    #: used idle ones are saved and dropped when a new instance would go over
    max_total_bytes: int = 512 * 1024 * 1024
    #: COMPONENT instances one session may hold (429 beyond)
    max_components_per_session: int = 100
    #: open live streams per session, per client address (many sessions behind one address:
    #: a NAT, or one client making sessions to hold every slot), and in all (429 beyond)
    max_streams_per_session: int = 16
    max_streams_per_address: int = 1_000
    max_streams: int = 10_000
    #: events per second (sustained) and in a burst, per session and per client address
    event_rate: float = 20.0
    event_burst: int = 60
    address_event_rate: float = 100.0
    address_event_burst: int = 300
    #: how many sessions / addresses the rate limiter remembers (the least recent go first)
    max_rate_keys: int = 100_000
    #: a state whose JSON would be larger is refused (413) and rolled back
    max_state_bytes: int = 256 * 1024
    #: seconds a request body may take to arrive (408 beyond)
    body_timeout: float = 10.0
    #: seconds an async event (or one step of a generator event) may run (504 beyond)
    event_timeout: float = 30.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ConfigurationError(f"Limits.{f.name} must be a positive number")


class RateLimiter:
    """Token buckets by key: ``rate`` tokens a second, at most ``burst`` saved up. Remembers
    at most ``max_keys`` keys, and forgets those whose bucket has filled up again as new keys
    come (a forgotten key starts again with a full bucket)."""

    __slots__ = ("_buckets", "burst", "clock", "max_keys", "rate")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float], max_keys: int
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        #: key -> [tokens, when they were counted], least recently used first (a list: a
        #: bucket is updated in place)
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token of ``key``'s bucket: 0.0 if there was one, else the seconds until
        there will be (nothing is spent then). ``now``: the clock's time, if the caller read
        it."""
        if now is None:
            now = self.clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            tokens = self.burst
            # a bucket left alone for burst/rate seconds is full again (its tokens never go
            # below 0): forgetting it changes no answer. Those go first, least recent first, so
            # the buckets follow the keys sending now instead of every session since the start
            # until max_keys (sessions churn: 100k buckets are ~20 MiB, held for nothing)
            while buckets:
                oldest = next(iter(buckets.values()))
                if (now - oldest[1]) * self.rate < self.burst:
                    break
                buckets.popitem(last=False)
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
            bucket = buckets[key] = [tokens, now]
        else:
            tokens = bucket[0] + (now - bucket[1]) * self.rate
            if not tokens < self.burst:  # min(burst, tokens)
                tokens = self.burst
            buckets.move_to_end(key)
            bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate
        bucket[0] = tokens - 1.0
        return 0.0

    def __len__(self) -> int:
        return len(self._buckets)


_SESSION_SLOW = "too many events from this session; slow down"
_ADDRESS_SLOW = "too many events from this address; slow down"


class EventLimiter:
    """The per-session and per-address buckets events go through."""

    __slots__ = ("addresses", "sessions")

    def __init__(self, limits: Limits, clock: Callable[[], float]) -> None:
        self.sessions = RateLimiter(
            limits.event_rate, limits.event_burst, clock, limits.max_rate_keys
        )
        self.addresses = RateLimiter(
            limits.address_event_rate, limits.address_event_burst, clock, limits.max_rate_keys
        )

    def check(self, session_id: str | None, address: str | None) -> None:
        """Raise TooManyRequests (with the seconds to wait) when either bucket is empty. The
        session's bucket comes first: a session that is refused spends nothing of its
        address's (other sessions behind the same address keep theirs). This runs on every
        event, so a known key's ``RateLimiter.take`` is written out here (a new key goes
        through it; tests/test_limits.py holds both to the same figures)."""
        sessions = self.sessions
        now = sessions.clock()  # one reading for both buckets (they share the clock)
        for limiter, key, slow in (
            (sessions, session_id, _SESSION_SLOW),
            (self.addresses, address, _ADDRESS_SLOW),
        ):
            if key is None:
                continue
            buckets = limiter._buckets
            bucket = buckets.get(key)
            if bucket is None:
                wait = limiter.take(key, now)
                if wait:
                    raise TooManyRequests(slow, retry_after=wait)
                continue
            tokens = bucket[0] + (now - bucket[1]) * limiter.rate
            if not tokens < limiter.burst:
                tokens = limiter.burst
            buckets.move_to_end(key)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                raise TooManyRequests(slow, retry_after=(1.0 - tokens) / limiter.rate)
            bucket[0] = tokens - 1.0


__all__ = ["EventLimiter", "Limits", "RateLimiter"]
