"""All the scopes: keys, owners, ids from clients, entry points and events."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    DEFAULT_TTLS,
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
from tests.conftest import API, DS
from tests.helpers import patched_signals


class Profile(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    bio: str = ""

    @event
    def write(self, bio: str) -> None:
        self.bio = bio


class Widget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1


class Product(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    likes: int = 0

    @event
    def like(self) -> None:
        self.likes += 1


class Draft(State):
    __faststate__ = StateConfig(scope=StateScope.TEMPORARY)
    step: int = 1

    @event
    def next_step(self) -> None:
        self.step += 1


class TenantScope(ScopeRule):
    name = "tenant"

    def owner(self, ctx: Any) -> str | None:
        return ctx.request.headers.get("x-tenant") or ctx.request.url.hostname


register_scope(TenantScope())


class TenantSettings(State):
    __faststate__ = StateConfig(scope="tenant")
    theme: str = "light"


def _payload(inst: State) -> dict[str, Any]:
    return {"key": inst.key, "data": inst.public_data(), "ident": inst.identity}


def app(store: StateStore) -> Starlette:
    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        return PlainTextResponse("ok")

    async def logout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    async def profile(request: Request) -> JSONResponse:
        return JSONResponse(_payload(Profile.current()))

    async def widgets(request: Request) -> JSONResponse:
        a, b = Widget.component("a"), Widget.component("b")
        fresh = Widget.current()
        return JSONResponse(
            {
                "a": _payload(a),
                "b": _payload(b),
                "fresh": _payload(fresh),
                "a_action": a.actions.increment(),
                "a_ref": a.ref("count"),
            }
        )

    async def product(request: Request) -> JSONResponse:
        p = Product.current()
        return JSONResponse({**_payload(p), "action": p.actions.like()})

    async def draft(request: Request) -> JSONResponse:
        return JSONResponse(_payload(Draft.current()))

    async def tenant(request: Request) -> JSONResponse:
        return JSONResponse(_payload(TenantSettings.current()))

    return Starlette(
        routes=[
            Route("/login", login),
            Route("/logout", logout),
            Route("/profile", profile),
            Route("/widgets", widgets),
            Route("/product/{record_id}", product),
            Route("/item/{id}", product),
            Route("/product", product),
            Route("/draft", draft),
            Route("/tenant", tenant),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="scopes", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


# -- USER --------------------------------------------------------------------------------------
def test_user_state_must_require_auth() -> None:
    with pytest.raises(ConfigurationError, match="requires_auth"):

        class LooseUserState(State):
            __faststate__ = StateConfig(scope=StateScope.USER)
            x: int = 0


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
    assert page["key"] == "record:Product:7"
    assert page["action"].startswith('@post("/_faststate/Product/like?record_id=7", ')
    one.post("/_faststate/Product/like?record_id=7", headers=DS, content=b"{}")
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
    r = client.post("/_faststate/Product/like", headers=API, content=b"{}")
    assert r.status_code == 400


@pytest.mark.parametrize(
    "rid", ["a:b", "global", "7:Product", "a/b", "*", "ü✓", "x" * 200, "%3A", "7%20"]
)
def test_record_ids_are_escaped_into_distinct_keys(rid: str, store: StateStore) -> None:
    client = TestClient(app(store))
    r = client.post(
        "/_faststate/Product/like", params={"record_id": rid}, headers=DS, content=b"{}"
    )
    assert r.status_code == 200
    (key,) = store.keys(scope=StateScope.RECORD)
    assert key.count(":") == 2  # nothing a client sends can add a level to the key
    assert key.startswith("record:Product:")
    assert store.get(key).identity == rid  # type: ignore[union-attr]
    # and it is not the same record as a plain neighbour
    client.post("/_faststate/Product/like?record_id=7", headers=DS, content=b"{}")
    assert len(store.keys(scope=StateScope.RECORD)) == 2


def test_huge_record_id_is_rejected(store: StateStore) -> None:
    r = TestClient(app(store)).post(
        "/_faststate/Product/like", params={"record_id": "x" * 10_000}, headers=API, content=b"{}"
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
    import httpx

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


saved: list[str] = []


class ScopesNote(State):
    __faststate__ = StateConfig(ttl=10, on_evict=lambda s: saved.append(s.text))
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
    import httpx

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
    import httpx

    session_ttl = DEFAULT_TTLS[StateScope.SESSION]
    assert session_ttl is not None and DEFAULT_TTLS[StateScope.GLOBAL] is None
    transport = httpx.ASGITransport(app=_note_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = (await client.get("/")).json()
    clock.advance(session_ttl - 1)
    assert page["chores"] not in await store.sweep()
    clock.advance(2)
    assert page["chores"] in await store.sweep()
    clock.advance(365 * 24 * 3600)
    await store.sweep()
    assert store.keys() == [page["motd"]]  # a GLOBAL state never expires


# -- custom scope ------------------------------------------------------------------------------
def test_custom_tenant_scope_from_header_or_host(store: StateStore) -> None:
    client = TestClient(app(store))
    assert client.get("/tenant", headers={"x-tenant": "acme"}).json()["key"] == (
        "tenant:acme:TenantSettings"
    )
    assert client.get("/tenant").json()["key"] == "tenant:testserver:TenantSettings"
    assert client.get("/tenant", headers={"x-tenant": "a:b"}).json()["key"] == (
        "tenant:a%3Ab:TenantSettings"
    )
    assert sorted(store.keys(scope="tenant")) == [
        "tenant:a%3Ab:TenantSettings",
        "tenant:acme:TenantSettings",
        "tenant:testserver:TenantSettings",
    ]


def test_unknown_scope_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown scope"):
        StateConfig(scope="planet")


def test_keys_by_scope_and_class(store: StateStore) -> None:
    client = TestClient(app(store))
    client.get("/product/1")
    client.get("/product/2")
    client.get("/draft")
    assert sorted(store.keys(state_cls=Product)) == [
        "record:Product:1",
        "record:Product:2",
    ]
    assert len(store.keys(scope=StateScope.TEMPORARY)) == 1
    assert store.stats()["by_scope"] == {"record": 2, "temporary": 1}
