"""A test client that speaks the Datastar protocol to an ASGI app, in process: pages, events,
and tabs whose live streams keep their signals and elements up to date."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote, urlsplit

from .._context import UserContext, UserLoader, default_user_loader
from .._types import ASGIApp, Scope
from ._asgi import Lifespan, Response, Streaming, make_scope, request
from ._dom import Page
from ._sse import (
    ElementPatch,
    SSEEvent,
    SSEParser,
    elements_of,
    merge_patch,
    parse_sse,
    sent_signals,
    signals_of,
)

#: the ASGI scope key in which the test client puts the user it signed in as (only code in the
#: same process can set scope keys: no HTTP request can)
TEST_USER = "faststate.test_user"
#: ``@post('/url', {...})``: an action's method and URL
_ACTION = re.compile(
    r"""@(get|post|put|patch|delete)\(\s*(?:'([^']*)'|("(?:[^"\\]|\\.)*"))""", re.IGNORECASE
)
#: the ``filterSignals.include`` regular expression of an action, if it has one
_INCLUDE = re.compile(r'"include":\s*\(?/(.*?)/\)?\s*\}')
_STREAM_URL = re.compile(r"@get\('([^']*/stream\?t=[^']*)'")
_ERROR_SIGNAL = "_faststate"


def with_test_user(loader: UserLoader = default_user_loader) -> UserLoader:
    """Wrap an app's ``user_loader`` so that :meth:`TestClient.login` works with it: a request
    from a signed-in test client gets its user, any other request is ``loader``'s."""

    def load(scope: Scope) -> Any:
        user = scope.get(TEST_USER)
        return user if user is not None else loader(scope)

    return load


class EventReply:
    """What an event request got back, parsed as the Datastar client parses it."""

    def __init__(self, response: Response) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.body
        #: the SSE events of the reply (empty for a JSON error reply)
        self.events: list[SSEEvent] = []
        #: every signal patch of the reply, merged in order
        self.signals: dict[str, Any] = {}
        #: every element patch of the reply, in order
        self.elements: list[ElementPatch] = []
        #: the error the page would show (``$_faststate``), or None
        self.error: dict[str, Any] | None = None
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            self.events = parse_sse(response.body)
            for event in self.events:
                patch = signals_of(event)
                if patch is not None:
                    merge_patch(self.signals, patch)
                element = elements_of(event)
                if element is not None:
                    self.elements.append(element)
            error = self.signals.get(_ERROR_SIGNAL)
            if isinstance(error, dict) and error.get("code"):
                self.error = error
        elif response.status >= 400:
            try:
                self.error = json.loads(response.body)["error"]
            except (ValueError, KeyError, TypeError):
                self.error = {"status": response.status, "code": "", "error": response.text}

    @property
    def ok(self) -> bool:
        """No error: neither an HTTP error status nor an error signal."""
        return self.status < 400 and self.error is None

    def __repr__(self) -> str:
        return f"<EventReply {self.status} signals={self.signals} error={self.error}>"


