"""Every scope through FastHTML injection and FastAPI Depends, and RECORD load/save hooks."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
)
from tests.apps.scopes import Draft, Listing, Profile, SiteTheme, Widget
from tests.conftest import DS
from tests.sse import patched_signals


def _describe(inst: State) -> str:
    return f"{type(inst).__name__}|{inst.key}"


def test_every_scope_through_fasthtml_injection(store: StateStore) -> None:
    from fasthtml.common import fast_app

    app, rt = fast_app(secret_key="fh", default_hdrs=False, pico=False, htmx=False, surreal=False)
    app.add_middleware(FastStateMiddleware, secret_key="fs", store=store)

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
    def product(p: Listing, record_id: str) -> str:
        return _describe(p)

    @rt("/draft")
    def draft(d: Draft) -> str:
        return _describe(d)

    @rt("/site")
    def site(settings: SiteTheme) -> str:  # FastHTML gives a parameter named `s` the session
        return _describe(settings)

    with TestClient(app) as client:
        client.get("/login")
        assert client.get("/profile").text == "Profile|user:erin:Profile"
        assert client.get("/widget?component_id=w1").text.endswith(":Widget:w1")
        assert client.get("/product/42").text == "Listing|record:Listing:42"
        assert client.get("/draft").text.startswith("Draft|temporary:")
        assert client.get("/site", headers={"x-site": "t1"}).text == ("SiteTheme|site:t1:SiteTheme")
        r = client.post("/_faststate/Listing/like?record_id=42", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"listing": {"likes": 1}}]
        r = client.post("/_faststate/Widget/increment?component_id=w1", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"widget": {"w1": {"count": 1}}}]
        r = client.post("/_faststate/Draft/next_step", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"draft": {"step": 2}}]


def test_every_scope_through_fastapi_depends(store: StateStore) -> None:
    from fastapi import Depends, FastAPI

    api = FastAPI()
    api.add_middleware(
        FastStateMiddleware, secret_key="api", user_loader=lambda scope: "frank", store=store
    )

    @api.get("/profile")
    def profile(p: Profile = Depends(Profile.current)) -> str:
        return _describe(p)

    @api.get("/widget")
    async def widget(w: Widget = Depends(Widget.dependency)) -> str:
        return _describe(w)

    @api.get("/product/{record_id}")
    def product(record_id: str, p: Listing = Depends(Listing.current)) -> str:
        return _describe(p)

    @api.get("/draft")
    def draft(d: Draft = Depends(Draft.current)) -> str:
        return _describe(d)

    @api.get("/site")
    def site(settings: SiteTheme = Depends(SiteTheme.current)) -> str:
        return _describe(settings)

    with TestClient(api) as client:
        assert client.get("/profile").json() == "Profile|user:frank:Profile"
        assert client.get("/widget?component_id=w2").json().endswith(":Widget:w2")
        assert client.get("/product/9").json() == "Listing|record:Listing:9"
        assert client.get("/draft").json().startswith("Draft|temporary:")
        assert client.get("/site", headers={"x-site": "t2"}).json() == (
            "SiteTheme|site:t2:SiteTheme"
        )
        r = client.post("/_faststate/Profile/write?bio=hi", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"profile": {"bio": "hi"}}]


# -- RECORD load/save hooks against a real SQLite file -----------------------------------------
@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("create table book (id text primary key, title text, stock int)")
        conn.execute("insert into book values ('b1', 'Dune', 2)")
    return path


def _hooks(path: Path) -> StateConfig:
    def load(record_id: str) -> dict[str, Any] | None:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            row = conn.execute(
                "select title, stock from book where id = ?", (record_id,)
            ).fetchone()
        return None if row is None else {"title": row[0], "stock": row[1]}

    async def save(book: Any) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn, conn:
            conn.execute(
                "update book set title = ?, stock = ? where id = ?",
                (book.title, book.stock, book.identity),
            )

    return StateConfig(scope=StateScope.RECORD, load=load, save=save)


def _stock(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        (stock,) = conn.execute("select stock from book where id='b1'").fetchone()
    return int(stock)


def test_record_hooks_read_and_write_the_apps_database(db: Path, store: StateStore) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    class ShopBook(State):
        __faststate__ = _hooks(db)
        title: str = ""
        stock: int = 0

        @event
        def sell(self) -> None:
            if self.stock <= 0:
                raise ValueError("sold out")
            self.stock -= 1

    def page(request: Any) -> JSONResponse:
        return JSONResponse(ShopBook.current().public_data())

    app = Starlette(routes=[Route("/book/{record_id}", page)])
    app.add_middleware(FastStateMiddleware, secret_key="books", store=store)
    sell = "/_faststate/ShopBook/sell?record_id=b1"
    with TestClient(app) as client:
        assert client.get("/book/b1").json() == {"title": "Dune", "stock": 2}
        r = client.post(sell, headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"shopBook": {"stock": 1}}]
        assert _stock(db) == 1
        # a new process would load what was saved
        store.clear()
        assert client.get("/book/b1").json() == {"title": "Dune", "stock": 1}
        r = client.post(sell, headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"shopBook": {"stock": 0}}]
        r = client.post(sell, headers=DS, content=b"{}")
        assert patched_signals(r.text)[0]["_faststate"]["status"] == 500  # sold out: rolled back
        assert _stock(db) == 0
        with store.activate():
            assert ShopBook.for_record("b1").stock == 0
