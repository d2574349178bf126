"""OpenTelemetry spans for events, when ``opentelemetry-api`` is installed (the ``[otel]``
extra) and the app configured a tracer provider; otherwise nothing at all is done per event."""

from __future__ import annotations

import math
import time
from typing import Any

try:  # an optional dependency
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the install
    _trace = None  # type: ignore[assignment]

_NO_PROVIDER: tuple[type[Any], ...] = ()
if _trace is not None:
    _NO_PROVIDER = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)


#: seconds between looks for a tracer provider while none is configured
RECHECK = 1.0


class EventTracer:
    """Hands out the tracer of the configured provider, or None (no provider: no spans).

    OpenTelemetry's global provider is set once per process, so once found it is kept; until
    then it is looked for at most once a second (looking costs more than the event's own
    bookkeeping), so an app that configures tracing after it started gets spans within a second.
    """

    __slots__ = ("_tracer", "due")

    def __init__(self) -> None:
        self._tracer: Any = None
        #: the ``time.perf_counter()`` from which :meth:`tracer` may return a tracer: a caller
        #: that reads the clock anyway skips the call before it (minus infinity once one is
        #: found; infinity without OpenTelemetry installed: nothing to look for, ever)
        self.due = 0.0 if _trace is not None else math.inf

    def tracer(self, now: float | None = None) -> Any:
        """The ``faststate_mw`` tracer, or None when OpenTelemetry is not set up. ``now``: the
        caller's ``time.perf_counter()``, when it has just read it (one clock read less)."""
        tracer = self._tracer
        if tracer is not None:
            return tracer
        if now is None:
            now = time.perf_counter()
        if now < self.due:
            return None
        self.due = now + RECHECK
        provider = _trace.get_tracer_provider()
        if not isinstance(provider, _NO_PROVIDER):
            tracer = self._tracer = provider.get_tracer("faststate_mw")
            self.due = -math.inf
        return tracer


def end_span(span: Any, key: str, outcome: str, status: int) -> None:
    """Label an event's span with what it did."""
    span.set_attribute("faststate.key", key)
    span.set_attribute("faststate.outcome", outcome)
    span.set_attribute("http.response.status_code", status)
    if outcome == "error" and _trace is not None:
        span.set_status(_trace.Status(_trace.StatusCode.ERROR))


__all__ = ["EventTracer", "end_span"]
