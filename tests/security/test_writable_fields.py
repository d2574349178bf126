"""Fields not declared client-writable cannot be written by a client, through any path.

Every state of example_app, of README.md and of this suite is attacked over a real ASGI app
(Starlette + FastStateMiddleware, through httpx), as the most privileged user there is (the admin
role passes every permission and owner_only), so only the declaration can stop the write:

- the setter URL ``set_<field>`` (value in the URL and in signals) is a 404 and changes nothing;
- every event, sent signals holding a hostile value for every server-owned field (namespaced,
  flat, and nested under a component id), replies and ends exactly as the same event sent with
  no signals at all: no signal reached any argument named like a server-owned field.

And a writable field with rules of its own denies those without them (401/403), changing nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateScope,
    StateStore,
    UserContext,
    Writable,
)
from faststate_mw._config import catalog, info_of
from faststate_mw.testing import isolated_state_names
from tests.conftest import API
from tests.security.states import EXAMPLE, EXAMPLE_STATES, OWN_STATES, README_STATES, Ledger

ADMIN = UserContext("admin", roles=frozenset({"admin"}), permissions=frozenset({"admin"}))
ALL_STATES = [
    *(pytest.param(c, id=f"example-{c.__name__}") for c in EXAMPLE_STATES),
    *(pytest.param(c, id=f"readme-{c.__name__}") for c in README_STATES),
    *(pytest.param(c, id=f"suite-{c.__name__}") for c in OWN_STATES),
]
IDENT = {"record_id": "1", "component_id": "c1"}
#: RECORD states whose load hook knows other ids than "1" (README's owner example)
RECORD_IDS = {"Doc": "d1"}


def ident_of(cls: type[State], name: str) -> str:
    """The id this test uses for ``cls``'s ``record_id`` / ``component_id``."""
    if name == "record_id":
        return RECORD_IDS.get(info_of(cls).name, IDENT[name])
    return IDENT[name]


@pytest.fixture(autouse=True)
def _names_back() -> Iterator[None]:
    with isolated_state_names():
        yield


def serve(cls: type[State], store: StateStore, user: UserContext | None = ADMIN) -> Starlette:
    """A real app around ``cls``: only its name is routed, to this very class."""
    catalog.restore({info_of(cls).name: cls})
    app = Starlette()
    app.add_middleware(
        FastStateMiddleware, secret_key="k", store=store, user_loader=lambda scope: user
    )
    return app


def hostile(value: Any, field: str) -> Any:
    """A value of the field's type that no event would produce by itself."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7919
    if isinstance(value, float):
        return value + 7919.5
    if isinstance(value, str):
        return f"hostile-{field}"
    if isinstance(value, list):
        return ["hostile"]
    if isinstance(value, dict):
        return {"hostile": 1}
    return f"hostile-{field}"


def declared_writable(cls: type[State]) -> set[str]:
    """What the class itself declares client-writable (read here, not from the library)."""
    config = cls.__dict__.get("__faststate__")
    names = set(config.writable) if config is not None else set()
    for name, field in cls.model_fields.items():
        if any(m is Writable or isinstance(m, Writable) for m in field.metadata):
            names.add(name)
    return names


def server_owned(cls: type[State]) -> list[str]:
    """Every field the class does not declare writable (public or not)."""
    return [f for f in cls.model_fields if f not in declared_writable(cls)]


def hostile_signals(cls: type[State], sample: State) -> dict[str, Any]:
    """Every server-owned field with a hostile value: flat, namespaced, and under the
    component id (everywhere a signal could come from)."""
    info = info_of(cls)
    values = {f: hostile(getattr(sample, f), f) for f in server_owned(cls)}
    signals: dict[str, Any] = dict(values)
    if info.namespace:
        signals[info.namespace] = {**values, IDENT["component_id"]: dict(values)}
    return signals


def url(cls: type[State], event: str, extra: dict[str, str] | None = None) -> str:
    info = info_of(cls)
    query = dict(extra or {})
    if info.identity:
        query[info.identity] = ident_of(cls, info.identity)
    spec = info.events[event]
    base = spec.path or f"/_faststate/{info.name}/{event}"
    return str(httpx.URL(base, params=query))


def headers(cls: type[State]) -> dict[str, str]:
    return {**API, "x-tenant": "t1"}  # README's TenantSettings reads its owner from a header


async def send(
    app: Starlette, cls: type[State], event: str, signals: dict[str, Any] | None, **query: str
) -> int:
    spec = info_of(cls).events[event]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        if spec.method in ("GET", "DELETE"):
            params = {"datastar": json.dumps(signals)} if signals else {}
            target = url(cls, event, {**query, **params})
            r = await client.request(spec.method, target, headers=headers(cls))
        else:
            body = json.dumps(signals or {}).encode()
            r = await client.request(
                spec.method, url(cls, event, query), headers=headers(cls), content=body
            )
    assert r.status_code < 500 or r.status_code == 503, r.text
    assert "Traceback" not in r.text
    return r.status_code


async def seeded_store(cls: type[State], seed: dict[str, Any] | None) -> StateStore:
    """A fresh store whose shared instance (GLOBAL, RECORD) starts from ``seed``."""
    store = StateStore()
    scope = info_of(cls).scope
    if seed is not None and scope in (StateScope.GLOBAL, StateScope.RECORD):
        ident = ident_of(cls, "record_id") if scope == "record" else None
        inst = await store.resolve(cls, None, ident)
        for name, value in seed.items():
            setattr(inst, name, value)
    return store


def state_of(cls: type[State], store: StateStore) -> list[dict[str, Any]]:
    """Every instance of ``cls`` in ``store``, as all its fields (public or not)."""
    return sorted(
        (store.get(k).model_dump(mode="json") for k in store.keys(state_cls=cls)),
        key=lambda d: json.dumps(d, sort_keys=True),
    )


async def initial(cls: type[State]) -> dict[str, Any] | None:
    """The shared instance's starting fields (loaded through its load hook, if any)."""
    scope = info_of(cls).scope
    if scope not in (StateScope.GLOBAL, StateScope.RECORD):
        return None
    ident = ident_of(cls, "record_id") if scope == "record" else None
    inst = await StateStore().resolve(cls, None, ident)
    return inst.model_dump()


