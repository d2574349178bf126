"""HTTP plumbing (_http.py): the body cap (with and without Content-Length) and CSRF: a request
a cross-site page could send is refused, a same-origin one is not, GET events need no token."""

from __future__ import annotations

from typing import Any

import pytest
from datastar_py import ServerSentEventGenerator as SSE
from hypothesis import given, settings
from hypothesis import strategies as st

from faststate_mw import StateStore
from faststate_mw._deadlines import Deadlines
from faststate_mw._http import (
    _QUERIES,
    QUERIES_KEPT,
    QUERY_KEPT_BYTES,
    parse_query,
    parse_signals,
    patch_signals,
    read_body,
)
from tests.apps.vault import client, vault
from tests.conftest import API


def test_body_over_the_cap_is_413(store: StateStore) -> None:
    c = client(store, max_body=1024)
    big = b'{"vault":{"note":"' + b"x" * 2000 + b'"}}'
    r = c.post("/_faststate/Vault/add?amount=1", headers=API, content=big)
    assert r.status_code == 413
    assert vault(store).count == 0

    def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: counted while reading
        yield b'{"vault":{"note":"'
        for _ in range(10):
            yield b"x" * 200
        yield b'"}}'

    r = c.post("/_faststate/Vault/add?amount=1", headers=API, content=chunks())
    assert r.status_code == 413
    assert vault(store).count == 0


def test_default_cap_is_one_mebibyte(store: StateStore) -> None:
    c = client(store)
    body = b'{"vault":{"note":"' + b"x" * (1024 * 1024) + b'"}}'
    assert c.post("/_faststate/Vault/add?amount=1", headers=API, content=body).status_code == 413
    # under the body cap (a signal the event does not store: a state has its own size cap)
    ok = b'{"vault":{"other":"' + b"x" * (1000 * 1000) + b'"}}'
    assert c.post("/_faststate/Vault/add?amount=1", headers=API, content=ok).status_code == 200


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "application/x-www-form-urlencoded"}, b"amount=1"),  # a cross-site form
        ({"content-type": "text/plain"}, b"{}"),  # the other "simple" CORS content type
        ({"content-type": "application/json"}, b"{}"),  # no Datastar header, no origin
        ({"content-type": "text/plain", "origin": "https://evil.example"}, b"{}"),
        ({"datastar-request": "true", "content-type": "text/plain"}, b"{}"),
    ],
)
def test_cross_site_requests_are_rejected(
    headers: dict[str, str], body: bytes, store: StateStore
) -> None:
    c = client(store)
    r = c.post("/_faststate/Vault/add?amount=1", headers=headers, content=body)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "csrf_rejected"
    assert vault(store).count == 0


def test_same_origin_requests_without_datastar_header_are_allowed(store: StateStore) -> None:
    c = client(store)
    headers = {"content-type": "application/json", "origin": "http://testserver"}
    assert (
        c.post("/_faststate/Vault/add?amount=2", headers=headers, content=b"{}").status_code == 200
    )
    headers = {"content-type": "application/json", "sec-fetch-site": "same-origin"}
    assert (
        c.post("/_faststate/Vault/add?amount=2", headers=headers, content=b"{}").status_code == 200
    )
    assert vault(store).count == 4


def test_get_events_need_no_csrf_token(store: StateStore) -> None:
    assert client(store).get("/_faststate/Vault/read_only").status_code == 204


_JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text()


def _json_children(children: Any) -> Any:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)


_SIGNAL_VALUES: list[Any] = [
    {},
    {"counter": {"count": 1}},
    {"a": "line\nbreak\r\nand\rreturns", "b": "\u2028\u2029\x85\x0b\x0c\x1c\x7f", "c": "é🙂"},
    {"n": [1, 2.5, -0.0, 1e300, None, True, False], "deep": {"x": {"y": {"z": []}}}},
    {"quote": '"\\', "tab": "\t", "nul": "\x00", "empty": ""},
]


@pytest.mark.parametrize("signals", _SIGNAL_VALUES)
def test_patch_signals_writes_datastar_py_bytes(signals: dict[str, Any]) -> None:
    assert patch_signals(signals) == str(SSE.patch_signals(signals))


@given(st.dictionaries(st.text(), st.recursive(_JSON_LEAVES, _json_children, max_leaves=20)))
@settings(max_examples=300, deadline=None)
def test_patch_signals_writes_datastar_py_bytes_for_any_json(signals: dict[str, Any]) -> None:
    assert patch_signals(signals) == str(SSE.patch_signals(signals))


def test_parsed_query_strings_kept_are_bounded() -> None:
    """parse_query keeps what it parsed (an event's URL is sent again and again), but never
    more than QUERIES_KEPT query strings, nor a long one, nor one carrying GET signals."""
    first = parse_query({"query_string": b"kept=1"})
    assert parse_query({"query_string": b"kept=1"}) is first
    for i in range(QUERIES_KEPT + 5):
        assert parse_query({"query_string": f"n={i}&x=%41".encode()}) == {"n": str(i), "x": "A"}
    assert 0 < len(_QUERIES) <= QUERIES_KEPT
    assert f"n={QUERIES_KEPT + 4}&x=%41".encode() in _QUERIES
    long = b"x=" + b"1" * QUERY_KEPT_BYTES
    assert parse_query({"query_string": long}) is not parse_query({"query_string": long})
    # GET signals: not kept, as parse_signals takes them out of the dict
    scope = {"query_string": b'amount=1&datastar={"a":1}'}
    query = parse_query(scope)
    assert parse_signals(False, "GET", b"", query) == {"a": 1}
    assert query == {"amount": "1"}
    assert parse_query(scope) == {"amount": "1", "datastar": '{"a":1}'}


def test_patch_signals_keeps_nothing_from_a_failed_call() -> None:
    """One encoder serves every call: a value JSON cannot hold fails that call alone (the dicts
    it was in are written by the next call), and the same list met twice (no cycle) is written
    twice."""
    shared = [1, 2]
    signals: dict[str, Any] = {"s": {"t": shared, "bad": object()}}
    with pytest.raises(TypeError):
        patch_signals(signals)
    signals["s"]["bad"] = shared
    assert patch_signals(signals) == str(SSE.patch_signals(signals))


def _messages(*messages: dict[str, Any]) -> Any:
    """An ASGI ``receive`` that hands out ``messages`` and fails if asked for more."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        assert pending, "read past the body"
        return pending.pop(0)

    return receive


@pytest.mark.parametrize("split", [False, True])
async def test_a_body_ends_at_its_content_length(split: bool) -> None:
    """Once the bytes Content-Length declares are in, the body is whole: no waiting for the
    server's empty last message (granian sends the body with more_body, then that message)."""
    parts = [b'{"a":', b"1}"] if split else [b'{"a":1}']
    receive = _messages(*({"type": "http.request", "body": p, "more_body": True} for p in parts))
    hdrs = {b"content-length": b"7"}
    assert await read_body(receive, hdrs, 1024, Deadlines(10.0)) == b'{"a":1}'


async def test_a_body_without_content_length_reads_to_its_last_message() -> None:
    receive = _messages(
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    )
    assert await read_body(receive, {}, 1024, Deadlines(10.0)) == b'{"a":1}'
