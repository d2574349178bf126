"""The store (_store.py): the ttl sweep (saves first, skips busy instances, default ttls per
scope) and listing the live keys by scope and class."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    DEFAULT_TTLS,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
)
from faststate_mw.testing import FakeClock
from tests.apps.scopes import Listing, app
from tests.conftest import DS

saved: list[str] = []


class ScopesNote(State):
    __faststate__ = StateConfig(ttl=10, on_evict=lambda s: saved.append(s.text), writable=("text",))
    text: str = ""


class Chores(State):
    """A SESSION state and a GLOBAL one with the default ttls of their scopes."""

    done: int = 0


class Motd(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    text: str = "hi"


def _note_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> JSONResponse:
        n, c, m = ScopesNote.current(), Chores.current(), Motd.current()
        return JSONResponse({"key": n.key, "text": n.text, "chores": c.key, "motd": m.key})

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="notes", store=store)
    return app


async def test_ttl_eviction_saves_first_and_skips_busy_instances(
    clock: FakeClock, store: StateStore
) -> None:
    saved.clear()
    transport = httpx.ASGITransport(app=_note_app(store))
    keys = {}
    for sid in ("s1", "s2"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            keys[sid] = (await client.get("/")).json()["key"]
            body = {"scopesNote": {"text": sid * 3}}
            r = await client.post("/_faststate/ScopesNote/set_text", headers=DS, json=body)
            assert r.status_code == 200
    busy = store.get(keys["s2"])
    assert busy is not None and busy.text == "s2s2s2"
    clock.advance(11)
    async with busy.mutate():  # a change is running on s2's note
        assert await store.sweep() == [keys["s1"]]
    assert saved == ["s1s1s1"]  # on_evict ran before the instance was dropped
    assert store.get(keys["s1"]) is None and store.get(keys["s2"]) is busy
    clock.advance(11)
    assert await store.sweep() == [keys["s2"]]
    assert saved == ["s1s1s1", "s2s2s2"]
    assert store.keys(state_cls=ScopesNote) == []


async def test_default_ttls_apply_per_scope(clock: FakeClock, store: StateStore) -> None:
    session_ttl = DEFAULT_TTLS[StateScope.SESSION]
    assert session_ttl is not None and DEFAULT_TTLS[StateScope.GLOBAL] is None
    transport = httpx.ASGITransport(app=_note_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = (await client.get("/")).json()
        # back with the cookie: the session is confirmed and gets its scope's ttl (see
        # tests/security/test_limits.py for states of a client that never comes back)
        assert (await client.get("/")).json() == page
    clock.advance(session_ttl - 1)
    assert page["chores"] not in await store.sweep()
    clock.advance(2)
    assert page["chores"] in await store.sweep()
    clock.advance(365 * 24 * 3600)
    await store.sweep()
    assert store.keys() == [page["motd"]]  # a GLOBAL state never expires


def test_keys_by_scope_and_class(store: StateStore) -> None:
    client = TestClient(app(store))
    client.get("/product/1")
    client.get("/product/2")
    client.get("/draft")
    assert sorted(store.keys(state_cls=Listing)) == [
        "record:Listing:1",
        "record:Listing:2",
    ]
    assert len(store.keys(scope=StateScope.TEMPORARY)) == 1
    assert store.stats()["by_scope"] == {"record": 2, "temporary": 1}
