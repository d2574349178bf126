"""Reading what Datastar reads: SSE events, signal patches merged the way the client merges
them, and element patches."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple


class SSEEvent(NamedTuple):
    """One server-sent event."""

    event: str
    data: list[str]
    id: str | None


class ElementPatch(NamedTuple):
    """One ``datastar-patch-elements`` event: the HTML, and where it goes."""

    elements: str
    selector: str | None
    mode: str  #: outer (morph by id, the default), inner, replace, prepend, append, remove, ...


class SSEParser:
    """Feed bytes as they arrive; take the complete events."""

    def __init__(self) -> None:
        self._buffer = b""
        #: keep-alive comments seen
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buffer += chunk.replace(b"\r\n", b"\n")
        out: list[SSEEvent] = []
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            name, data, event_id = "message", [], None
            seen = False
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                seen = True
                if field == "event":
                    name = value
                elif field == "data":
                    data.append(value)
                elif field == "id":
                    event_id = value
            if seen:
                out.append(SSEEvent(name, data, event_id))
        return out


def parse_sse(body: bytes) -> list[SSEEvent]:
    """Every complete event of an SSE body."""
    return SSEParser().feed(body)


def _fields(data: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in data:
        key, _, value = line.partition(" ")
        out.setdefault(key, []).append(value)
    return out


def signals_of(event: SSEEvent) -> dict[str, Any] | None:
    """The patch of a ``datastar-patch-signals`` event (None for other events)."""
    if event.event != "datastar-patch-signals":
        return None
    patch = json.loads("\n".join(_fields(event.data).get("signals", ["{}"])))
    return patch if isinstance(patch, dict) else {}


def elements_of(event: SSEEvent) -> ElementPatch | None:
    """The patch of a ``datastar-patch-elements`` event (None for other events)."""
    if event.event != "datastar-patch-elements":
        return None
    fields = _fields(event.data)
    selector = fields.get("selector", [None])[0]
    mode = fields.get("mode", ["outer"])[0] or "outer"
    return ElementPatch("\n".join(fields.get("elements", [])), selector, mode)


def merge_patch(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """Apply a signal patch as Datastar does (JSON merge patch: objects merge, ``null``
    removes)."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict):
            current = into.get(key)
            if not isinstance(current, dict):
                current = into[key] = {}
            merge_patch(current, value)
        else:
            into[key] = value


def sent_signals(
    signals: dict[str, Any], include: re.Pattern[str] | None = None, prefix: str = ""
) -> dict[str, Any]:
    """What Datastar sends of the page's signals: not the local ones (a leading ``_``), and,
    when the action filters them (``filterSignals.include``), only those whose dotted path
    matches."""
    out: dict[str, Any] = {}
    for k, v in signals.items():
        if k.startswith("_"):
            continue
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            nested = sent_signals(v, include, path + ".")
            if nested:
                out[k] = nested
        elif include is None or include.search(path):
            out[k] = v
    return out


__all__ = [
    "ElementPatch",
    "SSEEvent",
    "SSEParser",
    "elements_of",
    "merge_patch",
    "parse_sse",
    "sent_signals",
    "signals_of",
]
