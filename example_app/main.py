"""The seeds' counter page on FastHTML, with a GLOBAL visitors counter.

Run with ``make run``. Settings (environment): FASTSTATE_SECRET (signing key; a fixed dev key
otherwise), FASTSTATE_DATASTAR_JS (a local copy of the Datastar 1.0 client to self-host instead
of loading it from the CDN).
"""

from __future__ import annotations

import os
from typing import Any

from fasthtml.common import H1, H2, Button, Div, Input, Main, NotStr, P, Span, Title, fast_app

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    bind,
    datastar_script,
    error_attrs,
    event,
    on,
    state_registry,
    text,
)

SECRET = os.environ.get("FASTSTATE_SECRET", "dev-only-secret-change-me")


class Counter(State):
    """Per browser session (the default scope)."""

    count: int = 0
    message: str = "Hello"

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def decrement(self, amount: int = 1) -> None:
        self.count -= amount

    @event
    def reset(self) -> None:
        self.count = 0


class Visitors(State):
    """One instance for everybody."""

    visits: int = 0
    waves: int = 0

    @event
    def wave(self) -> None:
        self.waves += 1


state_registry.register(Visitors, StateConfig(scope=StateScope.GLOBAL))

app, rt = fast_app(
    secret_key=SECRET,
    default_hdrs=False,
    pico=False,
    htmx=False,
    surreal=False,
)
app.add_middleware(
    FastStateMiddleware,
    secret_key=SECRET,
    datastar_js=os.environ.get("FASTSTATE_DATASTAR_JS") or None,
)


def layout(title: str, *body: Any) -> tuple[Any, ...]:
    return (
        Title(title),
        NotStr(datastar_script()),
        Main(H1(title), *body, Div(error_attrs(), id="error", cls="error")),
    )


@rt("/")
def index(counter: Counter, visitors: Visitors) -> Any:
    visitors.visits += 1
    return layout(
        "FastState demo",
        counter,
        visitors,
        H2("Your counter (this session)"),
        P("Count: ", Span(text(Counter, "count"), id="count")),
        Div(
            Button("-", on("click", Counter.decrement(1)), id="dec"),
            Button("0", on("click", Counter.reset()), id="reset"),
            Button("+", on("click", Counter.increment(1)), id="inc"),
        ),
        P(
            Input(bind(Counter, "message"), on("change", Counter.set_message()), id="message"),
            " says: ",
            Span(text(Counter, "message"), id="message-echo"),
        ),
        H2("Everybody (global)"),
        P("Visits: ", Span(text(Visitors, "visits"), id="visits")),
        P("Waves: ", Span(text(Visitors, "waves"), id="waves")),
        Button("Wave", on("click", Visitors.wave()), id="wave"),
    )