@pytest.mark.parametrize("cls", ALL_STATES)
async def test_no_setter_for_a_server_owned_field(cls: type[State]) -> None:
    seed = await initial(cls)
    store = await seeded_store(cls, seed)
    app = serve(cls, store)
    sample = cls()
    before = state_of(cls, store)
    for field in server_owned(cls):
        value = hostile(getattr(sample, field), field)
        raw = value if isinstance(value, str) else json.dumps(value)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            target = f"/_faststate/{info_of(cls).name}/set_{field}"
            query = {"value": raw, **{k: v for k, v in IDENT.items()}}
            r = await client.post(
                target,
                params=query,
                headers=headers(cls),
                content=json.dumps(hostile_signals(cls, sample)).encode(),
            )
        assert r.status_code == 404, (field, r.text)
        assert r.json()["error"]["code"] == "unknown_event"
        assert f"set_{field}" not in info_of(cls).events
        assert not hasattr(cls, f"set_{field}")
    assert state_of(cls, store) == before


@pytest.mark.parametrize("cls", ALL_STATES)
async def test_signals_never_reach_a_server_owned_field(cls: type[State]) -> None:
    """Each event with hostile signals ends exactly as the same event without signals."""
    info = info_of(cls)
    seed = await initial(cls)
    events = [name for name, spec in info.events.items() if spec.setter_field is None]
    sample = cls()
    for name in events:
        clean_store = await seeded_store(cls, seed)
        clean = await send(serve(cls, clean_store), cls, name, None)
        attacked_store = await seeded_store(cls, seed)
        attacked = await send(serve(cls, attacked_store), cls, name, hostile_signals(cls, sample))
        assert attacked == clean, name
        assert state_of(cls, attacked_store) == state_of(cls, clean_store), name
        for data in state_of(cls, attacked_store):
            for field in server_owned(cls):
                sentinel = hostile(getattr(sample, field), field)
                if data[field] == sentinel:  # only if the event made it without signals too
                    assert any(d[field] == sentinel for d in state_of(cls, clean_store))


def test_every_attacked_state_is_covered() -> None:
    """The suite attacks states with events taking arguments named like server-owned fields,
    and with flat and namespaced signals (else it would prove little)."""
    named_like_fields = 0
    for param in ALL_STATES:
        cls = param.values[0]
        info = info_of(cls)
        for spec in info.events.values():
            named_like_fields += sum(p.name in server_owned(cls) for p in spec.params)
    assert named_like_fields >= 6  # Doc.rename(title), the vaults' take/claim/freeze/...
    assert any(info_of(p.values[0]).namespace is None for p in ALL_STATES)
    assert any(info_of(p.values[0]).namespace for p in ALL_STATES)
    assert len(EXAMPLE_STATES) == 7 and len(README_STATES) >= 10


