"""@event: action strings, argument validation, setters, replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import pytest
from pydantic import AfterValidator
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateStore,
    Writable,
    client_writable,
    event,
    server_owned,
)
from faststate_mw._dispatch import bind_arguments
from faststate_mw._eventspec import URL_ARGS_KEPT
from faststate_mw._http import parse_query
from tests.conftest import API, DS
from tests.sse import patched_signals, sse_events


class Shop(State):
    __faststate__ = StateConfig(writable=("tags",))
    count: Annotated[int, client_writable] = 0
    name: Annotated[str, Writable] = "shop"
    tags: list[str] = []
    stock: Annotated[int, server_owned] = 10
    level: int = 0  # server-owned by default

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def add_tag(self, tag: str, times: int) -> None:
        self.tags.extend([tag] * times)

    @event(method="GET")
    def peek(self) -> None:
        pass

    @event(path="/custom/shop/rename")
    def rename(self, name: str) -> None:
        self.name = name

    @event
    def fragment(self) -> str:
        self.count += 1
        return '<div id="frag">hello</div>'

    @event
    async def slow_increment(self) -> None:
        value = self.count
        await asyncio.sleep(0)
        self.count = value + 1

    @event
    async def progress(self) -> AsyncIterator[Any]:
        for i in range(3):
            self.count = i + 100
            yield None
        yield '<div id="done">done</div>'

    @event
    def sync_progress(self) -> Iterator[None]:
        self.count = 1
        yield None
        self.count = 2

    @event
    def broken(self) -> None:
        self.count = 999
        self.tags.append("half-done")
        raise RuntimeError("secret internal detail")

    @event
    def take_stock(self, stock: int = 0) -> None:
        self.count = stock

    @event
    def take_level(self, level: int = 0) -> None:
        self.count = level


def page(request: Any) -> HTMLResponse:
    return HTMLResponse(Shop.current().to_html())


def make_client(store: StateStore) -> TestClient:
    app = Starlette(routes=[Route("/", page)])
    app.add_middleware(FastStateMiddleware, secret_key="test-secret", store=store)
    client = TestClient(app)
    client.get("/")  # receive a session cookie
    return client


def shop(store: StateStore) -> Shop:
    key = next(iter(store.keys(state_cls=Shop)))
    inst = store.get(key)
    assert isinstance(inst, Shop)
    return inst


def test_action_strings() -> None:
    # each action sends only its state's signals, the tab id and top-level signals named
    # like its arguments (Datastar's filterSignals)
    only = '{"filterSignals": {"include": (/^(shop\\.|faststate\\.tab$|amount$)/)}}'
    assert Shop.increment(5) == f'@post("/_faststate/Shop/increment?amount=5", {only})'
    assert Shop.increment() == f'@post("/_faststate/Shop/increment", {only})'
    assert Shop.add_tag("a b'c", times=2).startswith(
        '@post("/_faststate/Shop/add_tag?tag=a%20b%27c&times=2", '
    )
    assert Shop.peek().startswith('@get("/_faststate/Shop/peek", ')
    assert Shop.rename("x").startswith('@post("/custom/shop/rename?name=x", ')
    assert Shop.set_name() == (
        '@post("/_faststate/Shop/set_name", '
        '{"filterSignals": {"include": (/^(shop\\.|faststate\\.tab$|value$)/)}})'
    )
    assert Shop.increment.url(2) == "/_faststate/Shop/increment?amount=2"
    with pytest.raises(TypeError):
        Shop.increment(1, 2)
    with pytest.raises(TypeError):
        Shop.increment(nope=1)


def test_instance_call_runs_the_method() -> None:
    s = Shop()
    s.increment(3)
    assert s.count == 3


def test_setters_generated_only_for_writable_fields() -> None:
    events = Shop.__faststate_events__
    assert {"set_count", "set_name", "set_tags"} <= set(events)
    assert "set_stock" not in events and "set_level" not in events
    assert not hasattr(Shop, "set_stock")
    assert not hasattr(Shop, "set_level")


def test_event_replies_only_changed_fields(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/increment?amount=5", headers=DS, content=b"{}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert patched_signals(r.text) == [{"shop": {"count": 5}}]
    assert shop(store).count == 5


def test_arguments_from_signals_and_url(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/add_tag?times=2", headers=DS, json={"shop": {"tag": "x"}})
    assert patched_signals(r.text) == [{"shop": {"tags": ["x", "x"]}}]
    # top-level signals work too, the URL wins over signals
    r = client.post("/_faststate/Shop/add_tag?tag=u", headers=DS, json={"tag": "no", "times": 1})
    assert shop(store).tags == ["x", "x", "u"]


def test_a_url_binds_the_same_arguments_again(store: StateStore) -> None:
    """What a URL binds is kept for the next request with the same URL (see
    EventSpec.url_args): what it does not carry is still read from each request's signals, and
    an error is the same error."""
    client = make_client(store)
    url = "/_faststate/Shop/add_tag?times=2"
    for tag in ("x", "y"):
        client.post(url, headers=DS, json={"shop": {"tag": tag}})
    assert shop(store).tags == ["x", "x", "y", "y"]
    spec = Shop.__faststate_events__["add_tag"]
    assert spec.url_args[b"times=2"][1] == {"times": 2}
    errors = [
        client.post(u, headers=API, json={"shop": {"tag": ["no"]}}).json()["error"]
        for u in ("/_faststate/Shop/add_tag?times=3", "/_faststate/Shop/add_tag?times=3", url)
    ]
    assert errors[0] == errors[1] and errors[2]["detail"] == errors[0]["detail"]
    assert errors[0]["detail"] == [{"arg": "tag", "error": "Input should be a valid string"}]
    # another URL is checked anew
    r = client.post(url + "&tmes=1", headers=API, json={"shop": {"tag": "z"}})
    assert r.status_code == 422
    assert shop(store).tags == ["x", "x", "y", "y"]


def test_kept_urls_are_bounded() -> None:
    """A client sending ever new URLs only makes the others checked again."""
    spec = Shop.__faststate_events__["increment"]
    for i in range(URL_ARGS_KEPT + 5):
        qs = f"amount={i}".encode()
        query = parse_query({"query_string": qs})
        assert bind_arguments(Shop, spec, query, {}, qs=qs) == {"amount": i}
    kept = spec.url_args
    assert 0 < len(kept) <= URL_ARGS_KEPT
    assert f"amount={URL_ARGS_KEPT + 4}".encode() in kept


calls: list[int] = []


def _audited(value: int) -> int:
    calls.append(value)
    return value


class Audit(State):
    total: int = 0

    @event
    def add(self, n: Annotated[int, AfterValidator(_audited)]) -> None:
        self.total += n

    @event
    def tag(self, label: str | None = None) -> None:
        self.total += 1


def test_an_apps_own_validator_runs_on_every_request(store: StateStore) -> None:
    """Only plain types' values are kept: a validator of the app's own may not give the same
    value twice (it may count, or read the clock)."""
    client = make_client(store)
    calls.clear()
    for _ in range(3):
        assert client.post("/_faststate/Audit/add?n=2", headers=DS, json={}).status_code == 200
    assert calls == [2, 2, 2]
    assert Audit.__faststate_events__["add"].url_args == {}
    assert client.post("/_faststate/Audit/tag?label=a", headers=DS, json={}).status_code == 200
    assert Audit.__faststate_events__["tag"].url_args == {}  # not a plain type: not kept


def test_setter_reads_the_bound_signal(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/set_name", headers=DS, json={"shop": {"name": "new"}})
    assert patched_signals(r.text) == [{"shop": {"name": "new"}}]
    r = client.post("/_faststate/Shop/set_count", headers=DS, json={"shop": {"count": "oops"}})
    assert patched_signals(r.text)[0]["_faststate"]["status"] == 422
    assert shop(store).count == 0


def test_server_owned_field_never_written_from_client(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/set_stock", headers=API, json={"shop": {"stock": 0}})
    assert r.status_code == 404
    # an argument named like a server-owned field is not read from its signal
    r = client.post("/_faststate/Shop/take_stock", headers=DS, json={"shop": {"stock": 77}})
    assert shop(store).count == 0
    assert shop(store).stock == 10
    # the default: a field declared nowhere is server-owned too
    r = client.post("/_faststate/Shop/set_level?value=3", headers=API, content=b"{}")
    assert r.status_code == 404
    r = client.post("/_faststate/Shop/take_level", headers=DS, json={"shop": {"level": 77}})
    assert shop(store).count == 0
    assert shop(store).level == 0


def test_no_change_is_an_empty_204(store: StateStore) -> None:
    client = make_client(store)
    r = client.get("/_faststate/Shop/peek", headers={"datastar-request": "true"})
    assert r.status_code == 204
    assert r.content == b""


def test_get_event_rejects_post_and_vice_versa(store: StateStore) -> None:
    client = make_client(store)
    assert client.post("/_faststate/Shop/peek", headers=API, content=b"{}").status_code == 405
    assert client.get("/_faststate/Shop/increment", headers=API).status_code == 405


def test_custom_path(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/custom/shop/rename?name=zed", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"shop": {"name": "zed"}}]


def test_html_return_is_patch_elements(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/fragment", headers=DS, content=b"{}")
    events = sse_events(r.text)
    assert [e for e, _ in events] == ["datastar-patch-signals", "datastar-patch-elements"]
    assert events[1][1] == 'elements <div id="frag">hello</div>'


def test_fasthtml_ft_return_is_rendered(store: StateStore) -> None:
    from fasthtml.common import Div

    class FtWidget(State):
        n: int = 0

        @event
        def show(self) -> Any:
            return Div("hi", id="w")

    client = make_client(store)
    r = client.post("/_faststate/FtWidget/show", headers=DS, content=b"{}")
    assert sse_events(r.text) == [("datastar-patch-elements", 'elements <div id="w">hi</div>')]


def test_async_generator_streams_a_patch_per_yield(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/progress", headers=DS, content=b"{}")
    counts = [p["shop"]["count"] for p in patched_signals(r.text)]
    assert counts == [100, 101, 102]
    assert sse_events(r.text)[-1] == (
        "datastar-patch-elements",
        'elements <div id="done">done</div>',
    )


def test_sync_generator_sends_final_change(store: StateStore) -> None:
    client = make_client(store)
    r = client.post("/_faststate/Shop/sync_progress", headers=DS, content=b"{}")
    assert [p["shop"]["count"] for p in patched_signals(r.text)] == [1, 2]


def test_failing_event_rolls_back_and_hides_details(store: StateStore) -> None:
    client = make_client(store)
    client.post("/_faststate/Shop/increment?amount=1", headers=DS, content=b"{}")
    r = client.post("/_faststate/Shop/broken", headers=API, content=b"{}")
    assert r.status_code == 500
    assert "secret internal detail" not in r.text
    assert "Traceback" not in r.text
    assert r.json()["error"]["code"] == "event_failed"
    assert shop(store).count == 1
    assert shop(store).tags == []


def test_flat_and_custom_namespaces(store: StateStore) -> None:
    from faststate_mw import signals

    class Flat(State):
        __faststate__ = StateConfig(flat_signals=True, writable=("myInt",))
        myInt: int = 0

        @event
        def bump(self) -> None:
            self.myInt += 1

    class Named(State):
        __faststate__ = StateConfig(namespace="n1")
        myInt: int = 0

    assert Flat.ref("myInt") == "$myInt"  # the seeds' flat style
    assert Named.ref("myInt") == "$n1.myInt"
    merged = signals(Flat(), Named())["data-signals"]
    assert '"myInt":0' in merged and '"n1":{"myInt":0}' in merged
    client = make_client(store)
    r = client.post("/_faststate/Flat/bump", headers=DS, json={"myInt": 5})
    assert patched_signals(r.text) == [{"myInt": 1}]
    r = client.post("/_faststate/Flat/set_myInt", headers=DS, json={"myInt": 7})
    assert patched_signals(r.text) == [{"myInt": 7}]
