"""OpenTelemetry spans for events, when ``opentelemetry-api`` is installed (the ``[otel]``
extra) and the app configured a tracer provider; otherwise nothing at all is done per event."""

from __future__ import annotations

from typing import Any

try:  # an optional dependency
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on the install
    _trace = None  # type: ignore[assignment]

_NO_PROVIDER: tuple[type[Any], ...] = ()
if _trace is not None:
    _NO_PROVIDER = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)


class EventTracer:
    """Hands out the tracer of the configured provider, or None (no provider: no spans)."""

    __slots__ = ("_provider", "_tracer")

    def __init__(self) -> None:
        self._provider: Any = None
        self._tracer: Any = None

    def tracer(self) -> Any:
        """The ``faststate_mw`` tracer, or None when OpenTelemetry is not set up."""
        if _trace is None:
            return None
        provider = _trace.get_tracer_provider()
        if provider is not self._provider:
            self._provider = provider
            self._tracer = (
                None if isinstance(provider, _NO_PROVIDER) else provider.get_tracer("faststate_mw")
            )
        return self._tracer


def end_span(span: Any, key: str, outcome: str, status: int) -> None:
    """Label an event's span with what it did."""
    span.set_attribute("faststate.key", key)
    span.set_attribute("faststate.outcome", outcome)
    span.set_attribute("http.response.status_code", status)
    if outcome == "error" and _trace is not None:
        span.set_status(_trace.Status(_trace.StatusCode.ERROR))


__all__ = ["EventTracer", "end_span"]
