"""Backends chosen by URL; SQLite durability across a hard kill; ttl eviction saves first.
(Reading stored states back, also when their class changed: tests/test_stored.py.)"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from faststate_mw import (
    ConfigurationError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateStore,
)
from faststate_mw.backends import MemoryBackend, backend_from_url
from faststate_mw.backends.sqlite import SQLiteBackend
from faststate_mw.testing import FakeClock
from tests.conftest import DS
from tests.servers import Uvicorn


def test_backends_by_url(tmp_path: Path) -> None:
    assert isinstance(backend_from_url(None), MemoryBackend)
    assert isinstance(backend_from_url("memory://"), MemoryBackend)
    sq = backend_from_url(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(sq, SQLiteBackend) and sq.path == tmp_path / "x.db"
    assert backend_from_url("sqlite:///rel.db").path == Path("rel.db")  # type: ignore[attr-defined]
    for bad in ("nope", "ftp://x", "sqlite://", 42):
        with pytest.raises(ConfigurationError):
            backend_from_url(bad)  # type: ignore[arg-type]


def test_sqlite_survives_a_hard_kill(tmp_path: Path) -> None:
    env = {"FS_BACKEND": f"sqlite:///{tmp_path}/state.db", "FS_SECRET": "k"}
    server = Uvicorn("tests.apps.shared_app:app", env).start()
    try:
        with httpx.Client(base_url=server.url) as client:
            client.get("/")
            for _ in range(3):
                r = client.post("/_faststate/Tally/increment", headers=DS, content=b"{}")
                assert r.status_code == 200
            r = client.post(
                "/_faststate/Memo/set_text", headers=DS, json={"memo": {"text": "kept"}}
            )
            assert r.status_code == 200
            server.kill()  # SIGKILL: no shutdown code runs
            server.start()
            assert client.get("/values").json() == {"count": 3, "text": "kept"}
    finally:
        server.stop()


async def test_sqlite_without_auto_persist_saves_on_eviction(
    tmp_path: Path, clock: FakeClock
) -> None:
    class Scratch(State):
        __faststate__ = StateConfig(ttl=60, writable=("n",))
        n: int = 0

    path = tmp_path / "evict.db"
    store = StateStore(SQLiteBackend(path), clock=clock)

    async def page(request: Request) -> JSONResponse:
        s = Scratch.current()
        return JSONResponse({"n": s.n, "key": s.key})

    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="ev", store=store)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            key = (await c.get("/")).json()["key"]
            r = await c.post("/_faststate/Scratch/set_n", headers=DS, json={"scratch": {"n": 7}})
            assert r.status_code == 200
            # not saved yet: no auto_persist
            with contextlib.closing(sqlite3.connect(path)) as db, db:
                assert db.execute("select count(*) from faststate_states").fetchone() == (0,)
            clock.advance(61)
            assert await store.sweep() == [key]
            assert store.get(key) is None
            with contextlib.closing(sqlite3.connect(path)) as db, db:
                row = db.execute("select version, data from faststate_states").fetchone()
            assert row[0] == 1 and json.loads(row[1]) == {"n": 7}
            assert (await c.get("/")).json()["n"] == 7  # read back after eviction
    finally:  # the first request started the store (no lifespan here): its file is closed
        await store.close()
