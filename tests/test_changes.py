"""The change pipeline (_changes.py): events on one instance are serialized, also across awaits
inside the event; changes from outside events (``update()``, ``mutate()``) are broadcast like
events' and rolled back on error."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from starlette.applications import Starlette

from faststate_mw import (
    FastStateMiddleware,
    Limits,
    State,
    StateConfig,
    StateScope,
    StateStore,
    current_request,
    event,
)
from faststate_mw import _changes as changes
from faststate_mw._changes import restore, run_grouped, snapshot
from faststate_mw._config import info_of, meta_of
from faststate_mw._exceptions import BackendUnavailable
from faststate_mw._http import patch_signals
from faststate_mw.backends import MemoryBackend, Stored
from faststate_mw.testing._asgi import make_scope
from tests.apps.live import SENTINEL, LiveRecord, live_browser, mark
from tests.conftest import DS
from tests.sse import patched_signals


class Shared(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0

    @event
    def increment(self) -> None:
        self.count += 1

    @event
    async def slow_increment(self) -> None:
        value = self.count
        await asyncio.sleep(0.001)  # another request would interleave here without the lock
        self.count = value + 1


@pytest.mark.parametrize("event_name", ["increment", "slow_increment"])
async def test_200_concurrent_increments_end_at_exactly_200(
    event_name: str, store: StateStore
) -> None:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="concurrency", store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def one(i: int) -> int:
            r = await client.post(f"/_faststate/Shared/{event_name}", headers=DS, content=b"{}")
            return r.status_code

        statuses = await asyncio.gather(*(one(i) for i in range(200)))
    assert statuses == [200] * 200
    inst = store.get("global:Shared")
    assert isinstance(inst, Shared)
    assert inst.count == 200


class Till(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    total: int = 0

    @event
    async def deposit_slowly(self) -> None:
        value = self.total
        _inside.set()
        await _gate.wait()  # a plain event run here would be overwritten below
        self.total = value + 10

    @event
    def deposit(self) -> None:
        self.total += 1

    @event
    def deposit_later(self, fail: bool = False) -> Any:
        self.total += 100
        return self._settle(fail)  # a plain def returning an awaitable: awaited, one change

    async def _settle(self, fail: bool) -> None:
        await asyncio.sleep(0)
        self.total += 1
        if fail:
            raise RuntimeError("settling failed")


async def test_a_change_no_stream_shows_is_counted_as_published(store: StateStore) -> None:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="counted", store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for _ in range(2):
            r = await client.post("/_faststate/Shared/increment", headers=DS, content=b"{}")
            assert r.status_code == 200
    assert store.hub.metrics["published"] == 2 and store.hub.metrics["delivered"] == 0
    assert not store.hub.logs  # nothing kept for streams that never came


_inside = asyncio.Event()
_gate = asyncio.Event()


async def test_a_plain_event_waits_for_an_async_event_that_holds_the_state() -> None:
    _inside.clear()
    _gate.clear()
    store = StateStore()
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="till", store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow = asyncio.create_task(
            client.post("/_faststate/Till/deposit_slowly", headers=DS, content=b"{}")
        )
        await _inside.wait()
        quick = asyncio.create_task(
            client.post("/_faststate/Till/deposit", headers=DS, content=b"{}")
        )
        meta = meta_of(store.get("global:Till"))
        while not meta.group and not quick.done():  # it waits for the state's lock
            await asyncio.sleep(0)
        _gate.set()
        assert (await slow).status_code == 200
        assert (await quick).status_code == 200
    till = store.get("global:Till")
    assert till.total == 11 and till.version == 2  # no update lost
    await store.close()


async def test_a_plain_event_returning_an_awaitable_is_one_change_with_its_rest() -> None:
    store = StateStore()
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="till", store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.post("/_faststate/Till/deposit_later", headers=DS, content=b"{}")
        assert r.status_code == 200
        assert patched_signals(r.text) == [{"till": {"total": 101}}]
        url = "/_faststate/Till/deposit_later?fail=true"
        r = await client.post(url, headers=DS, content=b"{}")
        assert r.status_code == 200 and "event_failed" in r.text
    till = store.get("global:Till")
    assert till.total == 101 and till.version == 1  # the failed one rolled back whole
    await store.close()


@pytest.fixture
async def app_and_browser(store: StateStore) -> AsyncIterator[tuple[Starlette, Any]]:
    async with live_browser(store) as pair:
        yield pair


async def test_changes_outside_events_broadcast(app_and_browser: Any, store: StateStore) -> None:
    _app, (browser, tab) = app_and_browser
    t = await tab(browser(), "?record_id=42")
    other = await tab(browser(), "?record_id=42")
    rec = await LiveRecord.resolve(42, store=store)
    assert await rec.update(n=5) == ["n"]
    assert await rec.update(n=5) == []  # no change, nothing sent
    await mark(store)
    for x in (t, other):
        assert x.stream is not None
        assert await x.stream.before(SENTINEL) == [{"liveRecord": {"n": 5}}]
    async with rec.mutate() as r:
        r.n += 10
    assert t.stream is not None and (await t.stream.next())["signals"] == {"liveRecord": {"n": 15}}
    with pytest.raises(ZeroDivisionError):
        async with rec.mutate() as r:
            r.n = 99
            _ = 1 / 0
    assert rec.n == 15  # rolled back, nothing sent
    await mark(store)
    assert await t.stream.before(SENTINEL) == []


# -- group commit: events on a busy instance are committed together ------------------------------


class GatedBackend(MemoryBackend):
    """A shared backend whose commits wait at a gate (the round trip to Redis, held open), so a
    test decides when the instance is busy; ``conflicts[n]``: the n-th commit call (from 0)
    loses the race to what another worker stored."""

    shared = True

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.commits: list[tuple[int, str]] = []
        self.conflicts: dict[int, Stored] = {}
        self.down = False
        self.calls = 0

    async def commit(
        self, key: str, expected: int, version: int, data: str, ttl: float | None, sse: bytes
    ) -> Stored | None:
        await self.gate.wait()
        self.calls += 1
        if self.down:
            raise BackendUnavailable("the state backend is unavailable; try again shortly")
        if self.calls - 1 in self.conflicts:
            return self.conflicts[self.calls - 1]
        self.commits.append((version, data))
        return None


class Hot(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    count: int = 0
    who: list[str] = []
    blob: str = ""

    @event
    def add(self) -> None:
        self.count += 1
        self.who = [*self.who, current_request().headers["x-who"]]

    @event
    def add_then_fail(self) -> None:
        self.count += 100
        raise RuntimeError("boom")

    @event
    def grow(self) -> None:
        self.count += 1000
        self.blob = "x" * 5000


@contextlib.asynccontextmanager
async def busy_app(
    backend: GatedBackend, **limits: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, StateStore]]:
    store = StateStore(backend=backend, limits=Limits(**limits))
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="group-commit", store=store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, store


async def _post(client: httpx.AsyncClient, name: str, who: str) -> httpx.Response:
    return await client.post(f"/_faststate/Hot/{name}", headers={**DS, "x-who": who}, content=b"{}")


async def _busy(
    client: httpx.AsyncClient, store: StateStore, backend: GatedBackend, who: str
) -> asyncio.Future[httpx.Response]:
    """Make the instance, then send an event that holds its lock at its commit (the gate is
    closed): events sent from now on wait in a group. Returns that first event's reply."""
    assert (await _post(client, "add", "w")).status_code == 200
    backend.gate.clear()
    first = asyncio.ensure_future(_post(client, "add", who))
    while not meta_of(store.get("global:Hot")).locked():
        await asyncio.sleep(0)
    return first


