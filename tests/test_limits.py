"""The token buckets (_limits.py) answer as the tuple-per-key buckets they replaced: any
sequence of takes, keys and clock steps gives the same waits and forgets the same keys."""

from __future__ import annotations

from collections import OrderedDict

from hypothesis import given, settings
from hypothesis import strategies as st

from faststate_mw._limits import RateLimiter


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
        assert list(limiter._buckets) == list(reference.buckets)
    assert len(limiter) == len(reference.buckets)
