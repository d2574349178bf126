"""Declaring client-writable fields: what a class may declare, and what it gets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import pytest
from pydantic import Field, StringConstraints
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import (
    ConfigurationError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    Writable,
    client_writable,
    event,
    server_owned,
)
from faststate_mw.testing import isolated_state_names
from tests.conftest import API


@pytest.fixture(autouse=True)
def _names_back() -> Iterator[None]:
    with isolated_state_names():
        yield


def setters(cls: type[State]) -> set[str]:
    return {n for n in cls.__faststate_events__ if n.startswith("set_")}


def test_nothing_is_writable_unless_declared() -> None:
    class Plain(State):
        a: int = 0
        b: str = ""

    assert setters(Plain) == set()
    assert Plain.__faststate_info__.server_owned == {"a", "b"}


def test_declared_per_field_and_per_state() -> None:
    class Both(State):
        __faststate__ = StateConfig(writable="c")  # one name may be a plain string
        a: Annotated[int, client_writable] = 0
        b: Annotated[str, Writable] = ""
        c: str = ""
        d: str = ""

    assert setters(Both) == {"set_a", "set_b", "set_c"}
    assert Both.__faststate_info__.server_owned == {"d"}


@pytest.mark.parametrize(
    "body",
    [
        "user_id: Annotated[str, client_writable] = ''",
        "owner_id: Annotated[str, Writable(permissions=['x'])] = ''",
        "record_id: Annotated[str, client_writable] = ''",
        "component_id: Annotated[str, client_writable] = ''",
        "__faststate__ = StateConfig(writable=('owner_id',))\n    owner_id: str = ''",
        # the owner field an owner_only event compares with
        "author: Annotated[str, client_writable] = ''\n"
        "    @event(owner_only=True, owner_field='author')\n"
        "    def edit(self) -> None: ...",
        # the owner field of a writable field's own owner_only rule
        "boss: Annotated[str, client_writable] = ''\n"
        "    note: Annotated[str, Writable(owner_only=True, owner_field='boss')] = ''",
    ],
)
def test_owner_and_identity_fields_can_never_be_writable(body: str) -> None:
    source = f"class Grab(State):\n    {body}\n"
    names = {"State": State, "StateConfig": StateConfig, "Annotated": Annotated}
    names.update(client_writable=client_writable, Writable=Writable, event=event)
    with pytest.raises(ConfigurationError, match="owner or identity field"):
        exec(compile(source, "grab", "exec", dont_inherit=True), names)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("__faststate__ = StateConfig(writable=('nope',))", "not a public field"),
        (
            "hidden: Annotated[str, Field(exclude=True), client_writable] = ''",
            "not a public field",
        ),
        ("x: Annotated[int, server_owned, client_writable] = 0", "both server_owned"),
        (
            "__faststate__ = StateConfig(writable=('x',))\n    x: Annotated[int, server_owned] = 0",
            "server_owned",
        ),
        (
            "__faststate__ = StateConfig(writable=('x',))\n"
            "    x: Annotated[int, client_writable] = 0",
            "twice",
        ),
        ("note: Annotated[str, Writable(owner_only=True)] = ''", "no owner field"),
        ("__faststate__ = StateConfig(writable=('',))\n    x: int = 0", "name fields"),
    ],
)
def test_bad_declarations_fail_when_the_class_is_defined(body: str, message: str) -> None:
    names = {
        "State": State,
        "StateConfig": StateConfig,
        "Annotated": Annotated,
        "Field": Field,
        "client_writable": client_writable,
        "server_owned": server_owned,
        "Writable": Writable,
    }
    with pytest.raises(ConfigurationError, match=message):
        source = f"class Bad(State):\n    {body}\n"
        exec(compile(source, "bad", "exec", dont_inherit=True), names)


def test_subclasses_declare_their_own() -> None:
    class Base(State):
        __faststate__ = StateConfig(writable=("a",))
        a: str = ""
        b: Annotated[str, client_writable] = ""

    class Child(Base):
        pass

    class Wider(Base):
        __faststate__ = StateConfig(writable=("a",))

    assert setters(Base) == {"set_a", "set_b"}
    assert setters(Child) == {"set_b"}  # markers come with the field; a config does not
    assert setters(Wider) == {"set_a", "set_b"}
    assert Wider.__faststate_events__["set_a"] is not Base.__faststate_events__["set_a"]


def test_an_app_defined_setter_is_kept() -> None:
    class Own(State):
        name: Annotated[str, client_writable] = ""

        @event
        def set_name(self, value: str) -> None:
            self.name = value.strip()

    assert Own.__faststate_events__["set_name"].setter_field is None


def test_a_setter_validates_the_fields_constraints(store: StateStore) -> None:
    class Short(State):
        __faststate__ = StateConfig(scope=StateScope.GLOBAL)
        code: Annotated[str, StringConstraints(max_length=5), client_writable] = ""

    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="k", store=store)
    client = TestClient(app)
    r = client.post("/_faststate/Short/set_code", headers=API, json={"short": {"code": "x" * 6}})
    assert r.status_code == 422
    assert store.get("global:Short").code == ""
    r = client.post("/_faststate/Short/set_code", headers=API, json={"short": {"code": "abc"}})
    assert r.status_code == 200
    assert store.get("global:Short").code == "abc"
