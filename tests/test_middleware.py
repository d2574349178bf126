"""FastStateMiddleware: context in every framework, session order, users, session identity."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import (
    ConfigurationError,
    FastStateMiddleware,
    NoRequestContextError,
    State,
    StateStore,
    UserContext,
    event,
)
from tests.apps.notes import SECRET, Notes, notes_app
from tests.conftest import API, DS
from tests.sse import patched_signals


def test_current_outside_request_names_the_middleware() -> None:
    with pytest.raises(NoRequestContextError, match="FastStateMiddleware"):
        Notes.current()


@pytest.mark.parametrize("order", ["faststate-outside", "faststate-inside"])
def test_events_see_the_same_session_and_user_as_pages(order: str, store: StateStore) -> None:
    client = TestClient(notes_app(order, store))
    assert client.get("/").json()["user"] is None
    client.get("/login?user=alice")
    r = client.post("/_faststate/Notes/whoami", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"notes": {"seen_user": "alice", "seen_session": "blue"}}]
    page = client.get("/").json()
    assert page["user"] == "alice"
    assert page["touched"] is True  # the event wrote the app's session, and it was saved
    client.post("/_faststate/Notes/increment", headers=DS, content=b"{}")
    assert client.get("/").json()["count"] == 1


@pytest.mark.parametrize("order", ["faststate-outside", "faststate-inside"])
def test_an_event_served_again_sees_the_session_and_user(order: str, store: StateStore) -> None:
    """An event path served again (from the middleware's route cache when no middleware runs
    inside FastState's) sees the app's session and the user as they are now."""
    client = TestClient(notes_app(order, store))
    client.get("/")
    assert client.post("/_faststate/Notes/whoami", headers=DS, content=b"{}").status_code == 200
    client.get("/login?user=alice")
    r = client.post("/_faststate/Notes/whoami", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"notes": {"seen_user": "alice", "seen_session": "blue"}}]


def test_sessions_are_separate_and_global_is_shared(store: StateStore) -> None:
    app = notes_app("faststate-outside", store)
    a, b = TestClient(app), TestClient(app)
    a.get("/")
    b.get("/")
    a.post("/_faststate/Notes/increment", headers=DS, content=b"{}")
    assert a.get("/").json()["count"] == 1
    assert b.get("/").json()["count"] == 0
    a.post("/_faststate/Hits/hit", headers=DS, content=b"{}")
    b.post("/_faststate/Hits/hit", headers=DS, content=b"{}")
    assert store.get("global:Hits").hits == 2  # type: ignore[union-attr]
    assert a.get("/").json()["key"].startswith("session:")
    assert a.get("/").json()["key"] != b.get("/").json()["key"]


def test_secrets_never_reach_the_page(store: StateStore) -> None:
    """The rendered page, with the live-stream element the middleware adds, shows neither the
    secret key, nor the session cookie, nor the session id (the states' keys contain it)."""
    client = TestClient(notes_app("faststate-outside", store))
    r = client.get("/html")
    sid = r.cookies["faststate_sid"].split(".")[0]
    key = client.get("/").json()["key"]
    assert key == f"session:{sid}:Notes"  # the id the page must not show
    page = r.text
    match = re.search(r"/stream\?t=([^'\"&]+)", page)
    assert match, page  # the stream element was injected, so its token is checked too
    _valid, payload = URLSafeTimedSerializer("any").loads_unsafe(match.group(1))
    assert payload["k"] == [["Notes", None, 0]]  # the token names the state, not its key
    for shown in (page, json.dumps(payload)):
        assert SECRET not in shown
        assert sid not in shown
        assert key not in shown


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_custom_user_loader_sync_and_async(kind: str, store: StateStore) -> None:
    def sync_loader(scope: Any) -> UserContext | None:
        token = dict(scope["headers"]).get(b"x-user")
        return UserContext(id=token.decode(), roles=["admin"]) if token else None

    async def async_loader(scope: Any) -> UserContext | None:
        return sync_loader(scope)

    loader = sync_loader if kind == "sync" else async_loader
    app = Starlette(routes=[])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, user_loader=loader, store=store)
    client = TestClient(app)
    r = client.post("/_faststate/Notes/whoami", headers={**DS, "x-user": "bob"}, content=b"{}")
    assert patched_signals(r.text)[0]["notes"]["seen_user"] == "bob"
    r = client.post("/_faststate/Notes/whoami", headers=DS, content=b"{}")
    assert patched_signals(r.text)[0]["notes"]["seen_user"] == "anonymous"


def test_non_http_scopes_pass_through(store: StateStore) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hi")
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/ws", ws)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    with TestClient(app).websocket_connect("/ws") as conn:
        assert conn.receive_text() == "hi"


def test_bad_configuration_fails_at_construction() -> None:
    cases: list[dict[str, Any]] = [
        {"secret_key": ""},
        {"secret_key": "x", "prefix": "nope"},
        {"secret_key": "x", "store": StateStore(), "backend": "memory://"},
    ]
    for kwargs in cases:
        app = Starlette()
        app.add_middleware(FastStateMiddleware, **kwargs)
        with pytest.raises(ConfigurationError):
            TestClient(app).get("/")


@pytest.mark.parametrize(
    "option",
    [{"heartbeat": 5.0}, {"max_queue": 8}, {"write_timeout": 1.0}, {"sweep_interval": 1.0}],
)
def test_store_settings_beside_a_store_are_refused(
    option: dict[str, Any], store: StateStore
) -> None:
    """The stream and sweep settings belong to the store: beside ``store=`` they would be
    silently ignored, so they are refused like ``backend=``."""
    (name,) = option
    with pytest.raises(ConfigurationError, match=f"store= or {name}="):
        FastStateMiddleware(Starlette(), secret_key=SECRET, store=store, **option)
    FastStateMiddleware(Starlette(), secret_key=SECRET, **option)  # fine without a store


def test_an_event_url_follows_a_state_class_defined_again(store: StateStore) -> None:
    """The middleware keeps the event it found at a URL; a class defined again under the same
    name (a reload) takes the URL over, and a URL of no event stays a 404."""
    from faststate_mw import State, event
    from faststate_mw.testing import isolated_state_names

    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    client = TestClient(app)
    with isolated_state_names():

        class Reloaded(State):
            n: int = 0

            @event
            def bump(self) -> None:
                self.n += 1

        r = client.post("/_faststate/Reloaded/bump", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"reloaded": {"n": 1}}]

        class Reloaded(State):  # type: ignore[no-redef]  # noqa: F811
            n: int = 0

            @event
            def bump(self) -> None:
                self.n += 10

        r = client.post("/_faststate/Reloaded/bump", headers=DS, content=b"{}")
        assert patched_signals(r.text) == [{"reloaded": {"n": 10}}]  # the new class ran
    assert client.post("/_faststate/Reloaded/nothing", content=b"{}").status_code == 404


