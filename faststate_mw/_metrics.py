"""Prometheus metrics of one app, in its own ``CollectorRegistry`` (two apps never clash).

Opt-in: ``StateStore(metrics=True)`` or the middleware's ``metrics_path``; ``prometheus-client``
(the ``[metrics]`` extra) is imported only then. Counters that cost nothing to keep (the hub's
deliveries and resyncs, the backend's errors and reconnects, live instances and streams) are
read when the registry is collected; events are counted as they finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ._exceptions import ConfigurationError

#: what a store reports when the registry is collected (see :func:`live_counts`)
LiveCounts = Callable[[], Mapping[str, Any]]

#: an event's outcome, from the status of its error (None: it succeeded)
OUTCOMES = ("ok", "invalid", "denied", "rate_limited", "error")

#: seconds; an event is usually well under a millisecond in process
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def outcome_of(status: int) -> str:
    """``ok``, ``invalid`` (bad input), ``denied`` (401/403), ``rate_limited`` (429) or
    ``error`` (5xx), from the HTTP status an event request ended with."""
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "error"
    return "invalid"


def live_counts(items: list[tuple[str, Any]], hub: Any, backend: dict[str, Any]) -> dict[str, Any]:
    """What metrics read when collected: instances (``(key, instance)`` pairs) by scope and
    class, open streams and the hub's counters, the backend's counters."""
    instances: dict[tuple[str, str], int] = {}
    for key, inst in items:
        label = (key.split(":", 1)[0], type(inst).__name__)
        instances[label] = instances.get(label, 0) + 1
    counters = hub.metrics
    return {
        "instances": instances,
        "streams": len(hub.tabs),
        "published": counters["published"],
        "delivered": counters["delivered"],
        "resyncs": counters["dropped_to_resync"],
        "backend_healthy": backend.get("healthy", True),
        "backend_errors": backend.get("errors", 0),
        "backend_reconnects": backend.get("reconnects", 0),
        "backend_conflicts": backend.get("conflicts", 0),
    }


class Metrics:
    """One app's counters and histograms, readable from Python and as Prometheus text.

    ``store.metrics.value("faststate_events_total", state="Counter", event="increment",
    outcome="ok")`` reads one sample; :meth:`exposition` is what the metrics path serves.
    """

    def __init__(self, live: LiveCounts) -> None:
        try:
            import prometheus_client as prom
            from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "metrics need prometheus-client: pip install 'faststate-mw[metrics]'"
            ) from exc
        self._prom = prom
        #: this app's registry (not the process-wide default one)
        self.registry = prom.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.events = prom.Counter(
            "faststate_events",
            "Event requests by state, event and outcome",
            ["state", "event", "outcome"],
            registry=reg,
        )
        self.event_seconds = prom.Histogram(
            "faststate_event_duration_seconds",
            "Time to serve an event request, reply included",
            ["state", "event"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.replies = prom.Counter(
            "faststate_reply_events",
            "SSE events sent in event replies, by kind (signals: patches, elements: renders)",
            ["kind"],
            registry=reg,
        )
        self.delivery_seconds = prom.Histogram(
            "faststate_cross_worker_delivery_seconds",
            "From another worker's commit to this worker receiving the change",
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        reg.register(_LiveCollector(live, CounterMetricFamily, GaugeMetricFamily))
        #: (state, event, outcome) -> its counter and histogram (bounded: names from the catalog)
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def event(self, state: str, event: str, outcome: str, seconds: float, reply: str) -> None:
        """Count one finished event request and the SSE events of its reply."""
        children = self._children.get((state, event, outcome))
        if children is None:  # labels() takes a lock and builds a tuple: once per label set
            children = self._children[(state, event, outcome)] = (
                self.events.labels(state, event, outcome),
                self.event_seconds.labels(state, event),
            )
        children[0].inc()
        children[1].observe(seconds)
        if reply:
            patches = reply.count("event: datastar-patch-signals")
            renders = reply.count("event: datastar-patch-elements")
            if patches:
                self.replies.labels("signals").inc(patches)
            if renders:
                self.replies.labels("elements").inc(renders)

    def delivered(self, seconds: float) -> None:
        """A change from another worker arrived ``seconds`` after it was committed."""
        self.delivery_seconds.observe(max(0.0, seconds))

    def value(self, name: str, **labels: str) -> float:
        """One sample's value (0.0 when it has not been recorded yet): the full sample name,
        e.g. ``faststate_events_total`` or ``faststate_event_duration_seconds_count``."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

    def samples(self) -> dict[str, float]:
        """Every sample, as ``name{label="value",...}`` -> value."""
        out: dict[str, float] = {}
        for family in self.registry.collect():
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text format of this registry, and its content type."""
        return self._prom.generate_latest(self.registry), self._prom.CONTENT_TYPE_LATEST


#: counters the store keeps anyway: (name, help, key in ``live_counts()``)
_COUNTERS = (
    ("faststate_changes_published", "State changes published to local streams", "published"),
    ("faststate_stream_patches", "Changes delivered to live streams, per stream", "delivered"),
    ("faststate_slow_consumer_resyncs", "Slow streams reduced to a resync", "resyncs"),
    ("faststate_backend_errors", "Backend operations that failed", "backend_errors"),
    ("faststate_backend_reconnects", "Backend pub/sub reconnections", "backend_reconnects"),
    (
        "faststate_backend_conflicts",
        "Commits that lost a race to another worker (the change was re-run)",
        "backend_conflicts",
    ),
)


class _LiveCollector:
    """Reads the store's cheap counters at collection time (no cost per change)."""

    def __init__(self, live: LiveCounts, counter: Any, gauge: Any) -> None:
        self._live = live
        self._counter = counter
        self._gauge = gauge

    def describe(self) -> list[Any]:
        return []  # collected lazily: nothing to check against at registration

    def collect(self) -> Iterator[Any]:
        live = self._live()
        gauge, counter = self._gauge, self._counter
        instances = gauge(
            "faststate_instances",
            "Live state instances by scope and class",
            labels=["scope", "state"],
        )
        for (scope, state), n in sorted(live["instances"].items()):
            instances.add_metric([scope, state], n)
        yield instances
        yield gauge("faststate_streams_open", "Open live streams (tabs)", value=live["streams"])
        yield gauge(
            "faststate_backend_healthy",
            "1 while the backend is reachable",
            value=1 if live["backend_healthy"] else 0,
        )
        for name, doc, key in _COUNTERS:
            yield counter(name, doc, value=live[key])


__all__ = ["LATENCY_BUCKETS", "OUTCOMES", "Metrics", "live_counts", "outcome_of"]
