"""Putting the live-stream element (and, if the page loads none, the Datastar client) into HTML
pages as they are sent.

The element goes before ``</body>`` of a ``text/html`` response that rendered states. A page that
loads no Datastar client (no ``<script>`` naming datastar) would do nothing at all: the client's
``<script type="module">`` tag goes in with the element. The response start is held until the
body is seen, so its Content-Length is right. Bodies compressed by a middleware inside
FastStateMiddleware (GZip) are decompressed, patched and compressed again; other encodings are
left alone with a warning (order the middlewares so that FastStateMiddleware runs inside the
compressing one: see README, "The middleware").
"""

from __future__ import annotations

import gzip
import logging
import re

from ._types import Message

log = logging.getLogger("faststate_mw")

#: a page that loads Datastar: a script tag naming it, or a module importing it
_CLIENT = re.compile(rb"<script\b[^>]*datastar|\bimport\b[^;<]*datastar", re.I)
_TAIL = 512
#: ``data-on-click`` (FastHTML's ``data_on_click=``): Datastar 1.0 ignores it; its own hyphenated
#: attributes (``data-on-intersect``, ``data-on-interval``, ``data-on-signal-patch``) are fine
_HYPHENATED = re.compile(
    rb"\sdata-on-(?!(?:intersect|interval|signal-patch(?:-filter)?)[\s=>_])([a-z][\w-]*)", re.I
)


class PageInjector:
    """Follows one response: ``start(message)``, then ``body(message)`` for each body part,
    which returns the messages to send (the held start with the first of them)."""

    __slots__ = (
        "_buffer",
        "_check",
        "_client",
        "_element",
        "_gzip",
        "_seen",
        "_start",
        "_tail",
        "added_client",
    )

    def __init__(self, element: bytes, client: bytes = b"", check_attrs: bool = False) -> None:
        self._element = element
        self._client = client
        #: warn about attributes Datastar 1.0 ignores (debug mode)
        self._check = check_attrs
        self._gzip = False
        self._buffer: list[bytes] | None = None
        self._start: Message | None = None
        self._seen = False
        self._tail = b""
        #: set once the client's tag was added to this page
        self.added_client = False

    def start(self, message: Message) -> bool:
        """Hold the response start (False: this response cannot carry the element; send it)."""
        encoding = b""
        for k, v in message.get("headers", []):
            if k.lower() == b"content-encoding":
                encoding = bytes(v).strip().lower()
        if encoding not in (b"", b"identity", b"gzip"):
            log.warning(
                "a page with live states is sent %s-encoded: its live stream cannot be added; "
                "add FastStateMiddleware after the compressing middleware",
                encoding.decode("latin-1"),
            )
            return False
        self._gzip = encoding == b"gzip"
        if self._gzip:
            self._buffer = []
        self._start = message
        return True

    def body(self, message: Message) -> list[Message]:
        """The messages to send for this body part (none while a gzip body is buffered)."""
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self._buffer is not None:
            self._buffer.append(chunk)
            if more:
                return []
            raw = b"".join(self._buffer)
            try:
                html = gzip.decompress(raw)
            except (OSError, EOFError):
                log.warning("a gzip page could not be decompressed: its live stream is missing")
                return [*self._started(len(raw)), {**message, "body": raw}]
            out = gzip.compress(self._insert(html), compresslevel=6)
            return [*self._started(len(out)), {**message, "body": out}]
        if not more and self._start is not None:  # the whole page in one part
            out = self._insert(chunk)
            return [*self._started(len(out)), {**message, "body": out}]
        # streamed HTML: the length is not known in advance
        started = self._started(None)
        if not self._element:
            return [*started, message]
        if more and b"</body>" not in chunk:
            self._check_attrs(chunk)
            self._seen = self._seen or bool(_CLIENT.search(self._tail + chunk))
            self._tail = chunk[-_TAIL:]
            return [*started, message]
        return [*started, {**message, "body": self._insert(chunk)}]

    def _started(self, length: int | None) -> list[Message]:
        """The held start, once, with its Content-Length set to ``length`` (None: dropped)."""
        message, self._start = self._start, None
        if message is None:
            return []
        headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"content-length"]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        return [{**message, "headers": headers}]

    def _check_attrs(self, html: bytes) -> None:
        if not self._check:
            return
        found = sorted({m.group(1).decode("latin-1") for m in _HYPHENATED.finditer(html)})
        if found:
            self._check = False  # once per page
            names = ", ".join(f"data-on-{n}" for n in found[:5])
            log.warning(
                "a page with live states has %s: Datastar 1.0 ignores hyphenated event "
                "attributes (FastHTML's data_on_click= renders them). Write data-on:click, e.g. "
                'with faststate_mw.on("click", action)',
                names,
            )

    def _insert(self, html: bytes) -> bytes:
        self._check_attrs(html)
        element, self._element = self._element, b""
        if not element:
            return html
        if self._client and not self._seen and not _CLIENT.search(self._tail + html):
            element += self._client
            self.added_client = True
        at = html.rfind(b"</body>")
        return html + element if at < 0 else html[:at] + element + html[at:]


__all__ = ["PageInjector"]
