"""Hostile input (issue 10, section 3): deep JSON, NaN/Infinity, lone surrogates, a corrupt
Redis version, neighbour cookies SimpleCookie cannot parse, strings that break Datastar's
``data-signals`` parsing, and what a 503 says while Redis is down."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    StoredStateError,
    event,
)
from faststate_mw import _untrusted as untrusted
from faststate_mw._http import patch_elements
from faststate_mw._session import cookie_value
from faststate_mw._state import signals_attribute
from faststate_mw._stored import from_stored
from faststate_mw._untrusted import MAX_JSON_DEPTH
from tests.conftest import API
from tests.servers import RedisServer

SECRET = "hostile-input-secret"


class HostileBox(State):
    # writable: these tests send hostile values through the fields' own signals
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, writable=("note", "ratio", "tree"))
    note: str = ""
    ratio: float = 0.0
    tree: Any = None
    calls: int = 0

    @event
    def write(self, note: str = "", ratio: float = 0.0, tree: list[Any] | None = None) -> None:
        self.note, self.ratio, self.tree = note, ratio, tree
        self.calls += 1

    @event
    def poison(self) -> None:
        """The app itself puts a NaN in (no client can any more)."""
        self.ratio = float("nan")

    @event
    def noop(self) -> None:
        pass


class HostileSession(State):
    __faststate__ = StateConfig(scope=StateScope.SESSION)
    clicks: int = 0

    @event
    def click(self) -> None:
        self.clicks += 1


def make_app(store: StateStore, *, debug: bool = False) -> Starlette:
    async def page(request: Request) -> HTMLResponse:
        box = await HostileBox.dependency()
        return HTMLResponse(f"<html><body>{box.to_html()}</body></html>")

    async def values(request: Request) -> JSONResponse:
        box, sess = await HostileBox.dependency(), await HostileSession.dependency()
        return JSONResponse({"note": box.note, "calls": box.calls, "clicks": sess.clicks})

    app = Starlette(debug=debug, routes=[Route("/", page), Route("/values", values)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    return app


@pytest.fixture
def client(store: StateStore) -> Iterator[TestClient]:
    with TestClient(make_app(store, debug=True), raise_server_exceptions=False) as c:
        yield c


def box_snapshot(client: TestClient) -> dict[str, Any]:
    r = client.get("/values")
    assert r.status_code == 200
    return dict(r.json())


def assert_refused(r: Any, status: int = 400, code: str = "invalid_payload") -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert "Traceback" not in r.text and 'File "' not in r.text


def deep(n: int) -> str:
    return "[" * n + "]" * n


# -- nesting depth ----------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH + 1, 1000, 5000])
def test_deeply_nested_signals_are_a_400_and_change_nothing(
    client: TestClient, levels: int
) -> None:
    before = box_snapshot(client)
    body = '{"hostileBox":{"tree":' + deep(levels) + "}}"
    r = client.post("/_faststate/HostileBox/write", headers=API, content=body.encode())
    assert_refused(r)
    assert "nested deeper" in r.json()["error"]["message"]
    assert box_snapshot(client) == before


def test_nesting_up_to_the_limit_is_accepted(client: TestClient) -> None:
    inner = deep(MAX_JSON_DEPTH - 2)
    body = '{"hostileBox":{"tree":' + inner + "}}"
    r = client.post("/_faststate/HostileBox/write", headers=API, content=body.encode())
    assert r.status_code == 200, r.text


def test_deeply_nested_query_argument_is_a_400(client: TestClient) -> None:
    before = box_snapshot(client)
    r = client.post(f"/_faststate/HostileBox/write?tree={deep(1000)}", headers=API, content=b"{}")
    assert_refused(r)
    r = client.get(f"/_faststate/HostileBox/noop?datastar={deep(1000)}", headers=API)
    assert r.status_code in (400, 405)
    assert box_snapshot(client) == before


def test_deeply_nested_stored_state_is_a_stored_state_error() -> None:
    data = '{"tree":' + deep(500) + "}"
    with pytest.raises(StoredStateError):
        from_stored(HostileBox, "global:HostileBox", data)
    ok = '{"tree":' + deep(10) + "}"
    assert from_stored(HostileBox, "global:HostileBox", ok).tree is not None


# -- NaN and Infinity -------------------------------------------------------------------------
@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_signals_are_refused(client: TestClient, number: str) -> None:
    before = box_snapshot(client)
    body = '{"hostileBox":{"ratio":' + number + ',"note":"x"}}'
    r = client.post("/_faststate/HostileBox/write", headers=API, content=body.encode())
    assert_refused(r)
    assert box_snapshot(client) == before


@pytest.mark.parametrize(
    "query", ["ratio=nan", "ratio=inf", "ratio=-Infinity", "ratio=1e999", "tree=[NaN]"]
)
def test_non_finite_numbers_in_the_url_are_refused(client: TestClient, query: str) -> None:
    before = box_snapshot(client)
    r = client.post(f"/_faststate/HostileBox/write?{query}", headers=API, content=b"{}")
    assert_refused(r)
    assert box_snapshot(client) == before


def test_after_an_app_made_nan_a_no_op_event_is_still_a_204(client: TestClient) -> None:
    assert client.post("/_faststate/HostileBox/poison", headers=API).status_code == 200
    r = client.post("/_faststate/HostileBox/noop", headers=API)
    assert r.status_code == 204
    assert r.content == b""


# -- lone surrogates --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"hostileBox":{"note":"\\ud800"}}',
        b'{"hostileBox":{"note":"a\\udfffb"}}',
        b'{"\\udc00":1}',
        # encoded, not escaped: UTF-8 bytes of U+D800 (json.loads reads them, surrogatepass)
        b'{"hostileBox":{"note":"\xed\xa0\x80"}}',
        '{"hostileBox":{"note":"\ud800"}}'.encode("utf-16", "surrogatepass"),
    ],
)
def test_lone_surrogates_are_a_400(client: TestClient, body: bytes) -> None:
    before = box_snapshot(client)
    r = client.post("/_faststate/HostileBox/write", headers=API, content=body)
    assert_refused(r)
    assert box_snapshot(client) == before
    assert client.get("/").status_code == 200


def test_lone_surrogates_in_url_json_are_a_400(client: TestClient) -> None:
    before = box_snapshot(client)
    r = client.post('/_faststate/HostileBox/write?tree=["%5Cud800"]', headers=API)
    assert_refused(r)
    assert box_snapshot(client) == before


def test_a_surrogate_pair_is_an_ordinary_character(client: TestClient) -> None:
    body = b'{"hostileBox":{"note":"\\ud83d\\ude00"}}'
    r = client.post("/_faststate/HostileBox/write", headers=API, content=body)
    assert r.status_code == 200
    assert box_snapshot(client)["note"] == "\U0001f600"


# -- cookies ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "neighbour",
    ['prefs={"theme":"dark","size":2}', "name=two words", 'q="unbalanced', "x=a\\b", "=", "junk"],
)
def test_a_neighbour_cookie_simplecookie_rejects_keeps_the_session(
    store: StateStore, neighbour: str
) -> None:
    with TestClient(make_app(store)) as c:
        c.get("/values")
        sid = c.cookies["faststate_sid"]
        c.cookies.clear()
        headers = {**API, "cookie": f"{neighbour}; faststate_sid={sid}; other=1"}
        for _ in range(2):
            r = c.post("/_faststate/HostileSession/click", headers=headers)
            assert r.status_code == 200
            assert "set-cookie" not in r.headers  # no new session was made
        assert c.get("/values", headers={"cookie": headers["cookie"]}).json()["clicks"] == 2


def test_cookie_header_parsing_is_the_browsers() -> None:
    assert cookie_value(b'a={"x":1}; faststate_sid=abc.def', b"faststate_sid") == b"abc.def"
    assert cookie_value(b"faststate_sid=first; faststate_sid=second", b"faststate_sid") == (
        b"first"
    )
    assert cookie_value(b'faststate_sid="quoted"', b"faststate_sid") == b"quoted"
    assert cookie_value(b"xfaststate_sid=no", b"faststate_sid") is None
    assert cookie_value(b"faststate_sid", b"faststate_sid") is None


# -- data-signals as Datastar reads it --------------------------------------------------------
# Datastar 1.0.1 splits a data-signals expression into statements with this pattern (from its
# client, `Sn`): one match per statement. It must see exactly one statement.
DATASTAR_STATEMENTS = re.compile(
    r"""(/(\\/|[^/])*/|"(\\"|[^"])*"|'(\\'|[^'])*'|`(\\`|[^`])*`|\(\s*((function)\s*\(\s*\)|"""
    r"""(\(\s*\))\s*=>)\s*(?:\{[\s\S]*?\}|[^;){]*)\s*\)\s*\(\s*\)|[^;])+""",
    re.M,
)
NASTY = [
    "ends in a backslash \\",
    "later; with a semicolon",
    'quote " and \\" escaped',
    "$signal @post('/x') ${x} `tpl`",
    "</script><script>alert(1)</script>",
    "a/regex/i; b",
    "\U0001f595JS_x_DS\U0001f680 __escaped0",
    "line\nbreak\r\u2028\u2029\x00",
]


def test_data_signals_is_one_statement_of_plain_ascii_whatever_the_strings() -> None:
    attr = signals_attribute({"hostileBox": {"notes": NASTY}})
    assert json.loads(attr) == {"hostileBox": {"notes": NASTY}}
    assert attr.isascii()
    assert len(DATASTAR_STATEMENTS.findall(attr.strip())) == 1
    assert not re.search(r"[;$@'`/<>&]", attr)
    assert "\\\\" not in attr and '\\"' not in attr  # no backslash or quote escaped by "\\"


def test_a_rendered_page_carries_the_strings_safely(client: TestClient) -> None:
    body = json.dumps({"hostileBox": {"note": NASTY[0] + NASTY[1]}})
    assert client.post("/_faststate/HostileBox/write", headers=API, content=body).status_code == 200
    html = client.get("/").text
    found = re.search(r'data-signals="([^"]*)"', html)
    assert found is not None
    attr = unescape(found.group(1))
    assert ";" not in attr and "\\\\" not in attr
    assert json.loads(attr)["hostileBox"]["note"] == NASTY[0] + NASTY[1]


# -- Redis: a corrupt version, and what a 503 says --------------------------------------------
@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, durable=False).start()
    yield server
    server.stop()


def redis_app(url: str) -> Starlette:
    return make_app(StateStore(url))


def test_a_corrupt_version_in_redis_is_a_clean_stored_state_error(
    redis_server: RedisServer,
) -> None:
    import redis

    with TestClient(redis_app(redis_server.url), raise_server_exceptions=False) as c:
        assert c.post("/_faststate/HostileBox/noop", headers=API).status_code == 204
        r = c.post("/_faststate/HostileBox/write?note=a", headers=API)
        assert r.status_code == 200
        keys = redis.Redis(port=redis_server.port).keys("faststate:state:*HostileBox*")
        assert keys
        redis.Redis(port=redis_server.port).hset(keys[0], "v", "not-a-number")
        r = c.post("/_faststate/HostileBox/write?note=b", headers=API)
        assert_refused(r, 500, "stored_state_invalid")
    # a fresh process reads the corrupt hash: the same clean error
    with TestClient(redis_app(redis_server.url), raise_server_exceptions=False) as c:
        r = c.get("/values")
        assert r.status_code == 500
        assert "Traceback" not in r.text and "not-a-number" not in r.text


def test_a_503_while_redis_is_down_names_no_host_or_port(redis_server: RedisServer) -> None:
    with TestClient(redis_app(redis_server.url), raise_server_exceptions=False) as c:
        assert c.post("/_faststate/HostileBox/noop", headers=API).status_code == 204
        redis_server.stop()
        replies = [
            c.post("/_faststate/HostileBox/write?note=x", headers=API),
            c.post("/_faststate/HostileSession/click", headers=API),
        ]
        assert any(r.status_code == 503 for r in replies)
        for r in replies:
            if r.status_code >= 500:
                assert r.json()["error"]["code"] == "backend_unavailable"
            for detail in (str(redis_server.port), "127.0.0.1", "localhost", "redis://", "Errno"):
                assert detail not in r.text
                assert detail not in str(r.headers)
        redis_server.start()


# -- element patches --------------------------------------------------------------------------
def test_element_patches_split_lines_only_where_sse_does() -> None:
    html = "<p>a\u2028b\u2029c\x85d\x0be\x0cf\x1cg</p>\n<p>h</p>"
    event = patch_elements(html)
    lines = event.split("\n")
    assert lines[0] == "event: datastar-patch-elements"
    data = [ln.removeprefix("data: elements ") for ln in lines[1:] if ln.startswith("data: ")]
    assert "\n".join(data) == html  # what the client rebuilds from the data lines
    assert "\r" not in event


_DOCUMENTS = [
    '{"a":1}',
    ' \t\n{"a": [1, 2.5, "x"]}\r\n ',
    '{"a":1} {"b":2}',
    '{"a":1}x',
    "",
    "   ",
    "[1,2]",
    '"text"',
    "12 ",
    '{"a":',
    "{'a':1}",
    '{"a":NaN}',
    '{"a":1e999}',
    "\ufeff{}",
    "\u00a0{}",  # no-break space: not JSON whitespace
]


@pytest.mark.parametrize("text", _DOCUMENTS)
def test_strict_json_decodes_exactly_as_the_standard_decoder(text: str) -> None:
    """The strict reader scans with the decoder's own scanner: the same value, or the same
    error at the same place, as ``JSONDecoder.decode`` with the same hooks."""

    def outcome(decode: Any, doc: str | bytes) -> Any:
        try:
            return ("value", decode(doc))
        except ValueError as exc:  # JSONDecodeError, or a hook's refusal
            return ("error", type(exc), str(exc))

    def reference(doc: str | bytes) -> Any:
        if isinstance(doc, bytes):
            doc = doc.decode(json.detect_encoding(doc), "surrogatepass")
        if doc.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", doc, 0)
        return untrusted._DECODER.decode(doc)

    for doc in (text, text.encode("utf-8", "surrogatepass")):
        assert outcome(untrusted._decode, doc) == outcome(reference, doc), doc
