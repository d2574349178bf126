"""Reading stored states back (_stored.py): a state whose class changed loads with defaults for
what no longer fits (and says so in the log); corrupt stored JSON is a clear error naming the
key."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore
from faststate_mw.backends.sqlite import SQLiteBackend


class Evolving(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD, auto_persist=True)
    title: str = "untitled"
    stars: int = 0
    tags: list[str] = []


def _app_with(store: StateStore) -> TestClient:
    async def page(request: Request) -> JSONResponse:
        return JSONResponse(Evolving.current().public_data())

    app = Starlette(routes=[Route("/r/{record_id}", page)])
    app.add_middleware(FastStateMiddleware, secret_key="evo", store=store)
    return TestClient(app)


def test_a_state_whose_class_changed_loads_with_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = SQLiteBackend(tmp_path / "evo.db")
    old = {"title": "kept", "stars": "not a number", "removed_field": 1}
    backend.save_sync("record:Evolving:1", 4, json.dumps(old), None)
    store = StateStore(backend)
    with _app_with(store) as client:  # the lifespan closes the store (and its SQLite file)
        with caplog.at_level(logging.WARNING, logger="faststate_mw"):
            r = client.get("/r/1")
        assert r.status_code == 200
        assert r.json() == {"title": "kept", "stars": 0, "tags": []}
        assert "record:Evolving:1" in caplog.text and "stars" in caplog.text
        assert store.get("record:Evolving:1").version == 4  # type: ignore[union-attr]


def test_a_corrupt_stored_state_is_a_clear_error_naming_the_key(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "bad.db")
    backend.save_sync("record:Evolving:2", 1, "{not json", None)
    with _app_with(StateStore(backend)) as client:
        r = client.get("/r/2")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "stored_state_invalid"
        assert "record:Evolving:2" in r.json()["error"]["message"]
        assert "Traceback" not in r.text
        assert client.get("/r/3").status_code == 200  # other records are fine