def _outcome(reply: httpx.Response) -> str:
    """ "ok", or the error code of a Datastar request's reply (a 200 carrying the error)."""
    assert reply.status_code == 200
    return reply.headers.get("x-faststate-error", "ok")


async def _group_of(store: StateStore, size: int) -> None:
    """Until ``size`` events wait in the instance's next group (each request runs in a task)."""
    while True:
        inst = store.get("global:Hot")
        group = meta_of(inst).group if inst is not None else None
        if group is not None and len(group) >= size:
            return
        await asyncio.sleep(0)


async def test_events_on_a_busy_state_commit_together_each_with_its_own_reply() -> None:
    backend = GatedBackend()
    async with busy_app(backend) as (client, store):
        first = await _busy(client, store, backend, "first")
        rest = [asyncio.ensure_future(_post(client, "add", str(i))) for i in range(20)]
        await _group_of(store, 20)
        backend.gate.set()
        replies = [await first, *[await r for r in rest]]
    assert [_outcome(r) for r in replies] == ["ok"] * 21
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot)
    assert inst.count == 22
    assert inst.who == ["w", "first", *(str(i) for i in range(20))]  # each its own request's
    # one commit for the lone event, one for the group of 20 (three in all, with the first)
    assert len(backend.commits) == 3
    assert meta_of(inst).version == 3
    # every reply carries its own event's values, as if it had been committed alone
    counts = [patched_signals(r.text)[0]["hot"]["count"] for r in replies]
    assert counts == list(range(2, 23))
    names = [patched_signals(r.text)[0]["hot"]["who"][-1] for r in replies]
    assert names == ["first", *(str(i) for i in range(20))]


