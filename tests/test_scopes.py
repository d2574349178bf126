"""All the scopes: keys, owners, ids from clients, entry points and events."""

from __future__ import annotations

from collections.abc import Iterator
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
    ConfigurationError,
    FastStateMiddleware,
    ScopeRule,
    State,
    StateConfig,
    StateScope,
    event,
    register_scope,
    state_registry,
)
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


def app() -> Starlette:
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
            Middleware(FastStateMiddleware, secret_key="scopes"),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


@pytest.fixture
def clock() -> Iterator[list[float]]:
    now = [1000.0]
    old = state_registry.clock
    state_registry.clock = lambda: now[0]
    yield now
    state_registry.clock = old


# -- USER --------------------------------------------------------------------------------------
def test_user_state_must_require_auth() -> None:
    class Loose(State):
        x: int = 0

    with pytest.raises(ConfigurationError, match="requires_auth"):
        state_registry.register(Loose, StateConfig(scope=StateScope.USER))


def test_user_scope_shared_across_sessions_of_one_user_only() -> None:
    a = app()
    anon = TestClient(a)
    r = anon.get("/profile")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "authentication_required"
    r = anon.post("/_faststate/Profile/write?bio=x", headers=API, content=b"{}")
    assert r.status_code == 401
    assert state_registry.keys(scope=StateScope.USER) == []

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
def test_components_are_independent_and_carry_their_identity() -> None:
    client = TestClient(app())
    page = client.get("/widgets").json()
    assert page["a"]["ident"] == "a" and page["b"]["ident"] == "b"
    assert page["fresh"]["ident"] not in ("a", "b")  # a generated id
    assert page["a_action"] == "@post('/_faststate/Widget/increment?component_id=a')"
    assert page["a_ref"] == "$widget.a.count"
    r = client.post("/_faststate/Widget/increment?component_id=a", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"widget": {"a": {"count": 1}}}]
    page = client.get("/widgets").json()
    assert page["a"]["data"] == {"count": 1}
    assert page["b"]["data"] == {"count": 0}


def test_component_ids_live_under_the_session() -> None:
    a = app()
    owner, intruder = TestClient(a), TestClient(a)
    owner.get("/widgets")
    owner.post("/_faststate/Widget/increment?component_id=a", headers=DS, content=b"{}")
    r = intruder.post("/_faststate/Widget/increment?component_id=a", headers=DS, content=b"{}")
    # the intruder reaches only its own component "a", never the owner's
    assert patched_signals(r.text) == [{"widget": {"a": {"count": 1}}}]
    assert owner.get("/widgets").json()["a"]["data"] == {"count": 1}
    sids = {k.split(":")[1] for k in state_registry.keys(scope=StateScope.COMPONENT)}
    assert len(sids) == 2


@pytest.mark.parametrize("bad", ["a:b", "a/b", "*", "ü", "1abc", "x" * 10_000, ""])
def test_bad_component_ids_are_rejected(bad: str) -> None:
    client = TestClient(app())
    r = client.post(
        "/_faststate/Widget/increment", params={"component_id": bad}, headers=API, content=b"{}"
    )
    assert r.status_code == 400
    assert state_registry.keys(scope=StateScope.COMPONENT) == []


def test_component_event_without_id_is_400() -> None:
    r = TestClient(app()).post("/_faststate/Widget/increment", headers=API, content=b"{}")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_identifier"


# -- RECORD ------------------------------------------------------------------------------------
def test_record_shared_by_everyone_on_it_and_events_target_it() -> None:
    a = app()
    one, two = TestClient(a), TestClient(a)
    page = one.get("/product/7").json()
    assert page["key"] == "record:Product:7"
    assert page["action"] == "@post('/_faststate/Product/like?record_id=7')"
    one.post("/_faststate/Product/like?record_id=7", headers=DS, content=b"{}")
    assert two.get("/product/7").json()["data"] == {"likes": 1}
    assert two.get("/item/7").json()["data"] == {"likes": 1}  # `id` path param
    assert two.get("/product?record_id=7").json()["data"] == {"likes": 1}
    assert two.get("/product?id=7").json()["data"] == {"likes": 1}
    assert two.get("/product/8").json()["data"] == {"likes": 0}


def test_record_without_id_is_400() -> None:
    client = TestClient(app())
    r = client.get("/product")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "missing_identifier"
    r = client.post("/_faststate/Product/like", headers=API, content=b"{}")
    assert r.status_code == 400


@pytest.mark.parametrize(
    "rid", ["a:b", "global", "7:Product", "a/b", "*", "ü✓", "x" * 200, "%3A", "7%20"]
)
def test_record_ids_are_escaped_into_distinct_keys(rid: str) -> None:
    client = TestClient(app())
    r = client.post(
        "/_faststate/Product/like", params={"record_id": rid}, headers=DS, content=b"{}"
    )
    assert r.status_code == 200
    (key,) = state_registry.keys(scope=StateScope.RECORD)
    assert key.count(":") == 2  # nothing a client sends can add a level to the key
    assert key.startswith("record:Product:")
    assert state_registry.get(key).identity == rid  # type: ignore[union-attr]
    # and it is not the same record as a plain neighbour
    client.post("/_faststate/Product/like?record_id=7", headers=DS, content=b"{}")
    assert len(state_registry.keys(scope=StateScope.RECORD)) == 2