class TestClient:
    """One browser (its cookies and signed-in user) talking to ``app`` in process.

    ``async with TestClient(app) as client:`` runs the app's lifespan around the block; several
    clients may share one app (the same store: several users, several sessions)."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: ASGIApp, *, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.cookies: dict[str, str] = {}
        self.headers = {"host": "test", **(headers or {})}
        self.user: UserContext | None = None
        self.tabs: list[Tab] = []
        self._lifespan: Lifespan | None = None

    async def __aenter__(self) -> TestClient:
        self._lifespan = Lifespan(self.app)
        await self._lifespan.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every tab, then shut the app down if this client started it."""
        for tab in list(self.tabs):
            await tab.close()
        if self._lifespan is not None:
            lifespan, self._lifespan = self._lifespan, None
            await lifespan.stop()

    # -- who this browser is -----------------------------------------------------------------------
    def login(self, user: UserContext | None) -> None:
        """Act as ``user`` from now on (None: signed out). The app sees the user through the
        default ``user_loader`` (``scope["auth"]``) or a loader wrapped in
        :func:`with_test_user`."""
        self.user = user

    def _scope(
        self, method: str, url: str, headers: dict[str, str], last_event_id: str | None = None
    ) -> dict[str, Any]:
        parts = urlsplit(url)
        all_headers = {**self.headers, **headers}
        if self.cookies:
            all_headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if last_event_id is not None:
            all_headers["last-event-id"] = last_event_id
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {TEST_USER: self.user, "auth": self.user}
        return make_scope(method, parts.path, parts.query, list(all_headers.items()), extra)

    def _keep_cookies(self, response_headers: list[tuple[str, str]]) -> None:
        for name, value in response_headers:
            if name != "set-cookie":
                continue
            jar: SimpleCookie = SimpleCookie()
            jar.load(value)
            for key, morsel in jar.items():
                if morsel["max-age"] == "0" or (not morsel.value and morsel["expires"]):
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = morsel.value

    # -- requests ----------------------------------------------------------------------------------
    async def request(
        self, method: str, url: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        """Any request, with this client's cookies (kept from the reply)."""
        scope = self._scope(method.upper(), url, headers or {})
        response = await request(self.app, scope, body)
        self._keep_cookies(response.header_list)
        return response

    async def get(self, url: str, **headers: str) -> Response:
        """Load a page (or anything else) with GET."""
        return await self.request("GET", url, headers={"accept": "text/html", **headers})

    async def event(
        self, action: str, signals: dict[str, Any] | None = None, *, tab: Tab | None = None
    ) -> EventReply:
        """Run a Datastar action string (``Counter.increment(5)``) as the browser would: the
        ``Datastar-Request`` header, the signals as JSON (in ``?datastar=`` for GET/DELETE),
        ``Accept: text/event-stream``. ``signals``: what the page holds (default: the tab's,
        or none); local signals (a leading ``_``) are not sent, as in Datastar."""
        match = _ACTION.search(html.unescape(action))
        if match is None:
            raise ValueError(
                f"not a Datastar action: {action!r} (an empty one means the signed-in user "
                "may not use the event)"
            )
        method = match.group(1).upper()
        url = match.group(2) if match.group(2) is not None else json.loads(match.group(3))
        include = _INCLUDE.search(html.unescape(action))
        pattern = re.compile(include.group(1)) if include is not None else None
        if signals is None:
            signals = tab.signals if tab is not None else {}
        payload = json.dumps(sent_signals(signals, pattern), separators=(",", ":"))
        headers = {"datastar-request": "true", "accept": "text/event-stream"}
        body = b""
        if method in ("GET", "DELETE"):
            url += ("&" if "?" in url else "?") + "datastar=" + quote(payload)
        else:
            headers["content-type"] = "application/json"
            body = payload.encode()
        reply = EventReply(await self.request(method, url, body=body, headers=headers))
        if tab is not None:
            tab.apply_reply(reply)
        return reply

    async def open(self, url: str) -> Tab:
        """Load a page and open its live stream, as a browser tab does."""
        response = await self.get(url)
        if response.status != 200:
            raise AssertionError(f"GET {url} answered {response.status}: {response.text[:200]}")
        tab = Tab(self, url, response.text)
        await tab.connect()
        self.tabs.append(tab)
        return tab


class Tab:
    """One open page: its HTML and signals, following every patch of its live stream."""

    __test__ = False

    def __init__(self, client: TestClient, url: str, page_html: str) -> None:
        self.client = client
        self.url = url
        self.page = Page(page_html)
        #: the page's signals, as Datastar holds them
        self.signals: dict[str, Any] = self.page.signals()
        #: every event the stream delivered, in order
        self.received: list[SSEEvent] = []
        #: the ``id:`` of the last event received (what a reconnect sends as Last-Event-ID)
        self.last_event_id: str | None = None
        #: the stream's status (200 when open; 204: its token was refused)
        self.status = 0
        match = _STREAM_URL.search(html.unescape(page_html))
        self.stream_url = match.group(1) if match else None
        self._parser = SSEParser()
        self._stream: Streaming | None = None
        self._progress = asyncio.Event()

    @property
    def html(self) -> str:
        """The page's HTML as patched so far."""
        return self.page.html

    def element(self, element_id: str) -> str | None:
        """The outer HTML of the element with this id, as patched so far (None: absent)."""
        return self.page.element(element_id)

    @property
    def tab_id(self) -> str | None:
        block = self.signals.get("faststate")
        return block.get("tab") if isinstance(block, dict) else None

    async def connect(self, last_event_id: str | None = None) -> None:
        """Open the live stream (again), sending ``last_event_id`` as ``Last-Event-ID``."""
        if self.stream_url is None:
            return  # the page rendered no state: nothing to follow
        scope = self.client._scope(
            "GET",
            self.stream_url,
            {"accept": "text/event-stream", "datastar-request": "true"},
            last_event_id,
        )
        self._parser = SSEParser()
        self._stream = Streaming(self.client.app, scope, self._on_chunk)
        await self._stream.open()
        self.status = self._stream.status

    async def reconnect(self) -> None:
        """Drop the stream and open it again with the last event id, as Datastar retries."""
        await self.disconnect()
        await self.connect(self.last_event_id)

    async def disconnect(self) -> None:
        """Close the stream (the page stays, like a tab whose network dropped)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    async def close(self) -> None:
        """Close the tab."""
        await self.disconnect()
        if self in self.client.tabs:
            self.client.tabs.remove(self)

    def _on_chunk(self, chunk: bytes) -> None:
        for event in self._parser.feed(chunk):
            self.received.append(event)
            if event.id is not None:
                self.last_event_id = event.id
            self._apply(event)
        progressed, self._progress = self._progress, asyncio.Event()
        progressed.set()

    def _apply(self, event: SSEEvent) -> None:
        patch = signals_of(event)
        if patch is not None:
            merge_patch(self.signals, patch)
        element = elements_of(event)
        if element is not None:
            self.page.apply(element)

    def apply_reply(self, reply: EventReply) -> None:
        """Apply an event reply's patches to this page (the browser does so)."""
        for event in reply.events:
            self._apply(event)

    async def event(self, action: str, signals: dict[str, Any] | None = None) -> EventReply:
        """Run an action from this tab: its signals (with its tab id) are sent, and the reply's
        patches applied to it."""
        return await self.client.event(action, signals, tab=self)

    async def wait_for(self, condition: Callable[[], Any], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` is true, checking it after each chunk the stream sends."""
        async with asyncio.timeout(timeout):
            while not condition():
                stream = self._stream
                if stream is None or stream.finished.is_set():
                    if condition():
                        return
                    raise AssertionError("the stream ended before the condition held")
                await self._progress.wait()

    def __repr__(self) -> str:
        return f"<Tab {self.url} signals={self.signals}>"


__all__ = ["TEST_USER", "EventReply", "Tab", "TestClient", "with_test_user"]