async def test_a_failing_event_in_a_group_is_rolled_back_alone() -> None:
    backend = GatedBackend()
    async with busy_app(backend) as (client, store):
        first = await _busy(client, store, backend, "a")
        group = [
            asyncio.ensure_future(_post(client, name, "g"))
            for name in ("add", "add_then_fail", "add")
        ]
        await _group_of(store, 3)
        backend.gate.set()
        outcomes = [_outcome(await first), *[_outcome(await r) for r in group]]
    assert outcomes == ["ok", "ok", "event_failed", "ok"]
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot) and inst.count == 4  # the failed event's +100 is not there
    assert json.loads(backend.commits[-1][1])["count"] == 4


async def test_a_group_that_loses_a_race_is_run_again_on_what_won() -> None:
    backend = GatedBackend()
    async with busy_app(backend) as (client, store):
        first = await _busy(client, store, backend, "a")
        group = [asyncio.ensure_future(_post(client, "add", str(i))) for i in range(5)]
        await _group_of(store, 5)
        # the first commit goes through; the group's first try finds another worker's change
        backend.conflicts[2] = Stored(7, Hot(count=50, who=["other"]).model_dump_json())
        backend.gate.set()
        assert _outcome(await first) == "ok"
        replies = [await r for r in group]
    assert [_outcome(r) for r in replies] == ["ok"] * 5
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot)
    assert inst.count == 55 and inst.who == ["other", "0", "1", "2", "3", "4"]
    assert meta_of(inst).version == 8
    assert [patched_signals(r.text)[0]["hot"]["count"] for r in replies] == [51, 52, 53, 54, 55]


async def test_an_event_that_makes_a_grouped_state_too_large_fails_alone() -> None:
    backend = GatedBackend()
    async with busy_app(backend, max_state_bytes=4096) as (client, store):
        first = await _busy(client, store, backend, "a")
        group = [asyncio.ensure_future(_post(client, name, "g")) for name in ("add", "grow", "add")]
        await _group_of(store, 3)
        backend.gate.set()
        outcomes = [_outcome(await first), *[_outcome(await r) for r in group]]
    assert outcomes == ["ok", "ok", "payload_too_large", "ok"]
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot) and inst.count == 4 and inst.blob == ""


async def test_an_event_given_up_on_while_it_waits_for_its_group_never_runs() -> None:
    backend = GatedBackend()
    store = StateStore(backend=backend)
    await store.start()
    try:
        inst = await Hot.resolve(store=store)
        runs: list[str] = []

        def step(name: str) -> Any:
            def run() -> None:
                runs.append(name)
                inst.count += 1

            return run

        backend.gate.clear()
        first = asyncio.ensure_future(run_grouped(inst, step("first")))
        while not meta_of(inst).locked():
            await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(run_grouped(inst, step(n))) for n in "abc"]
        while len(meta_of(inst).group or []) < 3:
            await asyncio.sleep(0)
        waiting[1].cancel()  # e.g. its request ran out of time
        backend.gate.set()
        await first
        assert (await waiting[0])[1] and (await waiting[2])[1]
        with pytest.raises(asyncio.CancelledError):
            await waiting[1]
        assert runs == ["first", "a", "c"] and inst.count == 3
        assert meta_of(inst).group is None and len(backend.commits) == 2
    finally:
        await store.close()


