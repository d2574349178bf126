"""The token buckets (_limits.py) answer as the tuple-per-key buckets they replaced: any
sequence of takes, keys and clock steps gives the same waits and forgets the same keys (and
may forget sooner a key whose bucket is full again: no answer changes), taken one at a time or
by the event limiter's check. Keys that stopped sending are not held for ever."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faststate_mw._exceptions import TooManyRequests
from faststate_mw._limits import EventLimiter, Limits, RateLimiter


class _TupleBuckets:
    """The buckets as they were: ``min()`` and a new (tokens, time) tuple per take."""

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        self.rate, self.burst, self.max_keys = rate, float(burst), max_keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        buckets = self.buckets
        found = buckets.get(key)
        if found is None:
            tokens = self.burst
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
        else:
            tokens = min(self.burst, found[0] + (now - found[1]) * self.rate)
            buckets.move_to_end(key)
        if tokens < 1.0:
            buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate
        buckets[key] = (tokens - 1.0, now)
        return 0.0


def _same_buckets(limiter: RateLimiter, reference: _TupleBuckets, now: float) -> None:
    """The limiter holds the reference's buckets in the same order, but for some that are
    full again by ``now`` (forgetting one changes no answer)."""
    held = {k: tuple(b) for k, b in limiter._buckets.items()}
    assert list(held) == [k for k in reference.buckets if k in held]
    for key, (tokens, at) in reference.buckets.items():
        if key in held:
            assert held[key] == (tokens, at)
        else:
            assert min(reference.burst, tokens + (now - at) * reference.rate) == reference.burst


@given(
    rate=st.floats(0.1, 100.0),
    burst=st.integers(1, 10),
    max_keys=st.integers(1, 4),
    steps=st.lists(
        st.tuples(st.sampled_from("abcde"), st.floats(0.0, 2.0), st.booleans()), max_size=60
    ),
)
@settings(max_examples=300, deadline=None)
def test_buckets_answer_as_before(
    rate: float, burst: int, max_keys: int, steps: list[tuple[str, float, bool]]
) -> None:
    now = [0.0]
    limiter = RateLimiter(rate, burst, lambda: now[0], max_keys)
    reference = _TupleBuckets(rate, burst, max_keys)
    for key, step, own_clock in steps:
        now[0] += step
        wait = limiter.take(key) if own_clock else limiter.take(key, now[0])
        assert wait == reference.take(key, now[0])
        _same_buckets(limiter, reference, now[0])
    assert len(limiter) <= len(reference.buckets)


@given(
    rates=st.tuples(st.floats(0.1, 100.0), st.floats(0.1, 100.0)),
    bursts=st.tuples(st.integers(1, 10), st.integers(1, 10)),
    max_keys=st.integers(1, 4),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["s1", "s2", "s3", None]),
            st.sampled_from(["a1", "a2", "a3", None]),
            st.floats(0.0, 2.0),
        ),
        max_size=60,
    ),
)
@settings(max_examples=300, deadline=None)
def test_event_limiter_answers_as_two_bucket_tables(
    rates: tuple[float, float],
    bursts: tuple[int, int],
    max_keys: int,
    steps: list[tuple[str | None, str | None, float]],
) -> None:
    """``EventLimiter.check`` (which writes out a known key's take) waits and forgets as the
    session's table, then the address's, would: a refused session spends nothing of its
    address's bucket."""
    now = [0.0]
    limits = Limits(
        event_rate=rates[0],
        event_burst=bursts[0],
        address_event_rate=rates[1],
        address_event_burst=bursts[1],
        max_rate_keys=max_keys,
    )
    limiter = EventLimiter(limits, lambda: now[0])
    sessions = _TupleBuckets(rates[0], bursts[0], max_keys)
    addresses = _TupleBuckets(rates[1], bursts[1], max_keys)
    for session_id, address, step in steps:
        now[0] += step
        wait = 0.0
        if session_id is not None:
            wait = sessions.take(session_id, now[0])
        if not wait and address is not None:
            wait = addresses.take(address, now[0])
        if wait:
            with pytest.raises(TooManyRequests) as refused:
                limiter.check(session_id, address)
            assert refused.value.retry_after == wait
        else:
            limiter.check(session_id, address)
        _same_buckets(limiter.sessions, sessions, now[0])
        _same_buckets(limiter.addresses, addresses, now[0])


def test_buckets_of_sessions_gone_quiet_are_not_kept() -> None:
    """A site whose sessions come and go (new visitors, sign-ins) holds the buckets of the
    sessions sending now, not one for every session since the start up to ``max_rate_keys``
    (a soak of 1,000 tabs made ~3 new sessions a second, each bucket held for nothing)."""
    now = [0.0]
    limits = Limits(event_rate=20.0, event_burst=60)
    limiter = EventLimiter(limits, lambda: now[0])
    for n in range(10_000):
        now[0] += 0.5  # one new session every half second, each sending one event
        limiter.check(f"session-{n}", "10.0.0.1")
    # full again after burst / rate = 3 s: only the last few seconds' sessions are held
    assert len(limiter.sessions) <= 7
    assert len(limiter.addresses) == 1
    # a session still sending keeps its bucket (and its spent tokens)
    for _ in range(60):
        limiter.check("busy", "10.0.0.1")
    now[0] += 0.01
    limiter.check("newcomer", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        limiter.check("busy", "10.0.0.1")
