"""What an app tells about its events: a log line, metrics, a trace span, a recorded entry.

Each is opt-in except the WARNING line of a failed event; an app that enabled none of them
pays a clock read and a few attribute checks per event (no EventRun is made for it).
"""

from __future__ import annotations

import logging
import time

from ._metrics import Metrics, outcome_of
from ._recorder import EventRecord, Recorder, public_key
from ._tracing import EventTracer

log = logging.getLogger("faststate_mw")


class EventRun:
    """One event request as it is served: filled in by dispatch, read by the observer."""

    __slots__ = ("event", "key", "reply", "state", "status", "user_id")

    def __init__(
        self, state: str, event: str, key: str = "", status: int = 200, reply: str = ""
    ) -> None:
        self.state = state
        self.event = event
        self.key = key
        self.user_id: str | None = None
        #: the HTTP status the request ended with (an SSE error reply is 200 on the wire)
        self.status = status
        #: the SSE text of the reply, when metrics count its patches
        self.reply = reply


class Observer:
    """The store's observability settings: ``metrics`` (a :class:`Metrics`), ``recorder`` (a
    :class:`Recorder`), and OpenTelemetry through the globally configured tracer provider."""

    def __init__(self, metrics: Metrics | None = None, recorder: Recorder | None = None) -> None:
        self.metrics = metrics
        self.recorder = recorder
        self.tracing = EventTracer()

    def quiet(self) -> bool:
        """Whether a successful event has nothing to tell: no metrics, no recorder, and no
        DEBUG logging."""
        return (
            self.metrics is None and self.recorder is None and not log.isEnabledFor(logging.DEBUG)
        )

    def names_user(self, status: int) -> bool:
        """Whether what is told about an event names its user (a log line or a record; the
        metrics do not): then the user is loaded even if the event did not need it."""
        return status >= 400 or self.recorder is not None or log.isEnabledFor(logging.DEBUG)

    def event_done(self, run: EventRun, seconds: float) -> None:
        """Log, count and record one finished event request."""
        status = run.status
        outcome = "ok" if status < 400 else outcome_of(status)
        if outcome != "ok":
            if log.isEnabledFor(logging.WARNING):
                log.warning(
                    "event %s.%s %s (%d) key=%s user=%s %.2fms",
                    run.state,
                    run.event,
                    outcome,
                    status,
                    public_key(run.key),
                    run.user_id,
                    seconds * 1000,
                )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "event %s.%s ok key=%s user=%s %.2fms",
                run.state,
                run.event,
                public_key(run.key),
                run.user_id,
                seconds * 1000,
            )
        metrics = self.metrics
        if metrics is not None:
            metrics.event(run.state, run.event, outcome, seconds, run.reply)
        recorder = self.recorder
        if recorder is not None:
            recorder.event(
                EventRecord(
                    time.time(),
                    run.state,
                    run.event,
                    public_key(run.key),
                    run.user_id,
                    outcome,
                    status,
                    seconds,
                )
            )


__all__ = ["EventRun", "Observer"]
