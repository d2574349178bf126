"""How a RECORD state gets its owner, and that a client can never make itself the owner.

The owner field (``owner_id`` / ``user_id``, or ``owner_field=``) of a state with ``owner_only``
events says who may use them. It is filled by the app (a ``load`` hook, or an event that sets it
from the signed-in user); it is server-owned: no generated setter, never read from signals.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    current_user,
    event,
)
from tests.conftest import API, DS
from tests.sse import patched_signals

DOCS: dict[str, dict[str, Any]] = {}


def load_doc(record_id: str) -> dict[str, Any] | None:
    return DOCS.get(record_id)


class OwnedDoc(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD, load=load_doc, writable=("title",))
    owner_id: str = ""
    title: str = ""

    @event(requires_auth=True)
    def claim(self) -> None:
        """The first signed-in user to claim an unowned document owns it."""
        user = current_user()
        if not self.owner_id and user is not None:
            self.owner_id = user.id

    @event(owner_only=True)
    def rename(self, title: str) -> None:
        self.title = title


class Note(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    writer: str = ""
    text: str = ""

    @event(owner_only=True, owner_field="writer")
    def edit(self, text: str) -> None:
        self.text = text


def header_user(scope: Any) -> str | None:
    """The test's user: the X-User header (tests only; an app reads its session)."""
    for name, value in scope.get("headers", []):
        if name == b"x-user":
            return value.decode() or None
    return None


def client(store: StateStore) -> TestClient:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store, user_loader=header_user)
    return TestClient(app)


def post(c: TestClient, url: str, user: str, body: bytes = b"{}") -> Any:
    return c.post(url, headers={**API, "x-user": user}, content=body)


def test_the_owner_field_has_no_setter() -> None:
    assert "set_owner_id" not in OwnedDoc.__faststate_events__
    assert "set_writer" not in Note.__faststate_events__
    assert "set_title" in OwnedDoc.__faststate_events__  # other fields keep theirs
    assert "owner_id" in OwnedDoc.__faststate_info__.server_owned
    # still on the page, so the page can show whose record it is
    assert OwnedDoc(owner_id="alice").signals() == {"ownedDoc": {"owner_id": "alice", "title": ""}}


def test_an_owner_from_the_load_hook(store: StateStore) -> None:
    DOCS["d1"] = {"owner_id": "alice", "title": "Plan"}
    c = client(store)
    assert post(c, "/_faststate/OwnedDoc/rename?record_id=d1&title=x", "bob").status_code == 403
    ok = c.post(
        "/_faststate/OwnedDoc/rename?record_id=d1&title=Roadmap",
        headers={**DS, "x-user": "alice"},
        content=b"{}",
    )
    assert patched_signals(ok.text) == [{"ownedDoc": {"title": "Roadmap"}}]


def test_a_client_cannot_make_itself_the_owner(store: StateStore) -> None:
    DOCS["d2"] = {"owner_id": "alice", "title": "Plan"}
    c = client(store)
    # no setter to call ...
    setter = post(c, "/_faststate/OwnedDoc/set_owner_id?record_id=d2&value=mallory", "mallory")
    assert setter.status_code == 404
    # ... and an owner_id signal in the body is not read either
    body = b'{"ownedDoc": {"owner_id": "mallory"}, "owner_id": "mallory"}'
    claim = post(c, "/_faststate/OwnedDoc/claim?record_id=d2", "mallory", body)
    assert claim.status_code in (200, 204)
    assert (
        post(c, "/_faststate/OwnedDoc/rename?record_id=d2&title=x", "mallory", body).status_code
        == 403
    )
    assert store.get("record:OwnedDoc:d2").owner_id == "alice"  # type: ignore[union-attr]
    assert store.get("record:OwnedDoc:d2").title == "Plan"  # type: ignore[union-attr]


def test_an_owner_set_by_an_event(store: StateStore) -> None:
    c = client(store)  # d3 is not in DOCS: the load hook gives defaults, nobody owns it
    assert post(c, "/_faststate/OwnedDoc/rename?record_id=d3&title=x", "carol").status_code == 403
    assert post(c, "/_faststate/OwnedDoc/claim?record_id=d3", "carol").status_code == 200
    assert post(c, "/_faststate/OwnedDoc/claim?record_id=d3", "dave").status_code == 204
    assert post(c, "/_faststate/OwnedDoc/rename?record_id=d3&title=x", "dave").status_code == 403
    assert post(c, "/_faststate/OwnedDoc/rename?record_id=d3&title=x", "carol").status_code == 200


def test_a_named_owner_field_is_server_owned_too(store: StateStore) -> None:
    c = client(store)
    assert post(c, "/_faststate/Note/set_writer?record_id=n1&value=eve", "eve").status_code == 404
    body = b'{"note": {"writer": "eve"}}'
    assert post(c, "/_faststate/Note/edit?record_id=n1&text=hi", "eve", body).status_code == 403


async def test_an_owner_set_from_code_outside_a_request(store: StateStore) -> None:
    with store.activate():
        doc = await OwnedDoc.resolve("d4")
        assert await doc.update(owner_id="zoe") == ["owner_id"]
    c = client(store)
    assert post(c, "/_faststate/OwnedDoc/rename?record_id=d4&title=x", "yan").status_code == 403
    assert post(c, "/_faststate/OwnedDoc/rename?record_id=d4&title=x", "zoe").status_code == 200
