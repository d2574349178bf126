"""A stream that stopped delivering a key (a logout, a rotated session, refresh_user) never gets
it again, even when the key starts over (evicted under the caps and made again)."""

from __future__ import annotations

from faststate_mw import StateStore
from faststate_mw._hub import Connection, Hub
from tests.apps.live import SENTINEL, live_browser, mark


async def test_a_logged_out_tab_gets_no_snapshot_of_a_key_that_started_over() -> None:
    store = StateStore(heartbeat=0.05)
    async with live_browser(store) as (_app, (browser, tab)):
        phone, laptop = browser(), browser()
        await phone.get("/login?user=carol")
        await laptop.get("/login?user=carol")
        t = await tab(phone)
        other = await tab(laptop)
        assert t.stream is not None
        for _ in range(3):
            await other.fire("LiveUser")
        got = [await t.stream.next() for _ in range(3)]
        assert got[-1]["signals"] == {"liveUser": {"n": 3}}
        await phone.get("/logout")  # bob may sit at this browser next
        # carol's state is evicted (the caps) and made again: its versions count from 1
        store.discard("user:carol:LiveUser")
        await other.fire("LiveUser")
        await t.stream.wait_for(lambda: t.stream is not None and t.stream.comments >= 2)
        await mark(store)
        assert await t.stream.before(SENTINEL) == []


def test_an_unsubscribed_tab_is_not_resynced_when_the_key_starts_over() -> None:
    hub = Hub()
    patch = b"event: datastar-patch-signals\ndata: signals {}\n"
    gone = Connection("s1", None, "t1", ["user:carol:Note"], [5])
    kept = Connection("s2", None, "t2", ["user:carol:Note"], [5])
    hub.add(gone)
    hub.add(kept)
    hub.unsubscribe(gone, "user:carol:Note")  # signed out
    hub.publish("user:carol:Note", 1, patch)  # the key was made again
    assert hub.pending(gone) is None and gone.resync == set()
    assert hub.pending(kept) is None and kept.resync == {0}
