"""The short soak (``make soak`` at a small size): a real uvicorn server, tabs with live streams
on every scope, events, page loads, reconnects, sign-ins and sign-outs. Any error, stale tab or
counter that differs from what was acknowledged fails the test."""

from __future__ import annotations

from bench.soak import report, run_soak


def test_a_short_soak_ends_with_no_error_no_stale_tab_and_every_counter_right() -> None:
    result = run_soak(seconds=10, tabs=60, rate=60)
    print("\n".join(report(result)))
    assert result["errors"] == {}
    assert result["stale_tabs"] == 0
    assert result["lost_acknowledged"] == 0 and result["counted_unacknowledged"] == 0
    assert result["events"] > 100
    assert {"event", "page load", "stream reconnect", "sign-in/out"} <= set(result["actions"])
    assert result["streams_open_at_end"] == 60