async def test_a_group_whose_backend_is_down_fails_at_once_with_one_try() -> None:
    backend = GatedBackend()
    async with busy_app(backend) as (client, store):
        first = await _busy(client, store, backend, "a")
        group = [asyncio.ensure_future(_post(client, "add", str(i))) for i in range(5)]
        await _group_of(store, 5)
        backend.down = True
        backend.gate.set()
        outcomes = [_outcome(await first), *[_outcome(await r) for r in group]]
    assert outcomes == ["backend_unavailable"] * 6
    assert backend.calls == 3  # the first event's commit and the group's one: no try per event
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot) and inst.count == 1


async def test_a_group_holds_at_most_max_group_events_the_rest_wait_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(changes, "MAX_GROUP", 4)
    backend = GatedBackend()
    async with busy_app(backend) as (client, store):
        first = await _busy(client, store, backend, "first")
        rest = [asyncio.ensure_future(_post(client, "add", str(i))) for i in range(10)]
        while len(changes._LEADERS) < 3:  # groups of 4, 4 and 2
            await asyncio.sleep(0)
        backend.gate.set()
        replies = [await first, *[await r for r in rest]]
    assert [_outcome(r) for r in replies] == ["ok"] * 11
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot) and inst.count == 12
    assert inst.who == ["w", "first", *(str(i) for i in range(10))]
    assert len(backend.commits) == 5  # w, first, then three groups


# -- a deadline during a commit: the reply tells what the backend did ----------------------------


def time_passes(seconds: float) -> None:
    """The event loop's clock moves ``seconds`` on, as if they had passed: its timers that fall
    due (an event's deadline) fire at its next turn, and nothing waits for real time."""
    loop = asyncio.get_running_loop()
    now = loop.time
    loop.time = lambda: now() + seconds  # type: ignore[method-assign]


async def deadline_passed(store: StateStore) -> None:
    """Until the store's event deadlines have fired (no request is watched any more)."""
    while len(store.event_deadlines):
        await asyncio.sleep(0)


def _stored(backend: GatedBackend) -> tuple[int, int]:
    """(version, count) of the last change the backend stored."""
    version, data = backend.commits[-1]
    return version, json.loads(data)["count"]


def _local(store: StateStore) -> tuple[int, int]:
    """(version, count) of this worker's instance."""
    inst = store.get("global:Hot")
    assert isinstance(inst, Hot)
    return meta_of(inst).version, inst.count


@pytest.mark.parametrize("down", [False, True])
async def test_a_deadline_during_its_commit_gets_the_commits_outcome_not_a_504(
    down: bool,
) -> None:
    backend = GatedBackend()
    async with busy_app(backend, event_timeout=5) as (client, store):
        late = await _busy(client, store, backend, "late")  # its commit is with the backend
        time_passes(10)
        await deadline_passed(store)
        backend.down = down  # the commit then fails, or goes through
        backend.gate.set()
        reply = await late
    if down:
        assert _outcome(reply) == "backend_unavailable"
        assert _local(store) == _stored(backend) == (1, 1)  # rolled back: only "w" is stored
    else:
        assert _outcome(reply) == "ok"
        assert patched_signals(reply.text)[0]["hot"]["count"] == 2
        assert _local(store) == _stored(backend) == (2, 2)


@pytest.mark.parametrize("down", [False, True])
async def test_a_deadline_after_a_grouped_events_step_ran_gets_the_groups_outcome(
    down: bool,
) -> None:
    backend = GatedBackend()
    async with busy_app(backend, event_timeout=5) as (client, store):
        first = await _busy(client, store, backend, "first")
        grouped = asyncio.ensure_future(_post(client, "add", "g"))
        await _group_of(store, 1)
        backend.gate.set()  # the first commit goes through ...
        backend.gate.clear()  # ... the group's waits
        assert _outcome(await first) == "ok"
        while _local(store)[1] < 3:  # the group's step ran: it is committing
            await asyncio.sleep(0)
        time_passes(10)
        await deadline_passed(store)
        backend.down = down
        backend.gate.set()
        reply = await grouped
    if down:
        assert _outcome(reply) == "backend_unavailable"
        assert _local(store) == _stored(backend) == (2, 2)  # the group rolled back
    else:
        assert _outcome(reply) == "ok"
        assert patched_signals(reply.text)[0]["hot"]["count"] == 3
        assert _local(store) == _stored(backend) == (3, 3)