def test_huge_record_id_is_rejected() -> None:
    r = TestClient(app()).post(
        "/_faststate/Product/like", params={"record_id": "x" * 10_000}, headers=API, content=b"{}"
    )
    assert r.status_code == 400
    assert state_registry.keys(scope=StateScope.RECORD) == []


def test_user_ids_are_escaped_too() -> None:
    a = app()
    evil = TestClient(a)
    evil.get("/login?user=alice:Profile")
    assert evil.get("/profile").json()["key"] == "user:alice%3AProfile:Profile"


def test_record_ids_in_reserved_argument_names_are_refused() -> None:
    class Bad(State):
        @event
        def f(self, record_id: int) -> None:
            pass

    with pytest.raises(ConfigurationError, match="reserved"):
        state_registry.register(Bad, StateConfig(scope=StateScope.RECORD))


# -- TEMPORARY and TTL -------------------------------------------------------------------------
async def test_temporary_state_is_gone_after_its_ttl(clock: list[float]) -> None:
    import httpx

    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/draft")
        await client.post("/_faststate/Draft/next_step", headers=DS, content=b"{}")
        assert (await client.get("/draft")).json()["data"] == {"step": 2}
        assert (await client.get("/draft")).json()["key"].startswith("temporary:")
        clock[0] += 14 * 60
        assert await state_registry.sweep() == []
        assert (await client.get("/draft")).json()["data"] == {"step": 2}  # touched: idle resets
        clock[0] += 15 * 60 + 1
        evicted = await state_registry.sweep()
        assert len(evicted) == 1 and evicted[0].startswith("temporary:")
        assert state_registry.keys(scope=StateScope.TEMPORARY) == []
        assert (await client.get("/draft")).json()["data"] == {"step": 1}


async def test_ttl_eviction_saves_first_and_skips_busy_instances(clock: list[float]) -> None:
    saved: list[int] = []

    class Note(State):
        text: str = ""

    state_registry.register(Note, StateConfig(ttl=10, on_evict=lambda s: saved.append(len(s.text))))
    import asyncio

    from faststate_mw.context import RequestContext, _current

    class Owner:
        user_loader = staticmethod(lambda scope: None)

        def read_session_id(self, scope: Any) -> str:
            return scope["sid"]

        def new_session_id(self) -> str:
            raise AssertionError

    for sid in ("s1", "s2"):
        ctx = RequestContext({"type": "http", "headers": [], "sid": sid}, Owner())
        token = _current.set(ctx)
        Note.current().text = sid * 3
        _current.reset(token)
    busy = state_registry.get("session:s2:Note")
    assert busy is not None
    busy._fs.lock = asyncio.Lock()
    await busy._fs.lock.acquire()
    clock[0] += 11
    assert await state_registry.sweep() == ["session:s1:Note"]
    assert saved == [6]
    busy._fs.lock.release()
    clock[0] += 11
    assert await state_registry.sweep() == ["session:s2:Note"]
    assert len(state_registry) == 0


def test_default_ttls() -> None:
    from faststate_mw.scopes import DEFAULT_TTLS

    assert DEFAULT_TTLS[StateScope.SESSION] == 24 * 3600
    assert DEFAULT_TTLS[StateScope.TEMPORARY] == 15 * 60
    assert DEFAULT_TTLS[StateScope.GLOBAL] is None


# -- custom scope ------------------------------------------------------------------------------
def test_custom_tenant_scope_from_header_or_host() -> None:
    client = TestClient(app())
    assert client.get("/tenant", headers={"x-tenant": "acme"}).json()["key"] == (
        "tenant:acme:TenantSettings"
    )
    assert client.get("/tenant").json()["key"] == "tenant:testserver:TenantSettings"
    assert client.get("/tenant", headers={"x-tenant": "a:b"}).json()["key"] == (
        "tenant:a%3Ab:TenantSettings"
    )
    assert sorted(state_registry.keys(scope="tenant")) == [
        "tenant:a%3Ab:TenantSettings",
        "tenant:acme:TenantSettings",
        "tenant:testserver:TenantSettings",
    ]


def test_unknown_scope_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown scope"):
        StateConfig(scope="planet")


def test_keys_by_scope_and_class() -> None:
    client = TestClient(app())
    client.get("/product/1")
    client.get("/product/2")
    client.get("/draft")
    assert sorted(state_registry.keys(state_cls=Product)) == [
        "record:Product:1",
        "record:Product:2",
    ]
    assert len(state_registry.keys(scope=StateScope.TEMPORARY)) == 1
    assert state_registry.stats()["by_scope"] == {"record": 2, "temporary": 1}
