"""The one SSE parser of the tests and bench: Datastar events out of a body or a live stream,
and the live-stream URL and tab id out of a page."""

from __future__ import annotations

import json
import re
from typing import Any

STREAM_URL = re.compile(r"@get\('([^']+)'")
TAB = re.compile(r"&quot;tab&quot;:&quot;([^&]+)&quot;|\"tab\":\"([^\"]+)\"")


def parse_event(block: str) -> dict[str, Any]:
    """One SSE event: ``{"event", "id", "data": [lines], "comments": n}``, plus ``"signals"``
    (decoded) for a ``datastar-patch-signals`` event."""
    event: dict[str, Any] = {"event": "", "id": None, "data": [], "comments": 0}
    for line in block.split("\n"):
        if line.startswith(":"):
            event["comments"] += 1
        elif line.startswith("event: "):
            event["event"] = line[7:]
        elif line.startswith("id: "):
            event["id"] = line[4:]
        elif line.startswith("data: "):
            event["data"].append(line[6:])
    if event["event"] == "datastar-patch-signals":
        lines = [d.removeprefix("signals ") for d in event["data"]]
        event["signals"] = json.loads("\n".join(lines))
    return event


class SSEReader:
    """Feed it the bytes of a stream as they come; it hands back each complete event."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        self.buffer += chunk
        out = []
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            if block.strip():
                out.append(parse_event(block.decode()))
        return out


def sse_events(text: str) -> list[tuple[str, str]]:
    """Parse an SSE body into (event, data) pairs."""
    events = SSEReader().feed(text.encode() + b"\n\n")
    return [(e["event"], "\n".join(e["data"])) for e in events]


def patched_signals(text: str) -> list[dict[str, Any]]:
    """The signal patches of an SSE body, decoded."""
    return [e["signals"] for e in SSEReader().feed(text.encode() + b"\n\n") if "signals" in e]


def stream_url(html: str | bytes) -> str:
    """The URL of the live stream the middleware put on a page."""
    text = html.decode() if isinstance(html, bytes) else html
    match = STREAM_URL.search(text)
    assert match, "the page has no live stream element"
    return match.group(1)


def tab_id(html: str) -> str:
    match = TAB.search(html)
    assert match
    return match.group(1) or match.group(2)
