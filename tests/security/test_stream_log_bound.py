"""A watched key's log of recent changes keeps bounded bytes (found by the hsec audit): it kept
the last 64 changes whole, twice (the event lines, and the message a one-key stream sends).
Over real uvicorn, each anonymous session with one open stream that set its message 70 times to
200 kB strings grew example_app by 25 MB: 10,000 streams could pin 250 GB. Past
``Hub.max_log_bytes`` per key (or ``max_logs_bytes`` in all) the oldest changes go, and a tab
that was further behind gets a resync with the current state: nothing is lost."""

from __future__ import annotations

from typing import Any

from faststate_mw import StateStore
from faststate_mw._hub import MAX_LOG_BYTES, MAX_LOGS_BYTES
from tests.test_views import browsers, the_list

__all__ = ["browsers"]  # the fixture, shared with tests/test_views.py


async def test_a_stalled_tab_pins_no_more_than_the_log_bound(
    browsers: Any, store: StateStore
) -> None:
    hub = store.hub
    assert (hub.max_log_bytes, hub.max_logs_bytes) == (MAX_LOG_BYTES, MAX_LOGS_BYTES)
    _html, s = await browsers().tab("/list/1?views=")
    lst = await the_list(store)
    key = lst.key
    s.stall()  # a tab that reads nothing while the changes pile up
    for n in range(20):
        await lst.update(items=[f"{n}-" + "x" * 200_000])  # ~400 kB in the log each
    one = 2 * 200_000 + 1_000  # the latest change, which always stays
    assert hub.log_bytes[key] <= MAX_LOG_BYTES + one
    assert hub.logs_bytes == sum(hub.log_bytes.values())
    assert len(hub.logs[key]) < 20
    s.resume()
    # the tab ends up with the latest list (a resync, since it fell behind what the log keeps)
    while True:
        got = (await s.next()).get("signals") or {}
        items = got.get("viewList", {}).get("items")
        if items is not None and items[0].startswith("19-"):
            break
    await s.close()
    assert key not in hub.log_bytes  # nobody watches: the log and its count are gone
    assert hub.logs_bytes == 0


async def test_all_logs_together_stay_under_their_bound(browsers: Any, store: StateStore) -> None:
    hub = store.hub
    hub.max_logs_bytes = 1_500_000
    tabs = [(await browsers().tab(f"/list/{n}?views="))[1] for n in range(5)]
    for n in range(5):
        lst = await the_list(store, n)
        for i in range(3):
            await lst.update(items=[f"{i}-" + "y" * 100_000])  # ~200 kB each
    one = 2 * 100_000 + 1_000
    assert hub.logs_bytes <= 1_500_000 + 5 * one
    assert all(len(log) >= 1 for log in hub.logs.values())
    for s in tabs:
        await s.close()
