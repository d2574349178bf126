"""Sessions across sign-in and sign-out: the faststate session id is bound to its user.

When the user a browser's session is bound to changes (alice signs out, bob signs in; an
anonymous visitor signs in), the next request gets a new session id: the previous user's
SESSION and TEMPORARY states stay out of reach, and the old session's open streams stop
delivering them. ``rotate_session()`` does the same at once, inside an app's own login flow.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    event,
    rotate_session,
)
from faststate_mw._config import catalog, info_of
from faststate_mw.testing import isolated_state_names
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.security.states import EXAMPLE, EXAMPLE_STATES
from tests.sse import patched_signals, stream_url

SID = "faststate_sid"


# -- example_app: log in, log out, log in as someone else, in one cookie jar ---------------------
@pytest.fixture
def example() -> Iterator[TestClient]:
    with isolated_state_names():
        catalog.restore({info_of(c).name: c for c in EXAMPLE_STATES})
        yield TestClient(EXAMPLE.app)


def bump(client: TestClient) -> int:
    r = client.post("/_faststate/Counter/increment?amount=1", headers=DS, content=b"{}")
    assert r.status_code == 200
    [patch] = patched_signals(r.text)
    return int(patch["counter"]["count"])


def log_in(client: TestClient, name: str) -> None:
    r = client.post("/login", data={"username": name})
    assert r.status_code == 200 and name in r.text  # the profile page, signed in


def test_bob_never_sees_alices_session_states(example: TestClient) -> None:
    client = example
    log_in(client, "alice")
    assert [bump(client) for _ in range(3)] == [1, 2, 3]
    r = client.post("/_faststate/Wizard/set_name?value=alice-secret", headers=DS, content=b"{}")
    assert r.status_code == 200
    assert "alice-secret" in client.get("/wizard").text  # what bob must not see
    alice_sid = client.cookies.get(SID)
    assert alice_sid and "alice" not in alice_sid  # bound to her by a keyed hash, not by name
    assert client.post("/logout").status_code == 200
    log_in(client, "bob")
    assert client.cookies.get(SID) != alice_sid
    assert "alice-secret" not in client.get("/wizard").text
    assert bump(client) == 1  # bob's own counter, not alice's fourth click
    # alice's old cookie, replayed without her signed in, reaches nothing of hers either
    thief = TestClient(EXAMPLE.app)
    thief.cookies.set(SID, str(alice_sid), domain="testserver.local")
    assert bump(thief) == 1
    assert "alice-secret" not in thief.get("/wizard").text


def test_signing_in_rotates_an_anonymous_session(example: TestClient) -> None:
    """Session fixation: a session id planted before sign-in is not the one after it."""
    attacker = TestClient(EXAMPLE.app)
    assert bump(attacker) == 1
    planted = attacker.cookies.get(SID)
    victim = example
    victim.cookies.set(SID, str(planted), domain="testserver.local")
    assert bump(victim) == 2  # anonymous: the planted session is shared, as any bearer id
    log_in(victim, "alice")
    assert victim.cookies.get(SID) != planted
    assert bump(victim) == 1
    assert bump(victim) == 2
    assert bump(attacker) == 3  # the attacker's id never reaches the signed-in session


def test_the_same_user_keeps_the_session(example: TestClient) -> None:
    log_in(example, "alice")
    bump(example)
    sid = example.cookies.get(SID)
    example.get("/")
    example.get("/wizard")
    assert example.cookies.get(SID) == sid
    assert bump(example) == 2


# -- a small Starlette app: rotate_session() and open streams -------------------------------------
class RotCounter(State):
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class RotDraft(State):
    __faststate__ = StateConfig(scope=StateScope.TEMPORARY)
    text: str = ""


class RotSentinel(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0


def make_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        states: list[State] = [
            await RotCounter.dependency(),
            await RotDraft.dependency(),
            await RotSentinel.dependency(),
        ]
        return HTMLResponse(f"<html><body>{''.join(s.to_html() for s in states)}</body></html>")

    async def signin(request: Request) -> PlainTextResponse:
        roles = request.query_params.getlist("role")
        request.session["auth"] = {"id": request.query_params["user"], "roles": roles}
        if "rotate" in request.query_params:
            rotate_session()
        return PlainTextResponse("ok")

    async def signout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    async def rotate(request: Request) -> PlainTextResponse:
        rotate_session()
        return PlainTextResponse("rotated")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/signin", signin),
            Route("/signout", signout),
            Route("/rotate", rotate),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="rot", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


@pytest.fixture
async def client(store: StateStore) -> AsyncIterator[httpx.AsyncClient]:
    with isolated_state_names():
        catalog.restore({info_of(c).name: c for c in (RotCounter, RotDraft, RotSentinel)})
        app = make_app(store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c
        await store.close()


async def bump_async(c: httpx.AsyncClient) -> int:
    r = await c.post("/_faststate/RotCounter/bump", headers=DS, content=b"{}")
    [patch] = patched_signals(r.text)
    return int(patch["rotCounter"]["n"])


def signals_of(html: str, name: str) -> Any:
    found = re.search(rf"&quot;{name}&quot;:\{{&quot;(\w+)&quot;:([^,}}]+)", html)
    return found and found.group(2)


async def test_rotate_session_gives_a_new_id_at_once(client: httpx.AsyncClient) -> None:
    assert await bump_async(client) == 1
    before = client.cookies.get(SID)
    r = await client.get("/rotate")
    assert r.text == "rotated"
    assert SID in r.headers.get("set-cookie", "")  # on this very response
    after = client.cookies.get(SID)
    assert after and after != before
    assert await bump_async(client) == 1  # the old session's counter is out of reach
    await client.get("/")
    assert client.cookies.get(SID) == after  # and the new id stays
    assert await bump_async(client) == 2


async def test_rotate_session_in_a_login_handler_binds_the_new_user(
    client: httpx.AsyncClient,
) -> None:
    assert await bump_async(client) == 1
    anonymous = client.cookies.get(SID)
    r = await client.get("/signin?user=alice&rotate=1")
    assert SID in r.headers.get("set-cookie", "")
    signed_in = client.cookies.get(SID)
    assert signed_in != anonymous
    assert await bump_async(client) == 1
    # bound to alice already: the next requests do not rotate again
    await client.get("/")
    assert client.cookies.get(SID) == signed_in
    assert await bump_async(client) == 2


async def test_old_streams_stop_receiving_the_old_session(
    client: httpx.AsyncClient, store: StateStore
) -> None:
    await client.get("/signin?user=alice")
    html = (await client.get("/")).text
    app: Any = client.app  # type: ignore[attr-defined]
    stream = await Stream(app, stream_url(html), client.cookies, {}).open()
    [counter_key] = store.keys(state_cls=RotCounter)
    [draft_key] = store.keys(state_cls=RotDraft)
    alices_counter, alices_draft = store.get(counter_key), store.get(draft_key)
    await alices_counter.update(n=1)
    assert (await stream.next())["signals"] == {"rotCounter": {"n": 1}}
    # alice signs out; bob signs in, in the same browser
    await client.get("/signout")
    await client.get("/signin?user=bob")
    assert await bump_async(client) == 1  # bob has a session of his own
    # changes to alice's session (an event still in flight) reach nobody any more
    await alices_counter.update(n=42)
    await alices_draft.update(text="alice-secret")
    sentinel = await RotSentinel.resolve(store=store)
    await sentinel.update(n=1)
    assert await stream.before("rotSentinel") == []
    # alice's states were not deleted: they wait, out of reach, for their ttl
    assert store.get(counter_key) is alices_counter and alices_counter.n == 42
    await stream.close()
    # the old page's stream, reconnecting with the browser's new cookie, is turned away
    again = await Stream(app, stream_url(html), client.cookies, {}).open()
    await again.wait_for(lambda: again.status is not None)
    assert again.status == 204
    await again.close()
    # bob's page shows bob's states
    page = (await client.get("/")).text
    shown = page.split('id="faststate-stream"')[0]  # the page without its (random) token
    assert "alice-secret" not in shown and "42" not in shown


async def test_new_roles_keep_the_session(client: httpx.AsyncClient) -> None:
    await client.get("/signin?user=alice")
    assert await bump_async(client) == 1
    sid = client.cookies.get(SID)
    await client.get("/signin?user=alice&role=editor&role=admin")
    await client.get("/")
    assert client.cookies.get(SID) == sid
    assert await bump_async(client) == 2


@pytest.mark.parametrize("waits", [False, True])
async def test_async_user_loaders(store: StateStore, waits: bool) -> None:
    """An async loader that needs no I/O works everywhere; one that waits must be awaited
    before a sync ``current()`` of a session state (a clear error says so)."""

    async def loader(scope: Any) -> Any:
        if waits:
            await asyncio.sleep(0)
        return (scope.get("session") or {}).get("auth")

    async def sync_style(request: Request) -> HTMLResponse:
        return HTMLResponse(RotCounter.current().to_html())

    async def awaited(request: Request) -> HTMLResponse:
        return HTMLResponse((await RotCounter.dependency()).to_html())

    async def global_only(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<html><body>{RotSentinel.current().to_html()}</body></html>")

    app = Starlette(
        routes=[
            Route("/sync", sync_style),
            Route("/awaited", awaited),
            Route("/global", global_only),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="rot", store=store, user_loader=loader),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )
    with isolated_state_names():
        catalog.restore({"RotCounter": RotCounter, "RotSentinel": RotSentinel})
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            assert (await c.get("/awaited")).status_code == 200
            assert await bump_async(c) == 1
            # a page of public states only: its stream token still names this session
            r = await c.get("/global")
            assert r.status_code == 200 and 'id="faststate-stream"' in r.text
            r = await c.get("/sync")
            if waits:
                assert r.status_code == 500
                assert "await load_user()" in r.json()["error"]["message"]
            else:
                assert r.status_code == 200 and "&quot;n&quot;:1" in r.text
        await store.close()