class Relay(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    async def relay(self) -> None:
        self.n += 1
        hot = await Hot.resolve()
        await hot.update(count=hot.count + 10)
        await asyncio.Event().wait()  # only its deadline ends it


async def test_an_async_event_whose_deadline_passes_during_another_states_commit_is_still_cut() -> (
    None
):
    backend = GatedBackend()
    async with busy_app(backend, event_timeout=5) as (client, store):
        assert _outcome(await _post(client, "add", "w")) == "ok"
        backend.gate.clear()
        relay = asyncio.ensure_future(
            client.post("/_faststate/Relay/relay", headers=DS, content=b"{}")
        )
        while not meta_of(store.get("global:Hot")).locked():  # its update of Hot commits
            await asyncio.sleep(0)
        time_passes(10)
        await deadline_passed(store)
        backend.gate.set()
        reply = await asyncio.wait_for(relay, 10)
    assert _outcome(reply) == "event_timeout"  # cut at its next await, as without the commit
    assert _local(store) == _stored(backend) == (2, 11)  # Hot's change was stored: it stays
    inst = store.get("global:Relay")
    assert isinstance(inst, Relay) and inst.n == 0 and meta_of(inst).version == 0


class Steps(State):
    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    n: int = 0

    @event
    def steps(self) -> Any:
        self.n += 1
        yield None
        self.n += 1


async def test_a_generator_cancelled_while_it_streams_a_committed_step_keeps_that_step(
    store: StateStore,
) -> None:
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="steps", store=store)
    streaming = asyncio.Event()

    async def send(message: dict[str, Any]) -> None:
        if message.get("more_body"):  # the first step's patch: the client stops reading
            streaming.set()
            await asyncio.Event().wait()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    scope = make_scope("POST", "/_faststate/Steps/steps", "", list(DS.items()), {})
    call = asyncio.ensure_future(app(scope, receive, send))
    await streaming.wait()
    call.cancel()  # the client went away, or the server shuts down
    with pytest.raises(asyncio.CancelledError):
        await call
    inst = store.get("global:Steps")
    assert isinstance(inst, Steps)
    assert (meta_of(inst).version, inst.n) == (1, 1)  # the first step was committed: it stays


class Nested(State):
    tags: list[str] = ["a"]
    grid: list[list[int]] = [[1]]
    names: dict[str, str] = {"k": "v"}
    deep: dict[str, list[int]] = {"k": [1]}


def test_a_snapshot_survives_changes_in_place_at_any_depth() -> None:
    inst = Nested()
    before = snapshot(inst)
    inst.tags.append("b")
    inst.grid[0].append(2)
    inst.names["k"] = "w"
    inst.deep["k"].append(2)
    restore(inst, before)
    assert inst.tags == ["a"] and inst.grid == [[1]]
    assert inst.names == {"k": "v"} and inst.deep == {"k": [1]}


class Tupled(State):
    pair: tuple[list[int], str] = ([1], "a")
    pairs: tuple[dict[str, int], ...] = ({"k": 1},)
    flat: tuple[int, str] = (1, "a")


def test_a_list_inside_a_tuple_is_rolled_back_and_its_change_is_seen() -> None:
    inst = Tupled()
    before = snapshot(inst)
    inst.pair[0].append(2)
    inst.pairs[0]["k"] = 2
    assert changes.changed_since(inst, before) == ["pair", "pairs"]
    restore(inst, before)
    assert inst.pair == ([1], "a") and inst.pairs == ({"k": 1},)
    assert changes.changed_since(inst, snapshot(inst)) == []
    assert snapshot(inst)["flat"] is inst.flat  # a tuple of plain values is not copied


class Points(State):
    points: tuple[tuple[int, int], ...] = ()
    tagged: tuple[tuple[list[int], int], ...] = (([1], 1),)


