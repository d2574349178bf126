"""Putting the live-stream element into HTML pages as they are sent.

The element goes before ``</body>`` of a ``text/html`` response that rendered states. Bodies
compressed by a middleware inside FastStateMiddleware (GZip) are decompressed, patched and
compressed again; other encodings are left alone with a warning (order the middlewares so that
FastStateMiddleware runs inside the compressing one: see README, "The middleware").
"""

from __future__ import annotations

import gzip
import logging

from ._types import Message

log = logging.getLogger("faststate_mw")


class PageInjector:
    """Follows one response: ``start(message)`` then ``body(message)`` for each body part."""

    __slots__ = ("_buffer", "_element", "_gzip")

    def __init__(self, element: bytes) -> None:
        self._element = element
        self._gzip = False
        self._buffer: list[bytes] | None = None

    def start(self, message: Message) -> Message | None:
        """Adjust the response start (None: this response cannot carry the element)."""
        headers = list(message.get("headers", []))
        encoding = b""
        for k, v in headers:
            if k.lower() == b"content-encoding":
                encoding = bytes(v).strip().lower()
        if encoding not in (b"", b"identity", b"gzip"):
            log.warning(
                "a page with live states is sent %s-encoded: its live stream cannot be added; "
                "add FastStateMiddleware after the compressing middleware",
                encoding.decode("latin-1"),
            )
            return None
        self._gzip = encoding == b"gzip"
        if self._gzip:
            # the length is known only once the whole body is recompressed
            self._buffer = []
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        else:
            headers = [
                (k, str(int(v) + len(self._element)).encode())
                if k.lower() == b"content-length"
                else (k, v)
                for k, v in headers
            ]
        return {**message, "headers": headers}

    def body(self, message: Message) -> Message | None:
        """The body part to send (None: hold it, more is coming)."""
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if self._buffer is not None:
            self._buffer.append(chunk)
            if more:
                return None
            try:
                html = gzip.decompress(b"".join(self._buffer))
            except (OSError, EOFError):
                log.warning("a gzip page could not be decompressed: its live stream is missing")
                return {**message, "body": b"".join(self._buffer)}
            return {**message, "body": gzip.compress(self._insert(html), compresslevel=6)}
        if more:
            if b"</body>" not in chunk:
                return message
            # streamed HTML: the closing tag is in this part
            self._element, element = b"", self._element
            at = chunk.rfind(b"</body>")
            return {**message, "body": chunk[:at] + element + chunk[at:]}
        return {**message, "body": self._insert(chunk)}

    def _insert(self, html: bytes) -> bytes:
        element, self._element = self._element, b""
        at = html.rfind(b"</body>")
        return html + element if at < 0 else html[:at] + element + html[at:]


__all__ = ["PageInjector"]
