"""Two workers on one Redis, one browser whose requests land on either: a sign-out seen by
worker A, or ``refresh_user`` called on worker A, stops what the tab's stream on worker B
delivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from faststate_mw import (
    BackendUnavailable,
    FastStateMiddleware,
    ScopeRule,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
    register_scope,
)
from faststate_mw._context import RequestContext
from faststate_mw._scopes import escape_id
from tests.asgi_stream import Stream
from tests.servers import RedisServer
from tests.sse import stream_url


class WorkerUser(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    n: int = 0


class WorkerSecret(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, requires_auth=True, roles=("spy",))
    n: int = 0


class WorkerSentinel(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0


def make_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        states: list[State] = []
        if request.session.get("auth"):
            states += [await WorkerUser.dependency(), await WorkerSecret.dependency()]
        states.append(await WorkerSentinel.dependency())
        return HTMLResponse(f"<body>{''.join(s.to_html() for s in states)}</body>")

    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = {"id": request.query_params["user"], "roles": ["spy"]}
        return PlainTextResponse("ok")

    async def logout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/", page), Route("/login", login), Route("/logout", logout)],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="workers", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


class Balancer(httpx.AsyncBaseTransport):
    """One browser (one cookie jar) in front of two workers: ``to`` says which one serves."""

    def __init__(self, apps: dict[str, Starlette]) -> None:
        self.workers = {name: httpx.ASGITransport(app=app) for name, app in apps.items()}
        self.to = "a"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.workers[self.to].handle_async_request(request)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, durable=False).start()
    yield server
    server.stop()


@pytest.fixture
async def two_workers(redis_server: RedisServer) -> AsyncIterator[Any]:
    stores = {"a": StateStore(redis_server.url), "b": StateStore(redis_server.url)}
    apps = {name: make_app(store) for name, store in stores.items()}
    balancer = Balancer(apps)
    browser = httpx.AsyncClient(transport=balancer, base_url="http://t")
    streams: list[Stream] = []

    async def tab_on_b(user: str) -> Stream:
        await browser.get(f"/login?user={user}")
        balancer.to = "b"
        html = (await browser.get("/")).text
        balancer.to = "a"
        s = await Stream(apps["b"], stream_url(html), browser.cookies, {}).open()
        streams.append(s)
        assert (await s.next())["signals"]  # the snapshot of a page from another worker
        return s

    yield stores, balancer, browser, tab_on_b
    for s in streams:
        await s.close()
    await browser.aclose()
    for store in stores.values():
        await store.close()


async def changes_reach(stores: dict[str, StateStore], s: Stream) -> list[dict[str, Any]]:
    """Change carol's state and the secret on worker A, then the sentinel: what ``s`` got."""
    a = stores["a"]
    for key in ("user:carol:WorkerUser", "global:WorkerSecret"):
        inst = a.get(key)
        assert inst is not None
        await inst.update(n=inst.n + 1)
    sentinel = await WorkerSentinel.resolve(store=a)
    await sentinel.update(n=sentinel.n + 1)
    return await s.before("workerSentinel", timeout=5)


async def until_told(condition: Any) -> None:
    """Wait (at most 2 s) for worker B to hear from worker A."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0.02)


async def test_a_sign_out_on_worker_a_stops_carols_states_on_worker_b(two_workers: Any) -> None:
    stores, _balancer, browser, tab_on_b = two_workers
    s = await tab_on_b("carol")
    await browser.get("/")  # worker A resolves carol's states too
    hub_b = stores["b"].hub
    assert len(await changes_reach(stores, s)) == 2
    await browser.get("/logout")  # worker A sees the sign-out
    await browser.get("/")
    await until_told(lambda: not hub_b.watched("user:carol:WorkerUser"))
    assert await changes_reach(stores, s) == []


async def test_a_sign_out_on_worker_a_stops_worker_b_before_any_other_request(
    two_workers: Any,
) -> None:
    """The sign-out request itself ends the session on every worker, as it does on the
    stream's own worker; not only the next request that reads the session id (a browser sent
    to a page without states after signing out may make none)."""
    stores, _balancer, browser, tab_on_b = two_workers
    s = await tab_on_b("carol")
    await browser.get("/")
    await browser.get("/logout")  # worker A; nothing else follows
    await until_told(lambda: not stores["b"].hub.watched("user:carol:WorkerUser"))
    assert await changes_reach(stores, s) == []


async def test_a_tab_left_behind_by_two_sign_ins_stops_when_the_last_user_signs_out(
    two_workers: Any,
) -> None:
    """dave signs in over carol on her browser, then signs out: carol's old tab (its session
    ended when dave signed in) must not go on getting what dave may see (the spy secret)."""
    stores, balancer, browser, tab_on_b = two_workers
    s = await tab_on_b("carol")
    balancer.to = "b"  # one worker: this is no matter of telling the others
    await browser.get("/login?user=dave")
    await browser.get("/")
    await browser.get("/logout")
    await browser.get("/")
    b = stores["b"]
    secret = b.get("global:WorkerSecret")
    await secret.update(n=secret.n + 1)
    sentinel = await WorkerSentinel.resolve(store=b)
    await sentinel.update(n=sentinel.n + 1)
    assert await s.before("workerSentinel", timeout=5) == []


async def test_refresh_user_on_worker_a_reaches_worker_b(two_workers: Any) -> None:
    stores, _balancer, browser, tab_on_b = two_workers
    s = await tab_on_b("carol")
    await browser.get("/")
    hub_b = stores["b"].hub
    assert stores["a"].refresh_user("carol", UserContext("carol")) == 0  # none on A itself
    await until_told(lambda: not hub_b.watched("global:WorkerSecret"))
    got = await changes_reach(stores, s)
    assert got == [{"workerUser": {"n": 1}}]  # still carol: her state, not the secret


def test_nothing_is_sent_between_workers_without_a_shared_backend() -> None:
    store = StateStore()
    store.end_session("s", None)
    assert store.refresh_user("u", None) == 0
    assert not store._control_tasks


async def test_a_stale_cookie_sent_again_and_again_is_told_to_the_other_workers_once(
    two_workers: Any,
) -> None:
    stores, _balancer, browser, tab_on_b = two_workers
    await tab_on_b("carol")
    stale = browser.cookies["faststate_sid"]  # bound to carol
    await browser.get("/logout")
    a = stores["a"]
    told: list[dict[str, Any]] = []
    publish = a.backend.publish_control

    async def counted(message: dict[str, Any]) -> None:
        told.append(message)
        await publish(message)

    a.backend.publish_control = counted  # type: ignore[method-assign]
    for _ in range(5):  # a client replaying carol's session cookie after she signed out
        browser.cookies.set("faststate_sid", stale, domain="t.local")
        await browser.get("/")
    await until_told(lambda: not a._control_tasks)
    ended = [m["end_session"] for m in told if "end_session" in m]
    assert len(ended) == 1  # her session ended 5 times on worker A, told once


async def test_a_session_end_that_could_not_be_told_is_told_when_it_ends_again(
    two_workers: Any,
) -> None:
    """Redis was down when worker A first saw carol's stale cookie: the message was lost. The
    same cookie again, Redis back: the other workers are told this time."""
    stores, _balancer, browser, tab_on_b = two_workers
    s = await tab_on_b("carol")
    await browser.get("/")
    stale = browser.cookies["faststate_sid"]  # bound to carol
    a = stores["a"]
    publish = a.backend.publish_control
    calls: list[dict[str, Any]] = []

    async def down_once(message: dict[str, Any]) -> None:
        calls.append(message)
        if len(calls) == 1:
            raise BackendUnavailable("the state backend is unavailable; try again shortly")
        await publish(message)

    a.backend.publish_control = down_once  # type: ignore[method-assign]
    await browser.get("/logout")
    await browser.get("/")  # A ends carol's session: telling B fails
    await until_told(lambda: not a._control_tasks)
    browser.cookies.set("faststate_sid", stale, domain="t.local")
    await browser.get("/")  # the stale cookie again (a retry), Redis is back
    await until_told(lambda: not stores["b"].hub.watched("user:carol:WorkerUser"))
    assert await changes_reach(stores, s) == []


@dataclass(frozen=True, slots=True)
class OrgUser(UserContext):
    """An app's own user, with more than faststate sends the other workers."""

    org: str = ""


