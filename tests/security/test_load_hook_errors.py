"""An app's ``load`` hook (and the state it returns), and an argument's own validator, run
inside the event request: one that fails on what a client made up (``int("abc")``, a missing
key) with anything but a ValueError escaped the event as an unhandled exception, a bare 500 from
the server (with the traceback in the reply under ``debug=True``) and no ``$_faststate`` error
for the page. It is now an event failure like one the event itself raises: logged, a clean
500, nothing changed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event
from tests.conftest import API, DS

ROWS: dict[str, dict[str, Any]] = {"1": {"n": 1}, "2": {"n": "not a number"}}


def load_row(record_id: str) -> dict[str, Any]:
    return ROWS[record_id]  # KeyError for an id nobody made


class LoadedRow(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD, load=load_row)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class NumberedRow(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD, load=lambda rid: {"n": int(rid)})
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


COLORS = {"red": 1}


class ColorRow(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    def pick(self, color: Annotated[str, AfterValidator(lambda v: COLORS[v])]) -> None:
        self.n = int(color)


@pytest.fixture
def client(store: StateStore) -> Iterator[TestClient]:
    app = Starlette(debug=True)  # a server error would carry its traceback
    app.add_middleware(FastStateMiddleware, secret_key="load-hook", store=store)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(
    "url",
    [
        "/_faststate/LoadedRow/bump?record_id=nobody",  # the hook raises KeyError
        "/_faststate/LoadedRow/bump?record_id=2",  # its data does not validate
        "/_faststate/NumberedRow/bump?record_id=abc",  # the hook raises ValueError
        "/_faststate/ColorRow/pick?color=green",  # the argument's validator raises KeyError
    ],
)
def test_a_failing_load_hook_is_a_clean_event_failure(
    client: TestClient, store: StateStore, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="faststate_mw"):
        r = client.post(url, headers=API)
    assert r.status_code == 500, r.text
    assert r.json()["error"]["code"] == "event_failed"
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert any(rec.exc_info for rec in caplog.records)  # the cause is in the log
    page = client.post(url, headers=DS)  # a Datastar page gets the error signal
    assert page.status_code == 200 and page.headers["x-faststate-error"] == "event_failed"
    assert '"code":"event_failed"' in page.text
    live = store.keys()
    assert [store.get(key).n for key in live] in ([], [0])  # nothing changed
    ok = client.post("/_faststate/LoadedRow/bump?record_id=1", headers=API)
    assert ok.status_code == 200, ok.text
    assert '"n":2' in ok.text


def user_from_header(scope: Any) -> dict[str, str] | None:
    """An app's loader that trusts a header to hold a number (``int("abc")`` raises)."""
    for name, value in scope["headers"]:
        if name == b"x-user":
            return {"id": str(int(value))}
    return None


class GuardedRow(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class SessionRow(State):
    __faststate__ = StateConfig(scope=StateScope.SESSION)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


@pytest.mark.parametrize(
    ("first", "url"),
    [
        ("/_faststate/GuardedRow/bump", "/_faststate/GuardedRow/bump"),  # loaded up front
        # a public event of a browser with a cookie: loaded to check the cookie's binding
        ("/_faststate/SessionRow/bump", "/_faststate/ColorRow/pick?color=red"),
    ],
)
def test_a_user_loader_failing_on_what_a_client_sent_is_a_clean_event_failure(
    store: StateStore, first: str, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Starlette(debug=True)
    app.add_middleware(
        FastStateMiddleware, secret_key="loader", store=store, user_loader=user_from_header
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        ok = client.post(first, headers={**API, "x-user": "7"})  # also mints the cookie
        assert ok.status_code == 200, ok.text
        with caplog.at_level(logging.ERROR, logger="faststate_mw"):
            r = client.post(url, headers={**API, "x-user": "abc"})
        assert r.status_code == 500, r.text
        assert r.json()["error"]["code"] == "event_failed"
        assert "Traceback" not in r.text and 'File "' not in r.text
        assert any(rec.exc_info for rec in caplog.records)
        counts = [store.get(key).n for key in store.keys(scope=None)]
        assert sum(counts) == 1  # only the first request changed anything
