"""Request bytes of one click on a page with 10 states: what Datastar 1.0 posts with its default
(every signal on the page) beside what a faststate action posts (its ``filterSignals``).

The page is rendered by a real app; the signals a click sends are computed with Datastar's own
rule (each leaf path is sent when ``include`` matches it and ``exclude``, by default
``/(^|\\.)_/``, does not) and serialized as ``JSON.stringify`` does. The browser test
``tests/e2e/test_signal_filter.py`` checks the same filter on a real click.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateStore,
    attrs_html,
    event,
    on,
)
from faststate_mw.testing import isolated_state_names

STATES = 10
_EXCLUDE = re.compile(r"(^|\.)_")  # Datastar 1.0's default exclude
_SIGNALS = re.compile(r"data-signals='([^']*)'|data-signals=\"([^\"]*)\"")
_INCLUDE = re.compile(r'"include": \(/(.*)/\)')


def _state_classes() -> list[type[State]]:
    classes = []
    for i in range(STATES):

        class Panel(State):
            __faststate__ = StateConfig(name=f"Panel{i}")
            title: str = f"Panel number {i}"
            count: int = 0
            items: list[str] = ["alpha", "beta", "gamma"]
            done: bool = False

            @event
            def increment(self, amount: int = 1) -> None:
                self.count += amount

        classes.append(Panel)
    return classes


def _leaves(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = prefix + key
        if isinstance(value, dict):
            out += _leaves(value, path + ".")
        else:
            out.append((path, value))
    return out


def _body(signals: dict[str, Any], include: re.Pattern[str]) -> bytes:
    """The JSON body Datastar posts for ``include`` (leaf paths, nested back into objects)."""
    sent: dict[str, Any] = {}
    for path, value in _leaves(signals):
        if include.search(path) and not _EXCLUDE.search(path):
            node = sent
            *parents, last = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    return json.dumps(sent, separators=(",", ":")).encode()


def run() -> None:
    print(f"== request bytes: one click on a page with {STATES} states")
    with isolated_state_names(empty=True):
        classes = _state_classes()

        async def page(request: Request) -> HTMLResponse:
            parts = [cls.current().to_html() for cls in classes]
            button = f"<button {attrs_html(on('click', classes[3].increment(1)))}>+</button>"
            return HTMLResponse(f"<html><body>{''.join(parts)}{button}</body></html>")

        app = Starlette(routes=[Route("/", page)])
        app.add_middleware(FastStateMiddleware, secret_key="bench", store=StateStore())
        text = TestClient(app).get("/").text
    signals: dict[str, Any] = {}
    for a, b in _SIGNALS.findall(text):
        signals.update(json.loads(html.unescape(a or b)))
    action = html.unescape(re.search(r'data-on:click="([^"]*)"', text).group(1))  # type: ignore[union-attr]
    include = re.compile(_INCLUDE.search(action).group(1))  # type: ignore[union-attr]
    everything = _body(signals, re.compile(".*"))
    filtered = _body(signals, include)
    print(f"  include filter of the action: /{include.pattern}/")
    print(f"  Datastar default (all signals): {len(everything):6d} bytes")
    print(f"  faststate action (filtered):    {len(filtered):6d} bytes  ", end="")
    print(f"({len(filtered) / len(everything):.2f} of the default)")
    print(f"  sent: {filtered.decode()}")
