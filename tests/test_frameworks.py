"""Injection in FastHTML (public __from_request__) and FastAPI (Depends)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateStore, UserContext, event, on, text
from tests.conftest import DS
from tests.sse import patched_signals


class FrameworkTally(State):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


def test_fasthtml_injection_beforeware_and_events(store: StateStore) -> None:
    from fasthtml.common import Beforeware, Button, Div, Span, fast_app

    def auth_before(req, sess):  # type: ignore[no-untyped-def]  # FastHTML injects by name
        req.scope["auth"] = sess.get("auth")

    app, rt = fast_app(
        secret_key="fh-secret",
        before=Beforeware(auth_before),
        default_hdrs=False,
        pico=False,
        htmx=False,
        surreal=False,
    )
    app.add_middleware(FastStateMiddleware, secret_key="fs-secret", store=store)

    @rt("/")
    def index(tally: FrameworkTally) -> Any:
        return Div(
            tally,
            Span(text(FrameworkTally, "count"), id="n"),
            Button("+", on("click", FrameworkTally.increment(2))),
        )

    @rt("/login")
    def login(sess):  # type: ignore[no-untyped-def]
        sess["auth"] = "carol"
        return "ok"

    @rt("/me")
    def me(tally: FrameworkTally) -> str:
        from faststate_mw import current_user

        user = current_user()
        return f"{tally.count}:{user.id if user else '-'}"

    client = TestClient(app)
    html = client.get("/").text
    assert "data-signals" in html and '"frameworkTally":{"count":0}' in html
    assert """data-on:click='@post("/_faststate/FrameworkTally/increment?amount=2", """ in html
    assert 'data-text="$frameworkTally.count"' in html
    r = client.post("/_faststate/FrameworkTally/increment?amount=2", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"frameworkTally": {"count": 2}}]
    client.get("/login")
    # signing in rotates the session (fixation defence): the anonymous count stays behind
    assert client.get("/me").text == "0:carol"
    r = client.post("/_faststate/FrameworkTally/increment?amount=2", headers=DS, content=b"{}")
    assert client.get("/me").text == "2:carol"


def test_fastapi_depends_current_and_dependency(store: StateStore) -> None:
    from fastapi import Depends, FastAPI

    async def loader(scope: Any) -> UserContext | None:
        return UserContext(id="dave")

    api = FastAPI()
    api.add_middleware(
        FastStateMiddleware, secret_key="api-secret", user_loader=loader, store=store
    )

    @api.get("/sync")
    def sync_route(tally: FrameworkTally = Depends(FrameworkTally.current)) -> dict[str, int]:
        return {"count": tally.count}

    @api.get("/async")
    async def async_route(
        tally: FrameworkTally = Depends(FrameworkTally.dependency),
    ) -> dict[str, Any]:
        from faststate_mw import current_user

        user = current_user()
        return {"count": tally.count, "user": user.id if user else None}

    client = TestClient(api)
    assert client.get("/sync").json() == {"count": 0}
    client.post("/_faststate/FrameworkTally/increment?amount=3", headers=DS, content=b"{}")
    assert client.get("/sync").json() == {"count": 3}
    assert client.get("/async").json() == {"count": 3, "user": "dave"}
    (key,) = store.keys(state_cls=FrameworkTally)  # the app keeps it in the store it was given
    assert store.get(key).count == 3