class WorkerOrgScope(ScopeRule):
    name = "worker_org"

    def owner(self, ctx: RequestContext) -> str | None:
        user = ctx.user
        return user.org if isinstance(user, OrgUser) else None

    def owner_matches(self, key: str, state_name: str, user: UserContext | None) -> bool:
        org: str = user.org  # type: ignore[union-attr]  # what an app's rule may well write
        return key == f"worker_org:{escape_id(org)}:{state_name}"


register_scope(WorkerOrgScope())


class WorkerBoard(State):
    __faststate__ = StateConfig(scope="worker_org", requires_auth=True)
    n: int = 0


async def test_a_user_from_another_worker_that_a_custom_rule_cannot_read_stops_its_keys(
    redis_server: RedisServer,
) -> None:
    """carol moves from acme to globex; refresh_user on worker A sends worker B her id and
    roles, not the org the app's rule reads: B's tab stops getting acme's board (it could
    not tell), where it kept it and logged a bad message."""
    orgs = {"carol": "acme"}

    def loader(scope: Any) -> OrgUser | None:
        uid = scope.get("session", {}).get("auth")
        return OrgUser(uid, org=orgs[uid]) if uid else None

    def org_app(store: StateStore) -> Starlette:
        async def page(request: Request) -> HTMLResponse:
            board, sentinel = await WorkerBoard.dependency(), await WorkerSentinel.dependency()
            return HTMLResponse(f"<body>{board.to_html()}{sentinel.to_html()}</body>")

        async def login(request: Request) -> PlainTextResponse:
            request.session["auth"] = request.query_params["user"]
            return PlainTextResponse("ok")

        return Starlette(
            routes=[Route("/", page), Route("/login", login)],
            middleware=[
                Middleware(FastStateMiddleware, secret_key="w", store=store, user_loader=loader),
                Middleware(SessionMiddleware, secret_key="app"),
            ],
        )

    stores = {"a": StateStore(redis_server.url), "b": StateStore(redis_server.url)}
    apps = {name: org_app(store) for name, store in stores.items()}
    balancer = Balancer(apps)
    browser = httpx.AsyncClient(transport=balancer, base_url="http://t")
    s: Stream | None = None
    try:
        await browser.get("/login?user=carol")
        balancer.to = "b"
        html = (await browser.get("/")).text
        balancer.to = "a"
        await browser.get("/")
        s = await Stream(apps["b"], stream_url(html), browser.cookies, {}).open()
        await s.next()
        orgs["carol"] = "globex"
        stores["a"].refresh_user("carol", OrgUser("carol", org="globex"))
        await until_told(lambda: not stores["b"].hub.watched("worker_org:acme:WorkerBoard"))
        board = stores["a"].get("worker_org:acme:WorkerBoard")
        await board.update(n=5)
        sentinel = await WorkerSentinel.resolve(store=stores["a"])
        await sentinel.update(n=sentinel.n + 1)
        assert await s.before("workerSentinel", timeout=5) == []
    finally:
        if s is not None:
            await s.close()
        await browser.aclose()
        for store in stores.values():
            await store.close()
