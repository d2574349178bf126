from __future__ import annotations

from collections.abc import Iterator

import pytest

from faststate_mw import StateStore
from faststate_mw.testing import FakeClock, isolated_stores

#: what the Datastar 1.0 browser client sends with a POST action
DS = {
    "datastar-request": "true",
    "content-type": "application/json",
    "accept": "text/event-stream, text/html, application/json",
}
#: an API client that wants real status codes
API = {"datastar-request": "true", "content-type": "application/json"}


@pytest.fixture(autouse=True)
def _isolated_stores() -> Iterator[None]:
    """Code outside a request sees only the stores this test started."""
    with isolated_stores():
        yield


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> StateStore:
    """A fresh store per test; pass it to the app: ``FastStateMiddleware(..., store=store)``."""
    return StateStore(clock=clock)
