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
- :func:`in_session`: run code as if inside a request of a given browser session (and user),
  without an app: ``with store.activate(), in_session("s1"): Cart.current()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .._config import catalog
from .._context import RequestContext, UserContext, UserLoader, _current
from .._exceptions import NoRequestContextError
from .._store import _running, current_store
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
def isolated_state_names(*, empty: bool = False) -> Iterator[None]:
    """State classes defined within the block give their public names back afterwards (for
    tests that define throw-away classes). With ``empty=True`` the block also starts with no
    names taken, so it may define classes named like ones defined elsewhere (the app's own)
    without the duplicate-name error; classes defined outside the block are then not routed
    inside it."""
    saved = catalog.snapshot()
    if empty:
        catalog.restore({})
    try:
        yield
    finally:
        catalog.restore(saved)


class _SessionOwner:
    """The part of a middleware a RequestContext asks for: one fixed session and user."""

    prefix = "/_faststate"
    datastar_src: str | None = None
    async_user_loader = False

    def __init__(self, session_id: str, user: UserContext | None, store: Any) -> None:
        self.session_id = session_id
        self.user_loader: UserLoader = lambda scope: user
        #: the store in effect where the block began (a request's, an activated one, or None)
        self.store = store

    def read_session(self, scope: Any) -> tuple[str, str] | None:
        return self.session_id, ""

    def session_binding(self, session_id: str, user: UserContext | None) -> str:
        return ""  # one fixed session: never rotated

    def session_ended(self, session_id: str, user: UserContext | None) -> None:
        """Never called: the session is never rotated."""

    def new_session_id(self) -> str:
        return self.session_id

    async def session_cookie_header(self, ctx: RequestContext, sid: str) -> tuple[bytes, bytes]:
        """Never called: no response is sent in this context."""
        raise AssertionError("in_session sends no response")


@contextmanager
def in_session(session_id: str, user: UserContext | None = None) -> Iterator[RequestContext]:
    """Within the block, ``State.current()`` and ``current_user()`` answer as in a request of
    browser session ``session_id`` by ``user`` (no app, no HTTP); yields that request's context."""
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    try:
        store: Any = current_store()
    except NoRequestContextError:
        store = None
    ctx = RequestContext(scope, _SessionOwner(session_id, user, store))
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


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
    "in_session",
    "isolated_state_names",
    "isolated_stores",
    "with_test_user",
]
