"""Metrics (exact counts after known traffic, the protected Prometheus path), log lines, trace
spans and the recorder of recent events, driven through faststate_mw.testing."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import HTMLResponse
from starlette.routing import Route

from faststate_mw import (
    ConfigurationError,
    FastStateError,
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
    event,
    requires_auth,
)
from faststate_mw.testing import TestClient
from tests.servers import RedisServer

TOKEN = "scrape-token-0123456789"
BUMP = {"state": "MShared", "event": "bump"}


class TooMany(FastStateError):
    status = 429
    code = "rate_limited"


class MCounter(State):
    count: int = 0
    secret_note: str = ""

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount

    @event
    def note(self, text: str) -> str:
        self.secret_note = text
        return '<p id="n">noted</p>'

    @event
    def explode(self) -> None:
        raise RuntimeError("boom")

    @event
    def throttled(self) -> None:
        raise TooMany("slow down")

    @event
    @requires_auth(roles=["admin"])
    def reset(self) -> None:
        self.count = 0


class MShared(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    def bump(self) -> None:
        self.n += 1


def page(request: Any) -> HTMLResponse:
    return HTMLResponse(f"<html><body>{MShared.current().to_html()}</body></html>")


def make_app(store: StateStore, **options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/", page)],
        middleware=[Middleware(FastStateMiddleware, secret_key="m", store=store, **options)],
    )


async def traffic(client: TestClient) -> None:
    """3 ok (one of them renders), 1 invalid, 1 denied, 1 rate-limited, 1 error."""
    for _ in range(2):
        assert (await client.event(MCounter.increment(2))).ok
    assert (await client.event(MCounter.note(), {"text": "hush-hush"})).ok
    assert (await client.event("@post('/_faststate/MCounter/increment?amount=x')")).error
    assert (await client.event(MCounter.reset())).error
    assert (await client.event(MCounter.throttled())).error
    assert (await client.event(MCounter.explode())).error


async def test_metrics_count_events_by_state_event_and_outcome(store: StateStore) -> None:
    metrics = store.enable_metrics()
    async with TestClient(make_app(store)) as client:
        await traffic(client)
    value = metrics.value
    events = "faststate_events_total"
    assert value(events, state="MCounter", event="increment", outcome="ok") == 2
    assert value(events, state="MCounter", event="note", outcome="ok") == 1
    assert value(events, state="MCounter", event="increment", outcome="invalid") == 1
    assert value(events, state="MCounter", event="reset", outcome="denied") == 1
    assert value(events, state="MCounter", event="throttled", outcome="rate_limited") == 1
    assert value(events, state="MCounter", event="explode", outcome="error") == 1
    total = sum(v for k, v in metrics.samples().items() if k.startswith(events + "{"))
    assert total == 7
    duration = "faststate_event_duration_seconds_count"
    assert value(duration, state="MCounter", event="increment") == 3
    assert value("faststate_reply_events_total", kind="signals") == 3  # ok replies
    assert value("faststate_reply_events_total", kind="elements") == 1
    assert value("faststate_instances", scope="session", state="MCounter") == 1


async def test_live_metrics_streams_and_patches(store: StateStore) -> None:
    metrics = store.enable_metrics()
    app = make_app(store)
    async with TestClient(app) as alice:
        bob = TestClient(app)
        tab_a, tab_b = await alice.open("/"), await bob.open("/")
        assert metrics.value("faststate_streams_open") == 2
        for _ in range(3):
            await alice.event(MShared.bump())
        await tab_b.wait_for(lambda: tab_b.signals["mShared"]["n"] == 3)
        await tab_a.wait_for(lambda: tab_a.signals["mShared"]["n"] == 3)
        assert metrics.value("faststate_changes_published_total") == 3
        assert metrics.value("faststate_stream_patches_total") == 6  # 3 changes x 2 streams
        assert metrics.value("faststate_slow_consumer_resyncs_total") == 0
        assert metrics.value("faststate_instances", scope="global", state="MShared") == 1
        await tab_b.close()
        assert metrics.value("faststate_streams_open") == 1


async def test_the_metrics_path_needs_its_token(store: StateStore) -> None:
    app = make_app(store, metrics_path="/metrics", metrics_token=TOKEN)
    async with TestClient(app) as client:
        await client.event(MCounter.increment(1))
        assert (await client.get("/metrics")).status == 401
        wrong = await client.get("/metrics", authorization="Bearer " + TOKEN[:-1] + "X")
        assert wrong.status == 401
        client.login(UserContext("root", roles=frozenset({"admin"})))  # a token is required
        assert (await client.get("/metrics")).status == 401
        response = await client.get("/metrics", authorization="Bearer " + TOKEN)
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/plain")
        posted = await client.request(
            "POST", "/metrics", headers={"authorization": "Bearer " + TOKEN}
        )
        assert posted.status == 405
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    ok = [
        s.value
        for s in families["faststate_events"].samples
        if s.name == "faststate_events_total" and s.labels["outcome"] == "ok"
    ]
    assert ok == [1.0]
    assert "faststate_event_duration_seconds" in families


async def test_without_a_token_the_metrics_path_is_for_admins(store: StateStore) -> None:
    app = make_app(store, metrics_path="/metrics")
    async with TestClient(app) as client:
        assert (await client.get("/metrics")).status == 401
        client.login(UserContext("u", roles=frozenset({"viewer"})))
        assert (await client.get("/metrics")).status == 403
        client.login(UserContext("root", roles=frozenset({"admin"})))
        response = await client.get("/metrics")
        assert response.status == 200 and "faststate_streams_open" in response.text


async def test_metrics_are_off_by_default(store: StateStore) -> None:
    async with TestClient(make_app(store)) as client:
        await client.event(MCounter.increment(1))
        assert (await client.get("/metrics")).status == 404  # the app's own 404
    assert store.metrics is None
    with pytest.raises(ConfigurationError):
        FastStateMiddleware(make_app(store), "k", metrics_path="/m", metrics_token="short")


async def test_two_apps_keep_their_own_metrics(clock: Any) -> None:
    one, two = StateStore(clock=clock, metrics=True), StateStore(clock=clock, metrics=True)
    async with TestClient(make_app(one)) as a, TestClient(make_app(two)) as b:
        await a.event(MCounter.increment(1))
        await a.event(MCounter.increment(1))
        await b.event(MCounter.increment(1))
    key = {"state": "MCounter", "event": "increment", "outcome": "ok"}
    assert one.metrics is not None and two.metrics is not None
    assert one.metrics.value("faststate_events_total", **key) == 2
    assert two.metrics.value("faststate_events_total", **key) == 1


async def test_log_lines_per_event_and_per_failure(
    store: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="faststate_mw")
    async with TestClient(make_app(store)) as client:
        client.login(UserContext("user-7"))
        await traffic(client)
    lines = [r for r in caplog.records if r.funcName == "event_done"]
    assert len(lines) == 7
    debug = [r.getMessage() for r in lines if r.levelno == logging.DEBUG]
    warnings = [r.getMessage() for r in lines if r.levelno == logging.WARNING]
    assert len(debug) == 3 and len(warnings) == 4
    assert all("user=user-7" in m and "ms" in m for m in debug + warnings)
    assert any(m.startswith("event MCounter.reset denied (403)") for m in warnings)
    assert any(m.startswith("event MCounter.throttled rate_limited (429)") for m in warnings)
    # a session id never reaches a log line; signal values never at INFO or above
    sid = client.cookies["faststate_sid"].split(".")[0]
    assert all(sid not in m for m in debug + warnings)
    assert "key=session:…:MCounter" in debug[0]
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert loud and not any("hush-hush" in m for m in loud)


@pytest.fixture
def spans() -> Any:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


async def test_an_event_is_a_span(store: StateStore, spans: InMemorySpanExporter) -> None:
    async with TestClient(make_app(store)) as client:
        await traffic(client)
    finished = [s for s in spans.get_finished_spans() if s.name.startswith("MCounter.")]
    assert [s.name for s in finished] == [
        "MCounter.increment",
        "MCounter.increment",
        "MCounter.note",
        "MCounter.increment",
        "MCounter.reset",
        "MCounter.throttled",
        "MCounter.explode",
    ]
    first = finished[0].attributes or {}
    assert first["faststate.state"] == "MCounter"
    assert first["faststate.event"] == "increment"
    assert first["faststate.outcome"] == "ok"
    assert str(first["faststate.key"]).startswith("session:…:")
    outcomes = [(s.attributes or {})["faststate.outcome"] for s in finished]
    assert outcomes[3:] == ["invalid", "denied", "rate_limited", "error"]
    assert finished[-1].status.status_code == trace.StatusCode.ERROR


async def test_the_recorder_keeps_recent_events_and_key_history(clock: Any) -> None:
    store = StateStore(clock=clock, record=5)
    async with TestClient(make_app(store)) as client:
        client.login(UserContext("ann"))
        await traffic(client)
    assert store.recorder is not None
    recent = store.recorder.recent()
    assert len(recent) == 5  # bounded
    assert [r.outcome for r in recent] == ["ok", "invalid", "denied", "rate_limited", "error"]
    assert recent[0].event == "note" and recent[0].user_id == "ann"
    assert recent[0].key.startswith("session:…:")
    (key,) = store.keys(state_cls=MCounter)
    history = store.recorder.history(key)
    assert [(h.version, h.user_id) for h in history] == [(1, "ann"), (2, "ann"), (3, "ann")]
    assert history[0].changed == {"count": 2}
    assert history[2].changed == {"secret_note": "hush-hush"}


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Wait for a condition of a background task (the Redis listener) to hold."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def until_async(numsub: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not (await numsub())[0][1]:
            await asyncio.sleep(0.01)


async def test_redis_metrics_delivery_errors_and_reconnects(tmp_path: Any, clock: Any) -> None:
    server = RedisServer(tmp_path).start()
    try:
        one = StateStore(server.url, clock=clock, metrics=True)
        two = StateStore(server.url, clock=clock, metrics=True)
        async with TestClient(make_app(one)) as alice, TestClient(make_app(two)) as bob:
            tab_b = await bob.open("/")
            redis = aioredis.from_url(server.url)  # wait until B's subscription took hold
            await until_async(lambda: redis.pubsub_numsub("faststate:chan:global:MShared"))
            tab_a = await alice.open("/")

            async def both_subscribed() -> Any:  # and A's (else A's tab resyncs later)
                [(channel, count)] = await redis.pubsub_numsub("faststate:chan:global:MShared")
                return [(channel, count == 2)]

            await until_async(both_subscribed)
            await redis.aclose()
            assert (await alice.event(MShared.bump())).ok
            await tab_b.wait_for(lambda: tab_b.signals["mShared"]["n"] == 1)
            assert one.metrics is not None and two.metrics is not None
            delivery = "faststate_cross_worker_delivery_seconds_count"
            assert two.metrics.value(delivery) == 1
            assert one.metrics.value(delivery) == 0  # its own change is not a delivery
            assert one.metrics.value("faststate_backend_healthy") == 1

            server.stop()
            reply = await alice.event(MShared.bump())
            assert reply.error is not None and reply.error["status"] == 503
            assert one.metrics.value("faststate_events_total", **BUMP, outcome="error") == 1
            await until(lambda: not one.backend.stats()["healthy"])
            assert one.metrics.value("faststate_backend_healthy") == 0
            # the event's failed commit, and the pub/sub connection lost (once, not per retry)
            assert one.metrics.value("faststate_backend_errors_total") == 2
            server.start()
            await until(lambda: one.backend.stats()["healthy"])
            assert one.metrics.value("faststate_backend_reconnects_total") == 1
            assert (await alice.event(MShared.bump())).ok
            await tab_a.wait_for(lambda: tab_a.signals["mShared"]["n"] == 2)
    finally:
        server.stop()


async def test_redis_metrics_count_commits_that_lost_a_race(tmp_path: Any, clock: Any) -> None:
    server = RedisServer(tmp_path, durable=False).start()
    try:
        store = StateStore(server.url, clock=clock, metrics=True)
        async with TestClient(make_app(store)) as alice:
            assert (await alice.event(MShared.bump())).ok
            assert store.metrics is not None
            assert store.metrics.value("faststate_backend_conflicts_total") == 0
            # another worker's change, whose publish this worker has not seen
            redis = aioredis.from_url(server.url)
            state = {"v": 7, "d": '{"n": 10}'}
            await redis.hset("faststate:state:global:MShared", mapping=state)  # type: ignore[misc]
            await redis.aclose()
            reply = await alice.event(MShared.bump())
            assert reply.ok and reply.signals["mShared"]["n"] == 11  # re-run on what won
            assert store.metrics.value("faststate_backend_conflicts_total") == 1
    finally:
        server.stop()


def test_nothing_optional_is_imported_or_traced_until_asked() -> None:
    code = (
        "import sys, faststate_mw\n"
        "from faststate_mw._tracing import EventTracer\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "assert EventTracer().tracer() is None  # no tracer provider configured\n"
        "faststate_mw.StateStore(metrics=True)\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