class Minted(State):
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1

    @event
    def steps(self) -> Any:
        self.n += 1
        yield None
        self.n += 1

    @event
    def fail(self, amount: int) -> None:
        self.n += amount


@pytest.mark.parametrize(
    ("url", "headers", "status"),
    [
        ("/_faststate/Minted/bump", DS, 200),  # an SSE reply
        ("/_faststate/Minted/steps", DS, 200),  # a streamed reply
        ("/_faststate/Minted/fail?amount=x", DS, 200),  # an error, as an SSE reply
        ("/_faststate/Minted/fail?amount=x", {"content-type": "application/json"}, 403),  # CSRF
        ("/_faststate/Minted/fail?amount=x", API, 422),  # an error, as JSON
    ],
)
def test_an_event_that_made_the_session_sets_its_cookie_once(
    store: StateStore, url: str, headers: dict[str, str], status: int
) -> None:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    with TestClient(app) as client:
        r = client.post(url, headers=headers, content=b"{}")
        assert r.status_code == status
        cookies = r.headers.get_list("set-cookie")
        if status == 403:  # refused before any session was needed
            assert cookies == []
            return
        assert len(cookies) == 1 and cookies[0].startswith("faststate_sid=")
        sid = r.cookies["faststate_sid"]
        r = client.post("/_faststate/Minted/bump", headers=DS, content=b"{}")
        assert "set-cookie" not in r.headers  # the same session, kept
        assert client.cookies["faststate_sid"] == sid
