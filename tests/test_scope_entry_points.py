"""Every scope through FastHTML injection and FastAPI Depends, and RECORD load/save hooks."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, event, state_registry
from tests.conftest import DS
from tests.helpers import patched_signals
from tests.test_scopes import Draft, Product, Profile, TenantSettings, Widget

ALL = {
    "profile": Profile,
    "widget": Widget,
    "product": Product,
    "draft": Draft,
    "tenant": TenantSettings,
}


def _describe(inst: State) -> str:
    return f"{type(inst).__name__}|{inst.key}"


def test_every_scope_through_fasthtml_injection() -> None:
    from fasthtml.common import fast_app

    app, rt = fast_app(secret_key="fh", default_hdrs=False, pico=False, htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, secret_key="fs")

    @rt("/login")
    def login(sess):  # type: ignore[no-untyped-def]
        sess["auth"] = "erin"
        return "ok"

    @rt("/profile")
    def profile(p: Profile) -> str:
        return _describe(p)

    @rt("/widget")
    def widget(w: Widget) -> str:
        return _describe(w)

    @rt("/product/{record_id}")
    def product(p: Product, record_id: str) -> str:
        return _describe(p)

    @rt("/draft")
    def draft(d: Draft) -> str:
        return _describe(d)

    @rt("/tenant")
    def tenant(t: TenantSettings) -> str:
        return _describe(t)

    client = TestClient(app)
    client.get("/login")
    assert client.get("/profile").text == "Profile|user:erin:Profile"
    assert client.get("/widget?component_id=w1").text.endswith(":Widget:w1")
    assert client.get("/product/42").text == "Product|record:Product:42"
    assert client.get("/draft").text.startswith("Draft|temporary:")
    assert client.get("/tenant", headers={"x-tenant": "t1"}).text == (
        "TenantSettings|tenant:t1:TenantSettings"
    )
    r = client.post("/_faststate/Product/like?record_id=42", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"product": {"likes": 1}}]
    r = client.post("/_faststate/Widget/increment?component_id=w1", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"widget": {"w1": {"count": 1}}}]
    r = client.post("/_faststate/Draft/next_step", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"draft": {"step": 2}}]


def test_every_scope_through_fastapi_depends() -> None:
    from fastapi import Depends, FastAPI

    api = FastAPI()
    api.add_middleware(FastStateMiddleware, secret_key="api", user_loader=lambda scope: "frank")

    @api.get("/profile")
    def profile(p: Profile = Depends(Profile.current)) -> str:
        return _describe(p)

    @api.get("/widget")
    async def widget(w: Widget = Depends(Widget.dependency)) -> str:
        return _describe(w)

    @api.get("/product/{record_id}")
    def product(record_id: str, p: Product = Depends(Product.current)) -> str:
        return _describe(p)

    @api.get("/draft")
    def draft(d: Draft = Depends(Draft.current)) -> str:
        return _describe(d)

    @api.get("/tenant")
    def tenant(t: TenantSettings = Depends(TenantSettings.current)) -> str:
        return _describe(t)

    client = TestClient(api)
    assert client.get("/profile").json() == "Profile|user:frank:Profile"
    assert client.get("/widget?component_id=w2").json().endswith(":Widget:w2")
    assert client.get("/product/9").json() == "Product|record:Product:9"
    assert client.get("/draft").json().startswith("Draft|temporary:")
    assert client.get("/tenant", headers={"x-tenant": "t2"}).json() == (
        "TenantSettings|tenant:t2:TenantSettings"
    )
    r = client.post("/_faststate/Profile/write?bio=hi", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"profile": {"bio": "hi"}}]


# -- RECORD load/save hooks against a real SQLite file -----------------------------------------
class Book(State):
    title: str = ""
    stock: int = 0

    @event
    def sell(self) -> None:
        if self.stock <= 0:
            raise ValueError("sold out")
        self.stock -= 1


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table book (id text primary key, title text, stock int)")
        conn.execute("insert into book values ('b1', 'Dune', 2)")
    return path


def _hooks(path: Path) -> StateConfig:
    def load(record_id: str) -> dict[str, Any] | None:
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "select title, stock from book where id = ?", (record_id,)
            ).fetchone()
        return None if row is None else {"title": row[0], "stock": row[1]}

    async def save(book: Book) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "update book set title = ?, stock = ? where id = ?",
                (book.title, book.stock, book.identity),
            )

    return StateConfig(scope=StateScope.RECORD, load=load, save=save)


def test_record_hooks_read_and_write_the_apps_database(db: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state_registry.register(Book, _hooks(db))

    def page(request: Any) -> JSONResponse:
        return JSONResponse(Book.current().public_data())

    app = Starlette(routes=[Route("/book/{record_id}", page)])
    app.add_middleware(FastStateMiddleware, secret_key="books")
    client = TestClient(app)
    assert client.get("/book/b1").json() == {"title": "Dune", "stock": 2}
    r = client.post("/_faststate/Book/sell?record_id=b1", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"book": {"stock": 1}}]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select stock from book where id='b1'").fetchone() == (1,)
    # a new process would load what was saved
    state_registry.clear()
    assert client.get("/book/b1").json() == {"title": "Dune", "stock": 1}
    client.post("/_faststate/Book/sell?record_id=b1", headers=DS, content=b"{}")
    r = client.post("/_faststate/Book/sell?record_id=b1", headers=DS, content=b"{}")
    assert patched_signals(r.text)[0]["_faststate"]["status"] == 500  # sold out: rolled back
    with sqlite3.connect(db) as conn:
        assert conn.execute("select stock from book where id='b1'").fetchone() == (0,)
    assert Book.for_record("b1").stock == 0
