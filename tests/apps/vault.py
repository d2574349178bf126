"""A GLOBAL state behind FastStateMiddleware, for the bad-input and HTTP suites
(tests/test_bad_input.py, tests/test_http.py): what a hostile request must leave unchanged."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event


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