def test_a_tuple_of_tuples_is_kept_and_a_list_deep_inside_one_is_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a large tuple of pairs (a path, a polygon) is immutable: an event on its state must not
    # cost a deep copy of it (20,000 pairs: ~20 ms each time, for the same tuple back), while
    # a list under two tuples is still copied for the rollback
    inst = Points(points=tuple((i, i) for i in range(20_000)))
    deep_copied: list[Any] = []
    deepcopy = copy.deepcopy
    monkeypatch.setattr(copy, "deepcopy", lambda v, *a: deep_copied.append(v) or deepcopy(v, *a))
    before = snapshot(inst)
    assert before["points"] is inst.points
    assert all(value is not inst.points for value in deep_copied)
    assert any(value is inst.tagged for value in deep_copied)
    inst.tagged[0][0].append(2)
    assert changes.changed_since(inst, before) == ["tagged"]
    restore(inst, before)
    assert inst.tagged == (([1], 1),)


class Pair(tuple):  # type: ignore[type-arg]
    def __new__(cls, a: Any, b: Any) -> Pair:
        return super().__new__(cls, (a, b))


class OwnTuple(State):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    pair: Pair | None = None


def test_a_tuple_subclass_whose_new_takes_other_arguments_does_not_fail_events() -> None:
    inst = OwnTuple(pair=Pair([1], "a"))
    before = snapshot(inst)  # deepcopy would call Pair.__new__ with one argument
    assert before["pair"] is inst.pair


class Mixed(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT, namespace="mixed.deep")
    n: int = 0
    f: float = 0.0
    s: str = ""
    b: bool = False
    o: int | None = None
    items: list[Any] = []
    m: dict[str, Any] = {}


@pytest.mark.parametrize("ident", [None, "c1", 'é"\\.x'])
@pytest.mark.parametrize(
    "values",
    [
        {"n": 10**30, "f": -0.0, "s": 'a"b\\c\n\t\x00\x7f', "b": True, "o": None},
        {"n": -1, "f": 1e16, "s": "é€😀 </script>", "b": False, "o": 7},
        {"f": 5e-324, "items": [1, "é", None, 2.5], "m": {"k": [True]}},
        {"s": "x", "m": {}},
    ],
)
def test_a_signal_patch_is_written_as_datastar_writes_it(
    values: dict[str, Any], ident: str | None
) -> None:
    from faststate_mw._config import info_of
    from faststate_mw._http import patch_signals

    inst = Mixed(**values)
    meta_of(inst).ident = ident
    data = inst.model_dump(mode="json", include=set(values))
    expected = patch_signals(info_of(Mixed).wrap(data, ident))
    assert changes._patch_of(inst, list(values)) == expected


class OwnDumps(State):
    n: int = 0

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().model_dump(**kwargs), "extra": "mine"}

    def model_dump_json(self, **kwargs: Any) -> str:
        return "x" * (Limits.max_state_bytes + 1)


def test_a_state_that_overrides_its_dumps_is_committed_with_them() -> None:
    inst = OwnDumps()
    assert '"extra":"mine"' in changes._patch_of(inst, ["n"])
    with pytest.raises(changes.PayloadTooLarge):
        changes._checked_json(inst, None)  # measured by its own JSON


class Assigned(State):
    n: int = 0
    fixed: int = Field(0, frozen=True)


class Noting(BaseModel):
    """A model whose own __setattr__ sits between State and BaseModel in a subclass."""

    def __setattr__(self, name: str, value: Any) -> None:
        noted = self.__dict__.get("_noted", ())
        object.__setattr__(self, "_noted", (*noted, name))  # in __dict__, not a field
        super().__setattr__(name, value)


class NotingState(State, Noting):
    n: int = 0


def test_an_assignment_is_validated_and_recorded_as_the_change_runs() -> None:
    inst = Assigned()
    meta_of(inst).assigned = set()
    for _ in range(2):  # the first assignment of a name, then pydantic's memoized setter
        inst.n = "7"  # type: ignore[assignment]
        assert inst.n == 7
        with pytest.raises(ValidationError):
            inst.n = "x"  # type: ignore[assignment]
        assert inst.n == 7
        with pytest.raises(ValidationError):
            inst.fixed = 1
    assert meta_of(inst).assigned == {"n"}
    noting = NotingState()
    noting.n = 1
    noting.n = 2
    assert noting.__dict__["_noted"] == ("n", "n") and noting.n == 2