# -- a writable field's own rules --------------------------------------------------------------
def ledger_client(store: StateStore, user: UserContext | None) -> TestClient:
    return TestClient(serve(Ledger, store, user))


@pytest.mark.parametrize(
    ("user", "status"),
    [
        (None, 401),
        (UserContext("bob"), 403),
        (UserContext("bob", permissions=frozenset({"other"})), 403),
    ],
)
async def test_field_permission_denies_a_user_without_it(
    user: UserContext | None, status: int
) -> None:
    store = StateStore()
    r = ledger_client(store, user).post(
        "/_faststate/Ledger/set_memo?record_id=1", headers=API, json={"ledger": {"memo": "pwn"}}
    )
    assert r.status_code == status
    inst = store.get("record:Ledger:1")
    assert inst is None or inst.memo == ""
    # the same request by a user with the permission goes through
    editor = UserContext("eve", permissions=frozenset({"ledger.edit"}))
    r = ledger_client(store, editor).post(
        "/_faststate/Ledger/set_memo?record_id=1", headers=API, json={"ledger": {"memo": "ok"}}
    )
    assert r.status_code == 200
    assert store.get("record:Ledger:1").memo == "ok"


async def test_field_owner_only_denies_another_user() -> None:
    store = StateStore()
    inst = await store.resolve(Ledger, None, "1")
    inst.owner_id = "alice"
    r = ledger_client(store, UserContext("bob")).post(
        "/_faststate/Ledger/set_motto?record_id=1", headers=API, json={"ledger": {"motto": "x"}}
    )
    assert r.status_code == 403
    assert inst.motto == ""
    r = ledger_client(store, UserContext("alice")).post(
        "/_faststate/Ledger/set_motto?record_id=1", headers=API, json={"ledger": {"motto": "x"}}
    )
    assert r.status_code == 200
    assert inst.motto == "x"


# -- example_app itself --------------------------------------------------------------------------
def _settings_signals(page: str) -> str:
    """The admin page's ``settings`` signals, as the page carries them."""
    start = page.index('"settings":')
    return page[start : page.index("}", start) + 1]


def test_example_app_products_and_settings_are_not_writable() -> None:
    """Over example_app's own app, signed in as its admin: stock, price and the admin
    settings have no setter, and the product table is unchanged."""
    from sqlmodel import Session

    from example_app.products import Product, engine

    with Session(engine) as db:
        row = db.get(Product, "1")
        assert row is not None
        before = (row.stock, row.price)
    with isolated_state_names():
        catalog.restore({info_of(c).name: c for c in EXAMPLE_STATES})
        client = TestClient(EXAMPLE.app)
        client.post("/login", data={"username": "admin"}, follow_redirects=False)
        shown = client.get("/admin")
        assert shown.status_code == 200
        settings_before = _settings_signals(shown.text)
        attempts = [
            ("Product", "set_stock", "record_id=1", {"product": {"stock": 0}}),
            ("Product", "set_price", "record_id=1", {"product": {"price": 0.01}}),
            ("Product", "set_likes", "record_id=1", {"product": {"likes": 10**6}}),
            ("Settings", "set_maintenance", "", {"settings": {"maintenance": True}}),
            ("Settings", "set_theme", "", {"settings": {"theme": "pwned"}}),
            ("Visitors", "set_visits", "", {"visitors": {"visits": -1}}),
            ("Profile", "set_user_id", "", {"profile": {"user_id": "bob"}}),
            ("Counter", "set_count", "", {"counter": {"count": 99}}),
            ("Wizard", "set_done", "", {"wizard": {"done": True}}),
        ]
        for name, setter, query, signals in attempts:
            r = client.post(f"/_faststate/{name}/{setter}?{query}", headers=API, json=signals)
            assert r.status_code == 404, (name, setter)
        # other tests may have toggled them (as admin): unchanged by these attempts is the point
        assert _settings_signals(client.get("/admin").text) == settings_before
    with Session(engine) as db:
        row = db.get(Product, "1")
        assert row is not None and (row.stock, row.price) == before
