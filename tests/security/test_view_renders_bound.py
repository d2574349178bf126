"""Per-viewer renders are cached per (key, view, viewer) while some tab watches the key (found by
the hsec audit): with one tab kept open on a shared list, every other user who ever opened it
left a cached render behind until that last tab closed. Users are free to make where sign-up is
(example_app: any name signs in), so the cache grew without bound. It keeps at most
``ViewLog.max_renders`` renders per key, dropping the least recently stored."""

from __future__ import annotations

from typing import Any

from faststate_mw import StateStore
from faststate_mw._viewlog import MAX_RENDERS_PER_KEY
from tests.test_views import browsers, elements, the_list

__all__ = ["browsers"]  # the fixture, shared with tests/test_views.py


async def test_renders_of_viewers_who_left_are_bounded(browsers: Any, store: StateStore) -> None:
    views = store.hub.views
    assert views.max_renders == MAX_RENDERS_PER_KEY >= 16
    views.max_renders = 8  # the same code path, with a bound small enough to pass quickly
    _html, watcher = await browsers().tab("/list/1?views=who_view")  # keeps the key watched
    lst = await the_list(store)
    for n in range(30):
        b = browsers()
        await b.client.get(f"/login?user=u{n}")
        _html, s = await b.tab("/list/1?views=who_view")
        await lst.update(items=[str(n)])
        await s.next()
        assert f"<p>u{n}:1</p>" in elements(await s.next())
        await s.close()
        await watcher.next()
        assert "<p>anon:1</p>" in elements(await watcher.next())
    cached = views.renders[next(iter(views.renders))]
    assert len(views.renders) == 1
    assert len(cached) <= 8
    # a viewer still watching is served (the render is redone when it was dropped)
    b = browsers()
    await b.client.get("/login?user=u0")
    _html, s = await b.tab("/list/1?views=who_view")
    await lst.update(items=["again"])
    await s.next()
    assert "<p>u0:1</p>" in elements(await s.next())
