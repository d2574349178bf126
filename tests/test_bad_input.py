"""Bad input: a clear error, the state unchanged, never a 500 or a traceback. (Body caps and
CSRF, the HTTP plumbing's checks: tests/test_http.py.)"""

from __future__ import annotations

import pytest

from faststate_mw import StateStore
from tests.apps.vault import client, vault
from tests.conftest import API, DS
from tests.sse import patched_signals

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
