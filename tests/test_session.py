"""The signed session cookie (_session.py): a forged signature is not the session it names."""

from __future__ import annotations

from starlette.testclient import TestClient

from faststate_mw import StateStore
from faststate_mw._session import SessionCookie
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


def test_a_cookie_read_again_is_read_as_the_first_time() -> None:
    """Once a cookie's value is verified (and cached), every Cookie header still reads as the
    browser's rules say: the cache never answers for a header that does not carry that value."""
    cookie = SessionCookie("secret")
    value = cookie.set_cookie("sid1")[1].split(b";")[0].split(b"=", 1)[1]
    other = cookie.set_cookie("sid2")[1].split(b";")[0].split(b"=", 1)[1]
    headers = [
        b"faststate_sid=" + value,
        b"faststate_sid= " + value,
        b'faststate_sid="' + value + b'"',
        b"faststate_sid=" + value + b"; other=1",
        b"faststate_sid=" + value + b"x",
        b"faststate_sid=" + value + b" x",
        b"xfaststate_sid=" + value,
        b"faststate_sid=" + value + b"; faststate_sid=" + other,
        b"faststate_sid=" + other + b"; faststate_sid=" + value,
        b"a=1; faststate_sid=" + value,
    ]
    for header in headers:
        scope = {"headers": [(b"cookie", header)]}
        first = SessionCookie("secret").read(scope)  # nothing cached
        assert cookie.read(scope) == first, header
        assert cookie.read(scope) == first, header  # now cached
    assert cookie.read({"headers": [(b"cookie", b"faststate_sid=" + value)]}) == ("sid1", "")
