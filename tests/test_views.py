"""Live views in-process: one render per change however many tabs show it, per viewer, field
dependencies, coalescing, version order, resync, authorization, contained errors; and the
gaps closed beside them (assigned fields echoed to the sender, class-form actions of RECORD
states, browser-side event arguments).

"Nothing else arrives" is checked with a sentinel state rendered last on every page (see
``Stream.before``)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from html import escape
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
    ConfigurationError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    current_user,
    event,
    expr,
    view,
    view_element_id,
)
from tests.asgi_stream import Stream
from tests.conftest import DS
from tests.sse import stream_url, tab_id

SENTINEL = "viewSentinel"
RENDERS: Counter[str] = Counter()


class ViewList(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    items: list[str] = []
    title: str = "list"
    draft: str = ""

    @event
    def add(self, text: str = "milk") -> None:
        self.items.append(text)
        self.draft = ""

    @event
    def retitle(self, title: str) -> None:
        self.title = title

    @event
    def push(self, n: int) -> None:
        self.items.append(str(n))

    @view
    def items_view(self) -> str:
        RENDERS["items_view"] += 1
        return "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in self.items) + "</ul>"

    @view(fields=["title"])
    def title_view(self) -> str:
        RENDERS["title_view"] += 1
        return f"<h1>{escape(self.title)}</h1>"

    @view(per_viewer=True)
    def who_view(self) -> str:
        RENDERS["who_view"] += 1
        user = current_user()
        return f"<p>{user.id if user else 'anon'}:{len(self.items)}</p>"

    @view
    def anon_view(self) -> str:
        user = current_user()
        return f"<p>{user.id if user else 'anon'}</p>"

    @view
    def class_form(self) -> str:
        # the class form of an action inside a view targets the instance being rendered
        return f'<button data-on:click="{ViewList.add("x")}">{len(self.items)}</button>'

    @view
    def fragile(self) -> str:
        if "boom" in self.items:
            raise RuntimeError("the view broke")
        return f"<b>{len(self.items)}</b>"


class PrivateList(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD, requires_auth=True)
    items: list[str] = []

    @view
    def items_view(self) -> str:
        return "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in self.items) + "</ul>"


class ViewWidget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


class ViewSentinel(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0


async def mark(store: StateStore) -> None:
    sentinel = await ViewSentinel.resolve(store=store)
    await sentinel.update(n=sentinel.n + 1)


def make_app(store: StateStore) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        lst = ViewList.current()
        names = request.query_params.get("views", "items_view").split(",")
        body = lst.to_html() + "".join(getattr(lst, n)() for n in names if n)
        if "solo" not in request.query_params:  # solo: a stream of one key (the hub writes it)
            body += ViewSentinel.current().to_html()
        return HTMLResponse(f"<html><body>{body}</body></html>")

    async def private(request: Request) -> HTMLResponse:
        lst = PrivateList.current()
        body = lst.to_html() + lst.items_view() + ViewSentinel.current().to_html()
        return HTMLResponse(f"<html><body>{body}</body></html>")

    async def actions(request: Request) -> PlainTextResponse:
        return PlainTextResponse(ViewList.add("x"))

    async def widget_action(request: Request) -> PlainTextResponse:
        return PlainTextResponse(ViewWidget.bump())

    async def login(request: Request) -> PlainTextResponse:
        request.session["auth"] = request.query_params["user"]
        return PlainTextResponse("ok")

    async def logout(request: Request) -> PlainTextResponse:
        request.session.clear()
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/list/{id}", page),
            Route("/private/{id}", private),
            Route("/actions/{id}", actions),
            Route("/widget", widget_action),
            Route("/login", login),
            Route("/logout", logout),
        ],
        middleware=[
            Middleware(FastStateMiddleware, secret_key="views", store=store),
            Middleware(SessionMiddleware, secret_key="app"),
        ],
    )


def elements(event: dict[str, Any]) -> str:
    """The HTML of a ``datastar-patch-elements`` event."""
    assert event["event"] == "datastar-patch-elements", event
    return "\n".join(d.removeprefix("elements ") for d in event["data"])


class Browser:
    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        self.streams: list[Stream] = []

    async def tab(self, path: str, headers: dict[str, str] | None = None) -> tuple[str, Stream]:
        html = (await self.client.get(path)).text
        s = await Stream(self.app, stream_url(html), self.client.cookies, headers or {}).open()
        self.streams.append(s)
        return html, s

    async def post(self, url: str, tab: str = "") -> httpx.Response:
        return await self.client.post(url, headers=DS, json={"faststate": {"tab": tab}})

    async def close(self) -> None:
        for s in self.streams:
            await s.close()
        await self.client.aclose()


@pytest.fixture
async def browsers(store: StateStore) -> AsyncIterator[Any]:
    app = make_app(store)
    made: list[Browser] = []
    RENDERS.clear()

    def browser() -> Browser:
        b = Browser(app)
        made.append(b)
        return b

    yield browser
    for b in made:
        await b.close()
    await store.close()


async def the_list(store: StateStore, ident: int = 1) -> ViewList:
    return await ViewList.resolve(ident, store=store)


async def test_the_page_renders_the_view_in_its_documented_element(browsers: Any) -> None:
    html, _s = await browsers().tab("/list/1")
    element_id = view_element_id("ViewList", "1", "items_view")
    assert element_id == "fs-ViewList-1-items_view"
    assert f'<div id="{element_id}" style="display:contents"><ul></ul></div>' in html
    assert ViewList.items_view.element_id(ViewList, 1) == element_id
    # an id that is not a safe token is hashed, never copied into the page
    assert view_element_id("ViewList", 'x"><script>', "v").startswith("fs-ViewList-")
    assert "<" not in view_element_id("ViewList", 'x"><script>', "v")


async def test_one_render_per_change_for_a_thousand_tabs(browsers: Any, store: StateStore) -> None:
    # a thousand browsers (one session holds at most Limits.max_streams_per_session streams)
    streams = [(await browsers().tab("/list/1"))[1] for _ in range(1000)]
    RENDERS.clear()
    lst = await the_list(store)
    await lst.update(items=["a", "b"])
    for s in streams:
        signals = await s.next()
        assert signals["signals"] == {"viewList": {"items": ["a", "b"]}}
        assert "<li>a</li><li>b</li>" in elements(await s.next())
    assert RENDERS["items_view"] == 1
    assert store.hub.stats()["view_renders"] == 1


async def test_per_viewer_view_renders_once_per_distinct_user(
    browsers: Any, store: StateStore
) -> None:
    tabs = []
    for user in ("ann", "bob", "cat"):
        for _device in range(3):
            b = browsers()
            await b.client.get(f"/login?user={user}")
            _html, s = await b.tab("/list/1?views=who_view")
            tabs.append((user, s))
    RENDERS.clear()
    await (await the_list(store)).update(items=["x"])
    for user, s in tabs:
        await s.next()
        assert f"<p>{user}:1</p>" in elements(await s.next())
    assert RENDERS["who_view"] == 3


async def test_a_viewer_independent_view_never_sees_the_user(
    browsers: Any, store: StateStore
) -> None:
    b = browsers()
    await b.client.get("/login?user=ann")
    html, s = await b.tab("/list/1?views=anon_view")
    assert "<p>anon</p>" in html
    await (await the_list(store)).update(items=["x"])
    await s.next()
    assert "<p>anon</p>" in elements(await s.next())


async def test_a_view_is_not_rerendered_for_fields_it_does_not_read(
    browsers: Any, store: StateStore
) -> None:
    _html, s = await browsers().tab("/list/1?views=title_view")
    RENDERS.clear()
    lst = await the_list(store)
    await lst.update(items=["a"])
    await lst.update(draft="d")
    await mark(store)
    got = await s.before(SENTINEL)
    assert got == [{"viewList": {"items": ["a"]}}, {"viewList": {"draft": "d"}}]
    assert RENDERS["title_view"] == 0
    await lst.update(title="Groceries")
    assert (await s.next())["signals"] == {"viewList": {"title": "Groceries"}}
    assert "<h1>Groceries</h1>" in elements(await s.next())
    assert RENDERS["title_view"] == 1


async def test_a_burst_is_coalesced_and_ends_at_the_final_state(
    browsers: Any, store: StateStore
) -> None:
    _html, s = await browsers().tab("/list/1")
    RENDERS.clear()
    lst = await the_list(store)
    s.stall()
    await lst.update(items=["0"])
    await s.blocked.wait()  # the tab is behind: its writer waits on the reader
    for n in range(1, 100):
        await lst.update(items=[str(n)])
    s.resume()
    await s.wait_for(lambda: "<li>99</li>" in s.reader.buffer.decode() or _seen(s, "<li>99</li>"))
    assert RENDERS["items_view"] < 10


def _seen(s: Stream, html: str) -> bool:
    return any(html in "\n".join(e["data"]) for e in list(s.events._queue))  # type: ignore[attr-defined]


@pytest.mark.parametrize("query", ["", "?solo=1"])
async def test_views_follow_their_signal_patches_in_version_order(
    browsers: Any, store: StateStore, query: str
) -> None:
    b = browsers()
    html, s = await b.tab("/list/1" + query)
    for n in range(5):
        await b.post("/_faststate/ViewList/push?n=" + str(n) + "&record_id=1", tab_id(html))
    seen: list[str] = []
    items: list[str] = []
    while not seen or "<li>4</li>" not in seen[-1]:
        e = await s.next()
        if e["event"] == "datastar-patch-signals":
            items = e["signals"]["viewList"]["items"]
        else:
            # a view never shows a version whose signals the tab has not had yet
            assert "".join(f"<li>{t}</li>" for t in items) in elements(e)
            seen.append(elements(e))
    # renders only move forward
    assert [h.count("<li>") for h in seen] == sorted({h.count("<li>") for h in seen})


async def test_the_sender_gets_the_view_once_through_its_stream(
    browsers: Any, store: StateStore
) -> None:
    b = browsers()
    html, s = await b.tab("/list/1")
    reply = await b.post("/_faststate/ViewList/add?text=tea&record_id=1", tab_id(html))
    assert "datastar-patch-elements" not in reply.text
    await mark(store)
    got = await s.before(SENTINEL)
    assert len([e for e in got if isinstance(e, dict) and e.get("event")]) == 1
    assert [e for e in got if "event" not in e] == [{"viewList": {"items": ["tea"]}}]


async def test_a_stale_tab_resyncs_with_its_views(browsers: Any, store: StateStore) -> None:
    b = browsers()
    html = (await b.client.get("/list/1")).text
    await (await the_list(store)).update(items=["late"])
    stale = {"last-event-id": "oldepoch:0.0"}
    s = await Stream(b.app, stream_url(html), b.client.cookies, stale).open()
    b.streams.append(s)
    assert (await s.next())["signals"]["viewList"]["items"] == ["late"]
    assert "<li>late</li>" in elements(await s.next())


async def test_a_tab_that_may_no_longer_see_the_state_gets_no_renders(
    browsers: Any, store: StateStore
) -> None:
    b, other = browsers(), browsers()
    for x in (b, other):
        await x.client.get("/login?user=ann")
    _h, s = await b.tab("/private/1")
    _h, s2 = await other.tab("/private/1")
    lst = await PrivateList.resolve(1, store=store)
    await lst.update(items=["one"])
    for x in (s, s2):
        await x.next()
        assert "<li>one</li>" in elements(await x.next())
    await b.client.get("/logout")  # this tab's stream learns of it from the session
    store.refresh_user("ann", None)  # and every other stream of ann's (a revoked account)
    await lst.update(items=["two"])
    await mark(store)
    assert await s.before(SENTINEL) == []
    assert await s2.before(SENTINEL) == []


async def test_a_failing_view_is_contained(
    browsers: Any, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    _h, s = await browsers().tab("/list/1?views=fragile,items_view")
    _h, s2 = await browsers().tab("/list/1?views=fragile")
    lst = await the_list(store)
    with caplog.at_level(logging.ERROR, logger="faststate_mw"):
        await lst.update(items=["boom"])
        await mark(store)
        got = await s.before(SENTINEL)
        got2 = await s2.before(SENTINEL)
    assert got[0] == {"viewList": {"items": ["boom"]}}
    assert got[1]["_faststate"]["code"] == "view_failed"
    assert "RuntimeError" not in str(got[1])
    assert "<li>boom</li>" in elements(got[2])  # the other view still renders
    assert got2[1]["_faststate"]["code"] == "view_failed"
    assert lst.items == ["boom"]  # the state is unaffected
    assert len([r for r in caplog.records if "fragile" in r.getMessage()]) == 1


async def test_an_assigned_field_is_sent_to_the_sender_even_when_unchanged(
    browsers: Any,
) -> None:
    b = browsers()
    html, _s = await b.tab("/list/1")
    reply = await b.post("/_faststate/ViewList/add?text=tea&record_id=1", tab_id(html))
    assert '{"viewList":{"draft":""}}' in reply.text.replace("data: signals ", "")


async def test_class_form_actions_target_the_record_the_request_names(browsers: Any) -> None:
    b = browsers()
    assert "record_id=7" in (await b.client.get("/actions/7")).text
    # a COMPONENT class form cannot know its instance: a clear error when the page renders
    failed = await b.client.get("/widget")
    assert failed.status_code == 500
    assert "use instance.actions.bump()" in failed.json()["error"]["message"]


async def test_event_arguments_from_browser_expressions(browsers: Any, store: StateStore) -> None:
    action = ViewList.push(n=expr("evt.target.value"))
    assert action.startswith(
        '@post(("/_faststate/ViewList/push" + "?n=" + encodeURIComponent(evt.target.value)), '
    )
    with pytest.raises(ConfigurationError):
        expr("'); alert(1); ('")
    b = browsers()
    html, _s = await b.tab("/list/3")
    # what the browser sends is validated like any argument
    bad = await b.client.post(
        "/_faststate/ViewList/push?record_id=3&n=abc", headers={**DS, "accept": "application/json"}
    )
    assert bad.status_code == 422
    ok = await b.post("/_faststate/ViewList/push?record_id=3&n=5", tab_id(html))
    assert ok.status_code in (200, 204)
    assert (await the_list(store, 3)).items == ["5"]


async def test_views_of_other_records_stay_quiet(browsers: Any, store: StateStore) -> None:
    _h, one = await browsers().tab("/list/1")
    _h, two = await browsers().tab("/list/2")
    await (await the_list(store, 1)).update(items=["only one"])
    await mark(store)
    assert await two.before(SENTINEL) == []
    got = await one.before(SENTINEL)
    assert "<li>only one</li>" in elements(got[1])


async def test_class_form_actions_in_a_view_target_the_rendered_record(
    browsers: Any, store: StateStore
) -> None:
    html, s = await browsers().tab("/list/4?views=class_form")
    assert "add?text=x&amp;record_id=4" in html or "add?text=x&record_id=4" in html
    lst = await the_list(store, 4)
    async with lst.mutate():  # mutate() reaches views like an event does
        lst.items.append("y")
    assert (await s.next())["signals"] == {"viewList": {"items": ["y"]}}
    patch = elements(await s.next())
    assert "record_id=4" in patch
    assert ">1</button>" in patch


async def test_one_key_tabs_are_written_their_views_by_the_hub_per_viewer(
    browsers: Any, store: StateStore
) -> None:
    tabs = []
    for user in ("ann", "bob", "cat"):
        for _device in range(2):
            b = browsers()
            await b.client.get(f"/login?user={user}")
            _html, s = await b.tab("/list/1?views=who_view,items_view&solo=1")
            tabs.append((user, s))
    conns = list(store.hub.tabs.values())
    assert all(len(conn.keys) == 1 and conn.send is not None for conn in conns)
    waiters = [conn.waiter for conn in conns]
    RENDERS.clear()
    for n in (1, 2):
        await (await the_list(store)).update(items=["x"] * n)
        for user, s in tabs:
            assert (await s.next())["signals"] == {"viewList": {"items": ["x"] * n}}
            html = elements(await s.next()) + elements(await s.next())  # one event per view
            assert f"<p>{user}:{n}</p>" in html and "<li>x</li>" * n in html
    assert RENDERS["who_view"] == 6 and RENDERS["items_view"] == 2
    # written by the hub: no stream's task was woken
    assert [conn.waiter for conn in conns] == waiters


async def test_a_failing_view_is_contained_on_a_one_key_tab(
    browsers: Any, store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    _h, s = await browsers().tab("/list/1?views=fragile,items_view&solo=1")
    lst = await the_list(store)
    with caplog.at_level(logging.ERROR, logger="faststate_mw"):
        await lst.update(items=["boom"])
        assert (await s.next())["signals"] == {"viewList": {"items": ["boom"]}}
        error = await s.next()
        assert error["signals"]["_faststate"]["code"] == "view_failed"
        assert "<li>boom</li>" in elements(await s.next())  # the other view still renders
    await lst.update(items=["fine"])
    assert (await s.next())["signals"] == {"viewList": {"items": ["fine"]}}
    got = [await s.next(), await s.next()]
    assert "<b>1</b>" in elements(got[0]) and "<li>fine</li>" in elements(got[1])


async def test_one_key_tabs_with_the_same_view_share_its_patches_and_track_what_they_saw(
    browsers: Any, store: StateStore
) -> None:
    streams = [(await browsers().tab("/list/1?views=title_view&solo=1"))[1] for _ in range(5)]
    conns = list(store.hub.tabs.values())
    assert all(conn.view_sig is not None and conn.send is not None for conn in conns)
    RENDERS.clear()
    lst = await the_list(store)
    await lst.update(title="Groceries")
    for s in streams:
        assert (await s.next())["signals"] == {"viewList": {"title": "Groceries"}}
        assert "<h1>Groceries</h1>" in elements(await s.next())
    assert RENDERS["title_view"] == 1
    # a field the view does not read: every tab knows it already shows the latest title, so
    # the next thing after its signals is the next title's
    await lst.update(items=["a"])
    for s in streams:
        assert (await s.next())["signals"] == {"viewList": {"items": ["a"]}}
    await lst.update(title="Hardware")
    for s in streams:
        assert (await s.next())["signals"] == {"viewList": {"title": "Hardware"}}
        assert "<h1>Hardware</h1>" in elements(await s.next())
    assert RENDERS["title_view"] == 2
