"""The devtools page: who may open it, what it shows (and never shows), that it stays live
through its own stream, and that what it keeps is bounded."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import Field
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import (
    ConfigurationError,
    FastStateMiddleware,
    State,
    StateStore,
    UserContext,
    event,
)
from faststate_mw._devtools import _tools
from faststate_mw._recorder import MAX_EVENT_CHANGES, Recorder
from faststate_mw.testing import TestClient

PATH = "/_faststate/devtools"
ADMIN = UserContext(id="ada", roles=["admin"])


class DtCounter(State):
    count: int = 0
    api_token: str = "tok-SECRET-VALUE"
    _hidden: str = "PRIVATE-UNDERSCORE"
    excluded: str = Field(default="PRIVATE-EXCLUDED", exclude=True)

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount
        self.api_token = f"tok-SECRET-{self.count}"

    @event
    def many(self, n: int) -> None:
        self.count += n


async def home(request: Any) -> HTMLResponse:
    counter = await DtCounter.resolve()
    return HTMLResponse(f"<html><body>{counter.to_html()}</body></html>")


def make_app(**options: Any) -> Starlette:
    options.setdefault("devtools_path", PATH)
    return Starlette(
        routes=[Route("/", home)],
        middleware=[Middleware(FastStateMiddleware, secret_key="k" * 32, **options)],
    )


def session_ids(client: TestClient) -> list[str]:
    """The session ids in the client's cookies, and the cookie values themselves."""
    values = [v for v in client.cookies.values() if v]
    return [*values, *(v.split(".")[0] for v in values)]


async def test_devtools_is_off_by_default() -> None:
    async with TestClient(make_app(devtools_path=None)) as client:
        client.login(ADMIN)
        assert (await client.get(PATH)).status == 404


async def test_only_signed_in_users_with_the_role_open_it() -> None:
    app = make_app(devtools_role="ops")
    async with TestClient(app) as anonymous, TestClient(app) as plain, TestClient(app) as ops:
        plain.login(UserContext(id="bob", roles=["admin"]))  # another role than the one asked
        ops.login(UserContext(id="olga", roles=["ops"]))
        assert (await anonymous.get(PATH)).status == 401
        assert (await plain.get(PATH)).status == 403
        page = await ops.get(PATH)
        assert page.status == 200
        assert page.header_list and "frame-ancestors 'self'" in dict(page.header_list).get(
            "content-security-policy", ""
        )
        assert (await ops.request("POST", PATH)).status == 405
        # and its live stream opens for them
        tab = await ops.open(PATH)
        assert tab.status == 200


@pytest.mark.parametrize(
    "options",
    [
        {"devtools_path": "devtools"},
        {"devtools_path": "/_faststate/Counter/increment"},  # an event's URL
        {"devtools_path": "/_faststate/stream"},
        {"devtools_path": "/metrics", "metrics_path": "/metrics"},
        {"devtools_role": ""},
        {"devtools_events": 0},
        {"devtools_events": 10**6},
    ],
)
def test_bad_settings_are_a_clear_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="devtools"):
        FastStateMiddleware(make_app(), secret_key="k" * 32, **{"devtools_path": PATH, **options})


async def test_it_shows_states_events_and_history_and_updates_live() -> None:
    app = make_app()
    async with TestClient(app) as visitor, TestClient(app) as admin:
        admin.login(ADMIN)
        await visitor.get("/")
        await visitor.event(DtCounter.increment(41))
        tools = await admin.open(PATH)
        panel = tools.element("fs-FastStateDevtools-panel") or ""
        assert "session:…:DtCounter" in panel and "41" in panel
        assert "DtCounter.increment" in panel and "ok 200" in panel
        assert re.search(r"<svg id=\"rate-chart\"", panel)
        assert "peak 1/s" in panel and "<rect" in panel  # the one event so far, charted
        # another browser clicks: the open page shows the new value without a reload
        await visitor.event(DtCounter.increment(1))
        shown = "&quot;count&quot;: 42"
        await tools.wait_for(lambda: shown in (tools.element("fs-FastStateDevtools-panel") or ""))
        panel = tools.element("fs-FastStateDevtools-panel") or ""
        assert "&quot;count&quot;: 42" in panel  # the event row's diff and the state's value
        assert "v2" in panel  # the history of the key: its second version


async def test_session_ids_private_fields_and_secrets_never_appear() -> None:
    app = make_app()
    async with TestClient(app) as visitor, TestClient(app) as admin:
        admin.login(ADMIN)
        await visitor.get("/")
        await visitor.event(DtCounter.increment(1))
        tools = await admin.open(PATH)
        await visitor.event(DtCounter.increment(1))
        await tools.wait_for(
            lambda: "&quot;count&quot;: 2" in (tools.element("fs-FastStateDevtools-panel") or "")
        )
        shown = tools.html + "".join("\n".join(e.data) for e in tools.received)
        secrets = [*session_ids(visitor), *session_ids(admin)]
        assert secrets and all(len(s) >= 16 for s in secrets)
        for secret in [*secrets, "SECRET", "PRIVATE-UNDERSCORE", "PRIVATE-EXCLUDED"]:
            assert secret not in shown, secret
        assert "•••" in shown  # the token field is listed, its value masked


def test_what_the_recorder_keeps_is_bounded() -> None:
    recorder = Recorder(size=5, keys=3)
    for i in range(50):
        recorder.change(f"global:K{i % 10}", i, {"v": i})
    assert len(recorder._history) == 3
    assert all(len(recorder.history(k)) <= 5 for k in recorder.changed_keys(10))
    assert recorder.changed_keys(10) == ["global:K9", "global:K8", "global:K7"]


async def test_an_event_keeps_a_bounded_list_of_its_changes_and_the_page_a_bounded_table() -> None:
    store = StateStore(record=3)
    app = make_app(store=store, devtools_events=2)
    async with TestClient(app) as visitor, TestClient(app) as admin:
        admin.login(ADMIN)
        await visitor.get("/")
        for _ in range(5):
            await visitor.event(DtCounter.many(1))
        recorder = store.recorder
        assert recorder is not None and len(recorder.recent()) == 3
        assert all(len(r.changes) <= MAX_EVENT_CHANGES for r in recorder.recent())
        assert recorder.recent()[-1].changes[0][0] == "session:…:DtCounter"
        page = (await admin.get(PATH)).text
        assert page.count("DtCounter.many") == 2  # devtools_events rows, not more


async def test_a_user_who_loses_the_role_stops_getting_the_page() -> None:
    store = StateStore()
    app = make_app(store=store)
    async with TestClient(app) as admin:
        admin.login(ADMIN)
        await admin.open(PATH)
        key = "global:FastStateDevtools"
        assert len(store.hub.subscribers.get(key, {})) == 1
        store.refresh_user("ada", UserContext(id="ada", roles=["editor"]))
        assert not store.hub.subscribers.get(key)


async def test_it_ticks_only_while_a_tab_watches_it() -> None:
    store = StateStore()
    app = make_app(store=store)
    async with TestClient(app) as admin:
        admin.login(ADMIN)
        tab = await admin.open(PATH)
        tools = _tools[store]
        version = store.get(tools.key).version
        assert await tools.tick() is True
        assert store.get(tools.key).version == version + 1  # re-rendered for the tab
        await tab.close()
        assert await tools.tick() is False  # nobody watches: no change, no render
        assert store.get(tools.key).version == version + 1