class PlainFields(State):
    i: int = 0
    b: bool = False
    f: float = 0.0
    s: str = ""
    opt: int | None = None
    low: Annotated[int, Field(ge=0)] = 0
    fixed: int = Field(0, frozen=True)


class StrippedFields(State):
    model_config = ConfigDict(str_strip_whitespace=True, allow_inf_nan=False)
    i: int = 0
    f: float = 0.0
    s: str = ""


class CheckedFields(State):
    i: int = 0

    @model_validator(mode="after")
    def small(self) -> CheckedFields:
        if self.i > 10:
            raise ValueError("too big")
        return self


class DoubledFields(State):
    i: int = 0

    @field_validator("i")
    @classmethod
    def double(cls, value: int) -> int:
        return value * 2


def test_a_plain_assignment_ends_as_a_validated_one() -> None:
    """A value of exactly a bare field's type is set as it is, without pydantic's validator:
    the state ends as that validator leaves it, and anything it changes or refuses still goes
    through it."""
    assert PlainFields.__faststate_plain__ == {"i": int, "b": bool, "f": float, "s": str}
    assert StrippedFields.__faststate_plain__ == {"i": int}
    assert CheckedFields.__faststate_plain__ == {} and DoubledFields.__faststate_plain__ == {}
    values = [0, 7, -1, 2**70, True, False, 1.5, float("inf"), float("nan"), "", " a ", None, b"x"]
    for cls in (PlainFields, StrippedFields, CheckedFields, DoubledFields):
        for name in cls.model_fields:
            for value in values:
                ours, theirs = cls(), cls()
                try:
                    cls.__pydantic_validator__.validate_assignment(theirs, name, value)
                except ValidationError:
                    with pytest.raises(ValidationError):
                        setattr(ours, name, value)
                else:
                    setattr(ours, name, value)
                got, want = ours.__dict__[name], theirs.__dict__[name]
                assert type(got) is type(want) and (got == want or got != got), (cls, name, value)
                assert ours.__dict__.keys() == theirs.__dict__.keys()
                assert ours.model_fields_set == theirs.model_fields_set
                assert ours.__pydantic_extra__ == theirs.__pydantic_extra__


class Serialized(State):
    i: int = 0
    s: str = ""
    named: int = Field(0, serialization_alias="other")
    shown: int = 0

    @field_serializer("shown")
    def _shown(self, value: int) -> str:
        return f"#{value}"


def test_a_patch_of_values_dumped_as_they_are_is_the_serializers() -> None:
    """Values of fields dumped as they are go into the patch without pydantic's serializer;
    the patch and the data are what it makes of them, also for a value of another type (one
    put there without validation) and for a field it renames or serializes its own way."""
    assert PlainFields.__faststate_dumped__ == {"i": int, "b": bool, "s": str}
    assert Serialized.__faststate_dumped__ == {"i": int, "s": str}
    plain = PlainFields.model_construct(i=True, b=1, s='é\n"', f=1.5, opt=3)
    serialized = Serialized(i=2**70, s="x", named=3, shown=4)
    for inst in (PlainFields(i=-3, b=True, s="a"), plain, serialized):
        info = info_of(type(inst))
        for count in range(1, len(info.fields) + 1):
            names = list(info.fields[:count])
            with warnings.catch_warnings():  # pydantic's about the values of other types
                warnings.simplefilter("ignore")
                data = inst.model_dump(mode="json", include=set(names))
                got = changes._signals(inst, info, None, names)
            assert got == (data, patch_signals(info.wrap(data, None)))
            assert list(got[0]) == list(data)


class FrozenModel(State):
    model_config = ConfigDict(frozen=True)
    n: int = 0


class FrozenParent(State):
    model_config = ConfigDict(frozen=True)


class FrozenChild(FrozenParent):
    n: int = 0


class FrozenKw(State, frozen=True):
    n: int = 0


@pytest.mark.parametrize("cls", [FrozenModel, FrozenChild, FrozenKw])
def test_a_frozen_states_plain_field_cannot_be_assigned(cls: type[State]) -> None:
    """pydantic refuses any assignment to a frozen model in BaseModel.__setattr__ (its core
    schema's config does not say frozen): the plain-field shortcut must not skip that."""
    inst = cls()
    with pytest.raises(ValidationError):
        inst.n = 5  # type: ignore[misc]
    assert inst.n == 0
