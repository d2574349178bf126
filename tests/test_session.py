"""The signed session cookie (_session.py): a forged signature is not the session it names."""

from __future__ import annotations

from starlette.testclient import TestClient

from faststate_mw import StateStore
from tests.apps.notes import notes_app
from tests.conftest import DS


def test_session_cookie_is_signed_and_tampering_gives_a_new_session(store: StateStore) -> None:
    client = TestClient(notes_app("faststate-inside", store))
    r = client.get("/")
    cookie = r.cookies["faststate_sid"]
    sid, _sig = cookie.rsplit(".", 1)
    client.post("/_faststate/Notes/increment", headers=DS, content=b"{}")
    assert client.get("/").json()["count"] == 1
    # a forged cookie naming the same session id with a wrong signature is not that session
    forger = TestClient(client.app)
    forger.cookies.set("faststate_sid", f"{sid}.forgedsignature")
    body = forger.get("/").json()
    assert body["count"] == 0
    assert body["key"] != f"session:{sid}:Notes"
