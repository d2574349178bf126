"""Small helpers shared by the tests."""

from __future__ import annotations

import json
from typing import Any


def sse_events(text: str) -> list[tuple[str, str]]:
    """Parse an SSE body into (event, data) pairs."""
    out = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = "", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        out.append((event, "\n".join(data)))
    return out


def patched_signals(text: str) -> list[dict[str, Any]]:
    """The signal patches of an SSE body, decoded."""
    out = []
    for event, data in sse_events(text):
        if event == "datastar-patch-signals":
            lines = [d.removeprefix("signals ") for d in data.split("\n")]
            out.append(json.loads("\n".join(lines)))
    return out
