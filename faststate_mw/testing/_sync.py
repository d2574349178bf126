"""The test client for sync tests: the async :class:`TestClient` driven from an event loop in
a thread (the app, its store and its streams all live in that loop)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anyio.from_thread

from .._context import UserContext
from .._types import ASGIApp
from ._asgi import Response
from ._client import EventReply, Tab, TestClient


class SyncTab:
    """A :class:`Tab` for sync tests."""

    __test__ = False

    def __init__(self, portal: anyio.from_thread.BlockingPortal, tab: Tab) -> None:
        self._portal = portal
        #: the async tab underneath
        self.tab = tab

    @property
    def signals(self) -> dict[str, Any]:
        return self.tab.signals

    @property
    def html(self) -> str:
        return self.tab.html

    def element(self, element_id: str) -> str | None:
        return self.tab.element(element_id)

    def event(self, action: str, signals: dict[str, Any] | None = None) -> EventReply:
        reply: EventReply = self._portal.call(self.tab.event, action, signals)
        return reply

    def wait_for(self, condition: Callable[[], Any], timeout: float = 5.0) -> None:
        self._portal.call(self.tab.wait_for, condition, timeout)

    def reconnect(self) -> None:
        self._portal.call(self.tab.reconnect)

    def close(self) -> None:
        self._portal.call(self.tab.close)


class SyncTestClient:
    """``with SyncTestClient(app) as client:`` — the :class:`TestClient` API without ``await``.
    More browsers on the same app: ``client.another()`` (they share the app's event loop)."""

    __test__ = False

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        self.app = app
        self._options = options
        self._portal_cm: AbstractContextManager[anyio.from_thread.BlockingPortal] | None = None
        self._portal: anyio.from_thread.BlockingPortal | None = None
        self._owner = True
        #: the async client underneath
        self.client = TestClient(app, **options)

    def __enter__(self) -> SyncTestClient:
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._portal.call(self.client.__aenter__)
        return self

    def __exit__(self, *exc: object) -> None:
        portal_cm = self._portal_cm
        try:
            self._call(self.client.aclose)
        finally:
            if self._owner and portal_cm is not None:
                self._portal_cm = None
                portal_cm.__exit__(None, None, None)

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("use the client inside `with SyncTestClient(app) as client:`")
        return self._portal.call(functools.partial(func, *args, **kwargs))

    def another(self) -> SyncTestClient:
        """Another browser on the same app and event loop (closed with this one's loop)."""
        other = SyncTestClient(self.app, **self._options)
        other._portal, other._owner = self._portal, False
        return other

    def login(self, user: UserContext | None) -> None:
        self.client.login(user)

    @property
    def cookies(self) -> dict[str, str]:
        return self.client.cookies

    def get(self, url: str, **headers: str) -> Response:
        return self._call(self.client.get, url, **headers)  # type: ignore[no-any-return]

    def request(self, method: str, url: str, **options: Any) -> Response:
        return self._call(self.client.request, method, url, **options)  # type: ignore[no-any-return]

    def event(self, action: str, signals: dict[str, Any] | None = None) -> EventReply:
        return self._call(self.client.event, action, signals)  # type: ignore[no-any-return]

    def open(self, url: str) -> SyncTab:
        assert self._portal is not None
        return SyncTab(self._portal, self._call(self.client.open, url))


__all__ = ["SyncTab", "SyncTestClient"]
