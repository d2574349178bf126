from __future__ import annotations

from collections.abc import Iterator

import pytest

from faststate_mw import state_registry

#: what the Datastar 1.0 browser client sends with a POST action
DS = {
    "datastar-request": "true",
    "content-type": "application/json",
    "accept": "text/event-stream, text/html, application/json",
}
#: an API client that wants real status codes
API = {"datastar-request": "true", "content-type": "application/json"}


@pytest.fixture(autouse=True)
def _fresh_instances() -> Iterator[None]:
    state_registry.clear()
    yield
    state_registry.clear()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
