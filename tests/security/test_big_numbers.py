"""Whole numbers a browser cannot hold (found by the hsec audit): a client sent ``amount`` with
4,300 digits (Python's own parse limit) to an ``increment`` event, the state's count grew past
4,300 digits, and the change could no longer be written as JSON: a 500 on every such event.
Beyond 2**53 - 1 a number already reaches the page rounded (JavaScript's numbers are doubles).
Such numbers are refused at the door, like NaN: a 400 that changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, State, StateConfig, StateScope, StateStore, event
from tests.conftest import API

SECRET = "big-numbers-secret"
#: JavaScript's Number.MAX_SAFE_INTEGER
SAFE = 2**53 - 1


@dataclasses.dataclass
class Line:
    qty: int


class Extras(BaseModel):
    model_config = ConfigDict(extra="allow")


class BigTally(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL, writable=("total",))
    total: int = 0
    ids: list[int] = []

    @event
    def add(self, amount: int = 1) -> None:
        self.total += amount

    @event
    def tag(self, ids: list[int]) -> None:
        self.ids = ids

    @event
    def add_all(self, amounts: list[int]) -> None:
        self.total += sum(amounts)

    @event
    def add_line(self, line: Line) -> None:
        self.total += line.qty

    @event
    def add_keys(self, counts: dict[int, int]) -> None:
        self.total += sum(counts)

    @event
    def add_extras(self, extras: Extras) -> None:
        self.total += sum((extras.model_extra or {}).values())


def make_app(store: StateStore) -> Starlette:
    async def values(request: Request) -> JSONResponse:
        tally = await BigTally.dependency()
        return JSONResponse({"total": tally.total, "ids": tally.ids})

    app = Starlette(debug=True, routes=[Route("/values", values)])
    app.add_middleware(FastStateMiddleware, secret_key=SECRET, store=store)
    return app


@pytest.fixture
def client(store: StateStore) -> Iterator[TestClient]:
    with TestClient(make_app(store), raise_server_exceptions=False) as c:
        yield c


def snapshot(client: TestClient) -> dict[str, Any]:
    r = client.get("/values")
    assert r.status_code == 200
    return dict(r.json())


def assert_refused(r: Any) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_payload"
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_a_4300_digit_amount_twice_is_a_400_not_a_500(client: TestClient) -> None:
    huge = "9" * 4300
    for _ in range(2):
        r = client.post("/_faststate/BigTally/add", headers=API, content=f'{{"amount":{huge}}}')
        assert_refused(r)
    assert snapshot(client) == {"total": 0, "ids": []}


@pytest.mark.parametrize("number", [SAFE + 1, -(SAFE + 1), 10**32])
def test_numbers_javascript_would_round_are_refused_everywhere(
    client: TestClient, number: int
) -> None:
    before = snapshot(client)
    sent = [
        client.post("/_faststate/BigTally/add", headers=API, content=f'{{"amount":{number}}}'),
        client.post(f"/_faststate/BigTally/add?amount={number}", headers=API, content=b"{}"),
        client.post(f"/_faststate/BigTally/tag?ids=[1,{number}]", headers=API, content=b"{}"),
        client.post("/_faststate/BigTally/set_total", headers=API, content=f'{{"value":{number}}}'),
        client.post(
            "/_faststate/BigTally/set_total",
            headers=API,
            content=f'{{"bigTally":{{"total":{number}}}}}',
        ),
    ]
    for r in sent:
        assert_refused(r)
    assert snapshot(client) == before


def test_the_largest_safe_integer_is_accepted(client: TestClient) -> None:
    r = client.post("/_faststate/BigTally/add", headers=API, content=f'{{"amount":{SAFE}}}')
    assert r.status_code == 200, r.text
    r = client.post(f"/_faststate/BigTally/tag?ids=[{-SAFE}]", headers=API, content=b"{}")
    assert r.status_code == 200, r.text
    assert snapshot(client) == {"total": SAFE, "ids": [-SAFE]}


def test_a_huge_number_behind_many_small_ones_is_refused_too(client: TestClient) -> None:
    """The check walked at most 100,000 values of an argument and let the rest through: a
    4,300-digit number first in a list of 100,001 zeros (200 KB, under the body limit) reached
    the state, and every later ``add`` failed (500) because the total could not be written."""
    padding = ",".join(["0"] * 100_001)
    for number in ("9" * 4300, str(SAFE + 1)):
        r = client.post(
            "/_faststate/BigTally/add_all",
            headers=API,
            content=f'{{"amounts":[{number},{padding}]}}',
        )
        assert_refused(r)
    assert snapshot(client) == {"total": 0, "ids": []}
    r = client.post(
        "/_faststate/BigTally/add_all", headers=API, content=f'{{"amounts":[{padding}]}}'
    )
    assert r.status_code == 200, r.text
    r = client.post("/_faststate/BigTally/add", headers=API, content=b'{"amount":1}')
    assert r.status_code == 200, r.text
    assert snapshot(client) == {"total": 1, "ids": []}


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("add_line", '{{"line":{{"qty":{n}}}}}'),
        ("add_extras", '{{"extras":{{"b":{n}}}}}'),
        ("add_keys", '{{"counts":{{"{n}":0}}}}'),
    ],
)
def test_a_huge_number_in_a_dataclass_an_extra_field_or_a_key_is_refused(
    client: TestClient, name: str, body: str
) -> None:
    """The check looked into pydantic models' declared fields and dict values only: a stdlib
    dataclass argument, a model's extra fields (``extra="allow"``) or the keys of a
    ``dict[int, ...]`` carried any number in."""
    r = client.post(f"/_faststate/BigTally/{name}", headers=API, content=body.format(n=SAFE + 1))
    assert_refused(r)
    assert snapshot(client) == {"total": 0, "ids": []}
    r = client.post(f"/_faststate/BigTally/{name}", headers=API, content=body.format(n=2))
    assert r.status_code == 200, r.text
    assert snapshot(client) == {"total": 2, "ids": []}
