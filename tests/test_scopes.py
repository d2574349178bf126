"""All the scopes: keys, owners, ids from clients, entry points and events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import (
    ConfigurationError,
    FastStateMiddleware,
    ScopeRule,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
    register_scope,
)
from faststate_mw.testing import FakeClock
from tests.apps.scopes import app
from tests.conftest import API, DS
from tests.sse import patched_signals


# -- USER --------------------------------------------------------------------------------------
def test_user_scope_shared_across_sessions_of_one_user_only(store: StateStore) -> None:
    a = app(store)
    anon = TestClient(a)
    r = anon.get("/profile")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_required"
    r = anon.post("/_faststate/Profile/write?bio=x", headers=API, content=b"{}")
    assert r.status_code == 401
    assert store.keys(scope=StateScope.USER) == []

    phone, laptop, other = TestClient(a), TestClient(a), TestClient(a)
    phone.get("/login?user=alice")
    laptop.get("/login?user=alice")
    other.get("/login?user=bob")
    r = phone.post("/_faststate/Profile/write?bio=hello", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"profile": {"bio": "hello"}}]
    assert laptop.get("/profile").json()["data"] == {"bio": "hello"}
    assert laptop.get("/profile").json()["key"] == "user:alice:Profile"
    assert other.get("/profile").json()["data"] == {"bio": ""}
    laptop.get("/logout")
    assert laptop.get("/profile").status_code == 401


# -- COMPONENT ---------------------------------------------------------------------------------
def test_components_are_independent_and_carry_their_identity(store: StateStore) -> None:
    client = TestClient(app(store))
    page = client.get("/widgets").json()
    assert page["a"]["ident"] == "a" and page["b"]["ident"] == "b"
    assert page["fresh"]["ident"] not in ("a", "b")  # a generated id
    assert page["a_action"] == (
        '@post("/_faststate/Widget/increment?component_id=a", '
        '{"filterSignals": {"include": (/^(widget\\.a\\.|faststate\\.tab$)/)}})'
    )
    assert page["a_ref"] == "$widget.a.count"
    r = client.post("/_faststate/Widget/increment?component_id=a", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"widget": {"a": {"count": 1}}}]
    page = client.get("/widgets").json()
    assert page["a"]["data"] == {"count": 1}
    assert page["b"]["data"] == {"count": 0}


def test_component_ids_live_under_the_session(store: StateStore) -> None:
    a = app(store)
    owner, intruder = TestClient(a), TestClient(a)
    owner.get("/widgets")
    owner.post("/_faststate/Widget/increment?component_id=a", headers=DS, content=b"{}")
    r = intruder.post("/_faststate/Widget/increment?component_id=a", headers=DS, content=b"{}")
    # the intruder reaches only its own component "a", never the owner's
    assert patched_signals(r.text) == [{"widget": {"a": {"count": 1}}}]
    assert owner.get("/widgets").json()["a"]["data"] == {"count": 1}
    sids = {k.split(":")[1] for k in store.keys(scope=StateScope.COMPONENT)}
    assert len(sids) == 2


@pytest.mark.parametrize("bad", ["a:b", "a/b", "*", "ü", "1abc", "x" * 10_000, ""])
def test_bad_component_ids_are_rejected(bad: str, store: StateStore) -> None:
    client = TestClient(app(store))
    r = client.post(
        "/_faststate/Widget/increment", params={"component_id": bad}, headers=API, content=b"{}"
    )
    assert r.status_code == 400
    assert store.keys(scope=StateScope.COMPONENT) == []


def test_component_event_without_id_is_400(store: StateStore) -> None:
    r = TestClient(app(store)).post("/_faststate/Widget/increment", headers=API, content=b"{}")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_identifier"


# -- RECORD ------------------------------------------------------------------------------------
def test_record_shared_by_everyone_on_it_and_events_target_it(store: StateStore) -> None:
    a = app(store)
    one, two = TestClient(a), TestClient(a)
    page = one.get("/product/7").json()
    assert page["key"] == "record:Listing:7"
    assert page["action"].startswith('@post("/_faststate/Listing/like?record_id=7", ')
    one.post("/_faststate/Listing/like?record_id=7", headers=DS, content=b"{}")
    assert two.get("/product/7").json()["data"] == {"likes": 1}
    assert two.get("/item/7").json()["data"] == {"likes": 1}  # `id` path param
    assert two.get("/product?record_id=7").json()["data"] == {"likes": 1}
    assert two.get("/product?id=7").json()["data"] == {"likes": 1}
    assert two.get("/product/8").json()["data"] == {"likes": 0}


def test_record_without_id_is_400(store: StateStore) -> None:
    client = TestClient(app(store))
    r = client.get("/product")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_identifier"
    r = client.post("/_faststate/Listing/like", headers=API, content=b"{}")
    assert r.status_code == 400


@pytest.mark.parametrize(
    "rid", ["a:b", "global", "7:Listing", "a/b", "*", "ü✓", "x" * 200, "%3A", "7%20"]
)
def test_record_ids_are_escaped_into_distinct_keys(rid: str, store: StateStore) -> None:
    client = TestClient(app(store))
    r = client.post(
        "/_faststate/Listing/like", params={"record_id": rid}, headers=DS, content=b"{}"
    )
    assert r.status_code == 200
    (key,) = store.keys(scope=StateScope.RECORD)
    assert key.count(":") == 2  # nothing a client sends can add a level to the key
    assert key.startswith("record:Listing:")
    assert store.get(key).identity == rid  # type: ignore[union-attr]
    # and it is not the same record as a plain neighbour
    client.post("/_faststate/Listing/like?record_id=7", headers=DS, content=b"{}")
    assert len(store.keys(scope=StateScope.RECORD)) == 2


def test_huge_record_id_is_rejected(store: StateStore) -> None:
    r = TestClient(app(store)).post(
        "/_faststate/Listing/like", params={"record_id": "x" * 10_000}, headers=API, content=b"{}"
    )
    assert r.status_code == 400
    assert store.keys(scope=StateScope.RECORD) == []


def test_user_ids_are_escaped_too(store: StateStore) -> None:
    a = app(store)
    evil = TestClient(a)
    evil.get("/login?user=alice:Profile")
    assert evil.get("/profile").json()["key"] == "user:alice%3AProfile:Profile"


def test_record_ids_in_reserved_argument_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="reserved"):

        class ReservedArgRecord(State):
            __faststate__ = StateConfig(scope=StateScope.RECORD)

            @event
            def f(self, record_id: int) -> None:
                pass


# -- TEMPORARY and TTL -------------------------------------------------------------------------
async def test_temporary_state_is_gone_after_its_ttl(clock: FakeClock, store: StateStore) -> None:
    transport = httpx.ASGITransport(app=app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/draft")
        await client.post("/_faststate/Draft/next_step", headers=DS, content=b"{}")
        assert (await client.get("/draft")).json()["data"] == {"step": 2}
        assert (await client.get("/draft")).json()["key"].startswith("temporary:")
        clock.advance(14 * 60)
        assert await store.sweep() == []
        assert (await client.get("/draft")).json()["data"] == {"step": 2}  # touched: idle resets
        clock.advance(15 * 60 + 1)
        evicted = await store.sweep()
        assert len(evicted) == 1 and evicted[0].startswith("temporary:")
        assert store.keys(scope=StateScope.TEMPORARY) == []
        assert (await client.get("/draft")).json()["data"] == {"step": 1}


# -- custom scope ------------------------------------------------------------------------------
class _Shelf(ScopeRule):
    """A custom scope whose owner a test changes by registering it again."""

    name = "shelf"

    def __init__(self, owner: str) -> None:
        self.shelf = owner

    def owner(self, ctx: Any) -> str | None:
        return self.shelf


def test_an_event_follows_a_custom_scope_registered_again(store: StateStore) -> None:
    """A custom scope's rule is looked up on every event, also on a path served before."""
    register_scope(_Shelf("one"))

    class ShelfCount(State):
        __faststate__ = StateConfig(scope="shelf")
        n: int = 0

        @event
        def bump(self) -> None:
            self.n += 1

    client = TestClient(FastStateMiddleware(Starlette(), secret_key="shelf", store=store))
    for owner in ("one", "two"):
        register_scope(_Shelf(owner))
        r = client.post("/_faststate/ShelfCount/bump", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"shelfCount": {"n": 1}}]
    assert sorted(store.keys(scope="shelf")) == ["shelf:one:ShelfCount", "shelf:two:ShelfCount"]


def test_custom_site_scope_from_header_or_host(store: StateStore) -> None:
    client = TestClient(app(store))
    assert client.get("/site", headers={"x-site": "acme"}).json()["key"] == ("site:acme:SiteTheme")
    assert client.get("/site").json()["key"] == "site:testserver:SiteTheme"
    assert client.get("/site", headers={"x-site": "a:b"}).json()["key"] == ("site:a%3Ab:SiteTheme")
    assert sorted(store.keys(scope="site")) == [
        "site:a%3Ab:SiteTheme",
        "site:acme:SiteTheme",
        "site:testserver:SiteTheme",
    ]
