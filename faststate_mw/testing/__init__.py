"""Helpers for testing apps built on faststate_mw (and this project's own tests).

- :class:`TestClient`: a browser session against an app, in process, on the real Datastar
  protocol: ``await client.event(Counter.increment(5))``; ``tab = await client.open("/")``
  follows the page's live stream (``tab.signals``, ``tab.element(id)``); :class:`SyncTestClient`
  is the same without ``await``.
- ``pytest_plugins = ["faststate_mw.testing.plugin"]``: fixtures (see that module).
- :class:`FakeClock`: a clock for ``StateStore(clock=...)`` that moves only when told, so ttl
  tests need no sleeps.
- :func:`isolated_state_names`: give State class names back after a test defined throw-away
  classes with the same names.
- :func:`isolated_stores`: forget the stores earlier tests started, so code outside a request
  (``State.for_record(7)``) finds only the store of the running test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._config import catalog
from .._store import _running
from ._client import TEST_USER, EventReply, Tab, TestClient, with_test_user
from ._sse import ElementPatch, SSEEvent
from ._sync import SyncTab, SyncTestClient


class FakeClock:
    """``clock = FakeClock(); StateStore(clock=clock); clock.advance(60)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


@contextmanager
def isolated_stores() -> Iterator[None]:
    """Within the block, only stores started inside it count as running."""
    saved = list(_running)
    _running.clear()
    try:
        yield
    finally:
        _running.clear()
        for store in saved:
            _running.add(store)


@contextmanager
def isolated_state_names() -> Iterator[None]:
    """State classes defined within the block give their public names back afterwards (for
    tests that define throw-away classes named like the app's own)."""
    saved = catalog.snapshot()
    try:
        yield
    finally:
        catalog.restore(saved)


__all__ = [
    "TEST_USER",
    "ElementPatch",
    "EventReply",
    "FakeClock",
    "SSEEvent",
    "SyncTab",
    "SyncTestClient",
    "Tab",
    "TestClient",
    "isolated_state_names",
    "isolated_stores",
    "with_test_user",
]
