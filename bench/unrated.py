"""Limits without the event rate limit or the per-address stream cap: benchmarks send bursts and
open thousands of streams from one address."""

from __future__ import annotations

from faststate_mw import Limits

UNRATED = Limits(
    event_rate=1e9,
    event_burst=10**9,
    address_event_rate=1e9,
    address_event_burst=10**9,
    max_streams_per_address=10**9,
)
