"""Bad input: a clear error, the state unchanged, never a 500 or a traceback; CSRF."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event
from tests.conftest import API, DS
from tests.sse import patched_signals


class Vault(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0
    label: str = ""

    @event
    def add(self, amount: int, note: str = "") -> None:
        self.count += amount
        self.label = note

    @event(method="GET")
    def read_only(self) -> None:
        pass


def client(store: StateStore, max_body: int | None = None) -> TestClient:
    app = Starlette()
    kw = {} if max_body is None else {"max_body_size": max_body}
    app.add_middleware(FastStateMiddleware, secret_key="bad-input", store=store, **kw)
    return TestClient(app, raise_server_exceptions=True)


def vault(store: StateStore) -> Vault:
    inst = store.get("global:Vault")
    return inst if isinstance(inst, Vault) else Vault()


CASES = [
    # (description, url, body, headers, status, code)
    ("missing argument", "/_faststate/Vault/add", b"{}", API, 422, "invalid_arguments"),
    (
        "ill-typed argument",
        "/_faststate/Vault/add?amount=ten",
        b"{}",
        API,
        422,
        "invalid_arguments",
    ),
    (
        "ill-typed signal",
        "/_faststate/Vault/add",
        b'{"vault":{"amount":[1]}}',
        API,
        422,
        "invalid_arguments",
    ),
    ("malformed JSON", "/_faststate/Vault/add?amount=1", b'{"vault":', API, 400, "invalid_payload"),
    ("non-object JSON", "/_faststate/Vault/add?amount=1", b"[1,2]", API, 400, "invalid_payload"),
    ("JSON string", "/_faststate/Vault/add?amount=1", b'"x"', API, 400, "invalid_payload"),
    ("invalid utf-8", "/_faststate/Vault/add?amount=1", b"\xff\xfe", API, 400, "invalid_payload"),
    ("unknown state", "/_faststate/Nope/add?amount=1", b"{}", API, 404, "unknown_event"),
    ("unknown event", "/_faststate/Vault/nope", b"{}", API, 404, "unknown_event"),
    ("private method", "/_faststate/Vault/_snapshot", b"{}", API, 404, "unknown_event"),
    ("pydantic method", "/_faststate/Vault/model_dump", b"{}", API, 404, "unknown_event"),
    ("too deep a path", "/_faststate/Vault/add/x", b"{}", API, 404, "unknown_event"),
]


@pytest.mark.parametrize(("desc", "url", "body", "headers", "status", "code"), CASES)
def test_bad_input_is_a_clear_error_and_changes_nothing(
    desc: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
    store: StateStore,
) -> None:
    c = client(store)
    c.post("/_faststate/Vault/add?amount=5&note=kept", headers=API, content=b"{}")
    r = c.post(url, headers=headers, content=body)
    assert r.status_code == status, desc
    err = r.json()["error"]
    assert err["code"] == code
    assert err["status"] == status
    assert err["message"]
    assert "Traceback" not in r.text
    assert (vault(store).count, vault(store).label) == (5, "kept")


def test_datastar_client_gets_errors_as_signals(store: StateStore) -> None:
    c = client(store)
    r = c.post("/_faststate/Vault/add?amount=oops", headers=DS, content=b"{}")
    assert r.status_code == 200  # Datastar ignores the body of a non-200 reply
    assert r.headers["x-faststate-error"] == "invalid_arguments"
    (patch,) = patched_signals(r.text)
    assert patch["_faststate"]["status"] == 422
    assert "amount" in patch["_faststate"]["error"]
    assert vault(store).count == 0


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
    ok = b'{"vault":{"note":"' + b"x" * (1000 * 1000) + b'"}}'
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
