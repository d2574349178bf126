"""pytest fixtures for apps built on faststate_mw. In your top-level ``conftest.py``:
``pytest_plugins = ["faststate_mw.testing.plugin"]`` (needs pytest and pytest-asyncio: the
``[testing]`` extra).

- ``faststate_clock``: a :class:`~faststate_mw.testing.FakeClock` (ttl tests without sleeps);
- ``faststate_store``: a fresh in-memory :class:`~faststate_mw.StateStore` on that clock, the only
  running store during the test (pass it to the app: ``FastStateMiddleware(..., store=...)``);
- ``faststate_app``: define it yourself: your ASGI app, built on ``faststate_store``;
- ``faststate_client``: a :class:`~faststate_mw.testing.TestClient` of ``faststate_app``, its
  lifespan run around the test. More clients of the same app: ``TestClient(faststate_app)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from .._store import StateStore
from . import FakeClock, TestClient, isolated_stores


@pytest.fixture
def faststate_clock() -> FakeClock:
    """A clock that moves only when the test says so: ``faststate_clock.advance(60)``."""
    return FakeClock()


@pytest.fixture
def faststate_store(faststate_clock: FakeClock) -> Iterator[StateStore]:
    """A fresh in-memory store on the fake clock, the only running one during the test."""
    with isolated_stores():
        yield StateStore(clock=faststate_clock)


@pytest.fixture
def faststate_app() -> Any:
    """Override this fixture: return your app, built on ``faststate_store``."""
    raise pytest.UsageError("define a `faststate_app` fixture that returns your ASGI app")


@pytest_asyncio.fixture
async def faststate_client(faststate_app: Any) -> AsyncIterator[TestClient]:
    """A test client of ``faststate_app`` (lifespan started, closed after the test)."""
    async with TestClient(faststate_app) as client:
        yield client
