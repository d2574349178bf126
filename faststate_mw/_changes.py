"""The one change pipeline: snapshot -> run -> compare -> save -> version -> publish.

Events, generator events (per step), ``State.update()`` and ``State.mutate()`` all change a
state through here, under the instance's lock, so a change is saved, versioned and broadcast the
same way wherever it comes from, and rolled back the same way when anything fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import inspect
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from pydantic import BaseModel

from ._config import info_of, meta_of
from ._exceptions import BackendUnavailable, EventTimeout, PayloadTooLarge, StoredStateError
from ._http import patch_signals
from ._limits import Limits
from ._stored import load_into
from .backends import Backend, Stored


class Conflict(Exception):
    """Another worker changed the state first (shared backends): re-run on what it stored."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored


#: values kept as they are by ``snapshot``: nothing in them can change in place. Not tuple: a
#: tuple may hold lists (``tuple[list[int], str]``), see ``_copy``
_IMMUTABLE = (int, float, str, bool, bytes, type(None), frozenset)
#: how often a change is re-run when other workers keep changing its state first
MAX_CONFLICT_RETRIES = 100
#: events committed together at most: a group's steps run in one turn of the event loop
MAX_GROUP = 128


#: values a list or dict may hold and still be copied shallowly
_ATOMS = frozenset({int, float, str, bool, bytes, type(None)})


def _frozen(value: tuple[Any, ...]) -> bool:
    """Nothing in the tuple ``value`` can change in place: it holds plain values, frozensets
    and such tuples at any depth (``tuple[tuple[int, int], ...]``: deepcopy would walk every
    item of a large one on each event, ~1 ms per thousand, to give back the same tuple)."""
    for item in value:
        kind = type(item)
        if kind in _ATOMS or kind is frozenset:
            continue
        if not isinstance(item, tuple):
            return False
        if not (_ATOMS.issuperset(map(type, item)) or _frozen(item)):  # a pair: no Python loop
            return False
    return True


def _copy(value: Any) -> Any:
    """``value`` as it is now, for a rollback: a list or dict of plain values (a list of
    strings, say) is copied shallowly, much faster than ``deepcopy``; a tuple that holds
    nothing changeable (see ``_frozen``) is kept as it is; anything else is copied deeply."""
    kind = type(value)
    if isinstance(value, tuple):  # a NamedTuple too
        if _ATOMS.issuperset(map(type, value)) or _frozen(value):
            return value
        if kind is not tuple and not hasattr(kind, "_fields"):
            # an app's own tuple subclass: deepcopy rebuilds it through its __new__, which may
            # want other arguments (then every event would fail); kept as it is, unchecked
            return value
    elif kind is list:
        if all(type(item) in _ATOMS for item in value):
            return value.copy()
    elif kind is dict and all(type(item) in _ATOMS for item in value.values()):
        return value.copy()
    return copy.deepcopy(value)


#: the types of values ``snapshot`` keeps as they are (``_IMMUTABLE`` exactly)
_KEPT = frozenset(_IMMUTABLE)


def snapshot(inst: Any) -> dict[str, Any]:
    """The fields of ``inst``, copied where they could be changed in place."""
    d: dict[str, Any] = inst.__dict__
    fields = type(inst).__faststate_info__.all_fields  # info_of, inline (each class has its own)
    if _KEPT.issuperset(map(type, d.values())) and fields.issuperset(d):
        return d.copy()  # all fields, none to copy (the usual state): no Python loop
    return {k: v if isinstance(v, _IMMUTABLE) else _copy(v) for k, v in d.items() if k in fields}


def changed_since(inst: Any, before: dict[str, Any]) -> list[str]:
    """The public fields whose values differ from ``before`` (the same object is unchanged,
    even a NaN the app put there, which is not equal to itself)."""
    d = inst.__dict__
    changed = []
    for k in type(inst).__faststate_info__.fields:  # a loop: no comprehension frame
        now = d.get(k)
        then = before.get(k)
        if now is not then and now != then:
            changed.append(k)
    return changed


def restore(inst: Any, before: dict[str, Any]) -> None:
    """Put the fields of ``before`` back (a rollback)."""
    inst.__dict__.update(before)


def locked(inst: Any) -> asyncio.Lock:
    """``inst``'s lock, for ``async with locked(inst):``: one change at a time per instance."""
    meta = meta_of(inst)
    lock = meta.lock
    if lock is None:
        lock = meta.lock = asyncio.Lock()
    return lock


#: pydantic's own dump methods: a class that keeps them is dumped by calling its serializer
#: as they do, without their keyword handling (~6k instructions a call)
_DUMP = BaseModel.model_dump
_DUMP_JSON = BaseModel.model_dump_json


_PATCH = "event: datastar-patch-signals\ndata: signals {"
_INF = float("inf")
#: namespace -> the text of a signal patch before and after its fields
_FRAMES: dict[str | None, tuple[str, str]] = {}


def _frame(ns: str | None) -> tuple[str, str]:
    parts = ns.split(".") if ns else []
    frame = (
        _PATCH + "".join(f"{encode_basestring_ascii(part)}:{{" for part in parts),
        "}" * (len(parts) + 1) + "\n\n",
    )
    if len(_FRAMES) >= 1024:  # a component's namespace holds its id: emptied when full
        _FRAMES.clear()
    _FRAMES[ns] = frame
    return frame


def _signals(
    inst: Any, info: Any, ident: str | None, names: list[str]
) -> tuple[dict[str, Any], str]:
    """The fields ``names`` of ``inst`` as JSON values (``model_dump(mode="json")``) and their
    signal patch: ``patch_signals(info.wrap(data, ident))``, byte for byte. Values that are
    strings, numbers, booleans or null are written here, without making a JSON encoder and
    nesting ``data`` (most changes have only such values). ``names`` are in field order."""
    cls = type(inst)
    data: dict[str, Any]
    if cls.model_dump is _DUMP:
        # a value of a field that is dumped as it is (most) needs no call of the serializer
        d = inst.__dict__
        dumped = cls.__faststate_dumped__
        data = {}
        for name in names:
            value = d.get(name)
            if type(value) is not dumped.get(name):
                data = cls.__pydantic_serializer__.to_python(inst, mode="json", include=set(names))
                break
            data[name] = value
    else:
        data = inst.model_dump(mode="json", include=set(names))
    ns = info.namespace if ident is None else info.namespace_for(ident)
    fields = []
    for name, value in data.items():
        kind = type(value)
        if kind is int:
            text = f"{value}"
        elif kind is str:
            text = encode_basestring_ascii(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif kind is float and -_INF < value < _INF:  # json writes NaN and Infinity its way
            text = repr(value)
        else:
            return data, patch_signals(info.wrap(data, ident))
        fields.append(f"{encode_basestring_ascii(name)}:{text}")
    head, tail = _FRAMES.get(ns) or _frame(ns)
    return data, head + ",".join(fields) + tail


def _patch_of(inst: Any, fields: list[str]) -> str:
    """The signal patch of ``fields`` of ``inst`` at their current values."""
    return _signals(inst, info_of(type(inst)), meta_of(inst).ident, fields)[1]


async def commit(inst: Any, changed: list[str]) -> str:
    """A change is final: run the ``save`` hook, store it (a shared backend checks the version
    and publishes to other workers in the same step), bump the key's version, serialize the
    patch once and hand it to every local subscriber. Returns the patch for the caller's own
    reply. Raises Conflict when another worker won the race."""
    info = info_of(type(inst))
    meta = meta_of(inst)
    store = meta.store
    full = _checked_json(inst, store)
    hook = info.config.save
    if hook is not None:
        result = hook(inst)
        if inspect.isawaitable(result):
            await result
    data, text = _signals(inst, info, meta.ident, changed)
    if store is None or meta.key is None:
        meta.version += 1
        return text
    sse = text[:-1].encode()
    await _persist(store.backend, inst, meta.key, meta.version + 1, sse, full)
    _publish(store, inst, meta, changed, data, text, full, sse)
    return text


def commits_now(inst: Any) -> bool:
    """Whether a change of ``inst`` is committed without waiting for anything: no ``save``
    hook, and a backend that neither checks versions with other workers (shared) nor writes
    this state on every change (durable with ``auto_persist``)."""
    store = meta_of(inst).store
    if store is None:
        return False
    config = info_of(type(inst)).config
    backend = store.backend
    return (
        config.save is None and not backend.shared and not (backend.durable and config.auto_persist)
    )


def commit_now(inst: Any, changed: list[str]) -> str:
    """``commit`` of a change that waits for nothing (``commits_now``), in one step: so a
    change of an idle instance can run and commit with no lock (nothing else runs on the
    event loop in between)."""
    meta = inst._fs  # meta_of, inline
    store = meta.store
    full = _checked_json(inst, store)
    data, text = _signals(inst, type(inst).__faststate_info__, meta.ident, changed)
    if meta.key is None:
        meta.version += 1
        return text
    _publish(store, inst, meta, changed, data, text, full)
    return text


def _checked_json(inst: Any, store: Any) -> str:
    """The state's JSON (``model_dump_json()``), refused (PayloadTooLarge) when over
    ``Limits.max_state_bytes``."""
    cls = type(inst)
    full: str
    if cls.model_dump_json is _DUMP_JSON:
        full = cls.__pydantic_serializer__.to_json(inst).decode()
    else:
        full = inst.model_dump_json()
    cap = store.limits.max_state_bytes if store is not None else Limits.max_state_bytes
    if len(full) * 4 > cap and len(full.encode()) > cap:  # encode only near the cap
        raise PayloadTooLarge(
            f"this change would make the state larger than {cap} bytes; it was refused"
        )
    return full


def _publish(
    store: Any,
    inst: Any,
    meta: Any,
    changed: list[str],
    data: dict[str, Any],
    text: str,
    full: str,
    sse: bytes | None = None,
) -> None:
    """The change is stored: bump the key's version and hand the patch to every local
    subscriber (and the views and recorder that keep what each version was). ``sse``: the
    patch as ``Hub.publish`` takes it, made here if needed."""
    key: str = meta.key
    version = meta.version = meta.version + 1
    store.sized(key, len(full))
    hub = store.hub
    views = hub.views
    if key in views.watchers:  # some tab shows a view of it: keep what this version is
        views.record(key, version, snapshot(inst), changed)
    if key in hub.subscribers:
        hub.publish(key, version, text[:-1].encode() if sse is None else sse)
    else:  # what publish does for a key no stream shows (most), without its call
        hub.metrics["published"] += 1
    recorder = store.observer.recorder
    if recorder is not None:
        recorder.change(key, version, data, len(text))


async def _persist(
    backend: Backend, inst: Any, key: str, version: int, sse: bytes, full: str
) -> None:
    """Write a change: a shared backend checks the version and publishes to the other workers
    in the same step (Conflict when another worker won); a durable one writes ``auto_persist``
    states."""
    info = info_of(type(inst))
    meta = meta_of(inst)
    if backend.shared:
        # handed to the backend, the change may be stored whatever this task does: its own
        # task, shielded, so a cancel (the event's deadline, a disconnect) waits for the outcome
        pending = asyncio.get_running_loop().create_task(
            backend.commit(key, meta.version, version, full, info.ttl, sse)
        )
        try:
            current = await asyncio.shield(pending)
        except asyncio.CancelledError:
            current = await _outcome(inst, pending)
        if current is not None:
            raise Conflict(current)
    elif backend.durable and info.config.auto_persist:
        await backend.save(key, version, full, info.ttl)


async def _outcome(inst: Any, pending: asyncio.Task[Stored | None]) -> Stored | None:
    """The outcome of ``pending``, a commit whose caller was cancelled while it ran: waited
    for (however often cancelled meanwhile; the backend's own timeout bounds it), so the
    instance ends as the backend has it: committed, or rolled back by the caller. Then the
    cancel goes on (``_cancel_again``)."""
    while not pending.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait((pending,))
    stored = not pending.cancelled() and pending.exception() is None and pending.result() is None
    _cancel_again(inst, now=not stored)
    return pending.result()


def _cancel_again(inst: Any, now: bool) -> None:
    """The running task's cancel that waited for a commit's outcome goes on. The event
    deadline's comes again at the next turn of the loop unless the event's block ends first
    (``Deadlines.put_off``): an event whose commit went through replies with success, one
    whose commit failed with the backend's error, never with a 504 claiming a rollback. Any
    other cancel (a client gone, a server shutting down) is raised ``now`` when nothing is
    left to finish, else at the task's next await (or as the task ends), once the caller has
    finished the stored change here: never as a rollback of it, so this worker never holds
    less than the backend stored."""
    task = asyncio.current_task()
    assert task is not None
    store = meta_of(inst).store
    if store is not None and not store.event_deadlines.put_off(task):
        return  # the deadline's alone
    if now:
        raise asyncio.CancelledError
    task.uncancel()  # as many cancel requests as before: cancel() counts one more
    task.cancel()


async def settle(inst: Any, before: dict[str, Any]) -> str:
    """Commit what changed since ``before`` ("" when nothing did). On any failure the state is
    rolled back; on a Conflict it then takes what the other worker stored, and Conflict is
    raised for the caller to re-run or report."""
    changed = changed_since(inst, before)
    meta_of(inst).last_changed = changed
    if not changed:
        return ""
    try:
        return await commit(inst, changed)
    except Conflict as conflict:
        restore(inst, before)
        load_into(inst, conflict.stored)
        raise
    except BaseException:
        restore(inst, before)
        raise


#: what events return most often: never awaitable (skips inspect's ABC check)
_PLAIN_RESULTS = frozenset({type(None), str, list, tuple, dict})


async def run_change(
    inst: Any,
    body: Callable[..., Any],
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> tuple[Any, str]:
    """Run ``body(*args, **kwargs)`` (sync, or returning an awaitable) as one change of
    ``inst`` (whose lock the caller holds); re-run it when another worker changed the state
    first. Returns what ``body`` returned and the signal patch. The state is rolled back if
    ``body`` raises."""
    meta = meta_of(inst)
    if kwargs is None:
        kwargs = {}
    for _attempt in range(MAX_CONFLICT_RETRIES):
        before = snapshot(inst)
        meta.assigned = set()
        try:
            result = body(*args, **kwargs)
            if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
                result = await result
        except BaseException:
            restore(inst, before)
            raise
        finally:
            meta.echoed, meta.assigned = meta.assigned or set(), None
        try:
            return result, await settle(inst, before)
        except Conflict:
            continue
    raise BackendUnavailable("too many concurrent changes to this state; try again")


class Unfinished(Exception):
    """A plain event's body returned an awaitable (a ``def`` wrapping an ``async def``, say):
    ``change_now`` stops there, and ``await rest.finish(inst)``, under the instance's lock,
    does what is left of the change."""

    def __init__(self, awaitable: Any, before: dict[str, Any]) -> None:
        self.awaitable = awaitable
        self.before = before

    async def finish(self, inst: Any) -> tuple[Any, str, str]:
        meta = meta_of(inst)
        try:
            result = await self.awaitable
        except BaseException:
            restore(inst, self.before)
            raise
        finally:
            meta.echoed, meta.assigned = meta.assigned or set(), None
        return result, await settle(inst, self.before), echo_patch(inst)


def change_now(inst: Any, body: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Any, str, str]:
    """Run ``body(inst, **kwargs)`` as one change of ``inst`` and commit it, all in this turn
    of the event loop: (what it returned, its signal patch, its echo patch). Only for an idle
    instance (no lock held, no group waiting) whose commit waits for nothing
    (``commits_now``): nothing else can run on the instance meanwhile, so it needs no lock, and
    a time limit could never cut it. The state is rolled back if ``body`` or the commit
    raises. Raises Unfinished when ``body`` returned an awaitable."""
    meta = inst._fs  # meta_of, inline
    before = snapshot(inst)
    meta.assigned = set()
    try:
        result = body(inst, **kwargs)
    except BaseException:
        restore(inst, before)
        meta.echoed, meta.assigned = meta.assigned or set(), None
        raise
    if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
        raise Unfinished(result, before)  # still recording what is assigned
    echoed = meta.echoed = meta.assigned or set()
    meta.assigned = None
    changed = changed_since(inst, before)
    meta.last_changed = changed
    if not changed:
        return result, "", echo_patch(inst)
    try:
        signals = commit_now(inst, changed)
    except BaseException:
        restore(inst, before)
        raise
    if echoed and echoed.issubset(changed):  # echo_patch's first answer, without its call
        meta.echoed = set()
        return result, signals, ""
    return result, signals, echo_patch(inst)


class _Reply(asyncio.Future[tuple[Any, str, str]]):
    """A grouped event's reply. Its request's cancel (its deadline, a client gone) cancels it
    until its step runs; from then on the step's change may be committed with the group, so
    the cancel waits: the request's task gets its CancelledError when the reply is set, and
    takes the reply (``_Job.outcome``)."""

    __slots__ = ("ran",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self.ran = False

    def cancel(self, msg: Any | None = None) -> bool:
        return not self.ran and super().cancel(msg)


class _Job:
    """One event's step waiting for its instance's next group commit."""

    __slots__ = ("context", "error", "future", "reply", "step")

    def __init__(self, step: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self.step = step
        #: the step runs in its own request's context (current user, session, request)
        self.context = contextvars.copy_context()
        self.future = _Reply(loop)
        self.error: BaseException | None = None
        self.reply: tuple[Any, str, str] | None = None

    def outcome(self, inst: Any) -> tuple[Any, str, str]:
        """The reply for a request cancelled while it waited: the cancel (nothing of it ran)
        or, once its step ran, the group's outcome (unless the cancel goes on:
        ``_cancel_again``)."""
        if not self.future.cancelled():
            _cancel_again(inst, now=True)  # the group's task finishes its change
        return self.future.result()  # a cancelled future raises CancelledError


async def run_grouped(inst: Any, step: Callable[[], Any]) -> tuple[Any, str, str]:
    """Run the synchronous ``step()`` as one change of ``inst``: (what it returned, its signal
    patch, its echo patch). The state is rolled back if ``step`` raises.

    An idle instance runs it at once under its lock, as ``run_change``. A busy one (a change
    holds its lock, typically waiting for a shared backend's commit) adds it to the instance's
    next group instead: when the lock frees, the group's steps run one after another, each in
    its own request's context and rolled back alone if it raises, and are committed together,
    one version and one backend round trip for all. So a hot key costs one round trip per
    group rather than per event; no step is acknowledged before the commit that holds it."""
    meta = meta_of(inst)
    lock = locked(inst)
    if meta.group is None and not lock.locked():
        async with lock:
            result, signals = await run_change(inst, step)
            return result, signals, echo_patch(inst)
    loop = asyncio.get_running_loop()
    job = _Job(step, loop)
    group = meta.group
    if group is None or len(group) >= MAX_GROUP:  # a full group runs; the next one waits
        group = meta.group = [job]
        lead = loop.create_task(_lead(inst, group))
        _LEADERS.add(lead)  # the loop keeps only a weak reference to a task
        lead.add_done_callback(_LEADERS.discard)
    else:
        group.append(job)
    try:
        reply: tuple[Any, str, str] = await job.future
    except asyncio.CancelledError:
        reply = job.outcome(inst)
    return reply


#: failures of the backend, not of a step: every event of the group gets them at once
_SHARED_FAILURES = (BackendUnavailable, StoredStateError)

#: group commits under way
_LEADERS: set[asyncio.Task[None]] = set()


async def _lead(inst: Any, group: list[_Job]) -> None:
    """Wait for the instance's lock, close the group (later events open the next one), run and
    commit it. A task of its own, so no request's cancellation strands the others."""
    meta = meta_of(inst)
    try:
        async with locked(inst):
            if meta.group is group:
                meta.group = None
            await _commit_group(inst, group)
    except BaseException:  # cancelled (the loop is closing): nobody waits for a reply any more
        for job in group:
            job.future.ran = False  # cancelled even if its step ran: its request must not wait
            job.future.cancel()
        raise
    finally:
        if meta.group is group:
            meta.group = None


async def _commit_group(inst: Any, jobs: list[_Job]) -> None:
    """Run the steps of ``jobs`` in order and commit them as one change (re-run on a
    Conflict, as ``run_change``); then settle each job's future. Raises only what is not an
    Exception (a cancellation); each job gets its own error."""
    meta = meta_of(inst)
    for _attempt in range(MAX_CONFLICT_RETRIES):
        start = snapshot(inst)
        ran = [job for job in jobs if not job.future.done()]  # not those that gave up waiting
        try:
            for job in ran:
                await _run_step(inst, job)
            changed = changed_since(inst, start)
            meta.last_changed = changed
            if changed:
                await commit(inst, changed)
        except Conflict as conflict:
            restore(inst, start)
            load_into(inst, conflict.stored)
            continue
        except Exception as exc:
            restore(inst, start)
            if len(ran) > 1 and not isinstance(exc, _SHARED_FAILURES):
                # one step may be the cause (a state made too large, a value the save hook
                # refuses): each alone, so only that one fails
                for job in ran:
                    await _commit_group(inst, [job])
                return
            for job in ran:
                job.error = exc
        except BaseException:
            restore(inst, start)
            raise
        _settle_jobs(ran)
        return
    for job in jobs:
        job.error = BackendUnavailable("too many concurrent changes to this state; try again")
    _settle_jobs(jobs)


async def _run_step(inst: Any, job: _Job) -> None:
    """One job's step, in its request's context: its reply, or its error (rolled back)."""
    # run_change's body run, in the job's context (kept apart: one more coroutine per event
    # on run_change's path cost 4.7k instructions, bench/callgrind_event.py)
    if job.future.cancelled():  # its request gave up while an earlier step awaited
        return
    job.future.ran = True  # from now on its request waits for the group's outcome
    meta = meta_of(inst)
    before = snapshot(inst)
    meta.assigned = set()
    job.error = job.reply = None
    try:
        result = job.context.run(job.step)
        if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
            if inspect.iscoroutine(result):  # run it in its request's context too
                result = asyncio.get_running_loop().create_task(result, context=job.context)
            result = await _bounded(result, meta.store, job.step)
    except Exception as exc:
        restore(inst, before)
        job.error = exc
        return
    finally:
        meta.echoed, meta.assigned = meta.assigned or set(), None
    changed = changed_since(inst, before)
    meta.last_changed = changed
    job.reply = (result, _patch_of(inst, changed) if changed else "", echo_patch(inst))


async def _bounded(awaitable: Any, store: Any, step: Any) -> Any:
    """What a grouped step's awaitable returns, within the store's event timeout: the group
    holds the state's lock while it waits, and the step's request cannot be cancelled once its
    step ran (an awaitable that hung held the state for ever). Past the timeout it is cancelled
    and the step fails with EventTimeout (rolled back alone)."""
    seconds = store.event_deadlines.seconds if store is not None else None
    if seconds is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        name = getattr(getattr(step, "spec", None), "name", "?")
        raise EventTimeout(
            f"event {name!r} ran longer than {seconds:g}s: it was cancelled and rolled back"
        ) from None


def _settle_jobs(jobs: list[_Job]) -> None:
    for job in jobs:
        if job.future.done():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        elif job.reply is not None:
            job.future.set_result(job.reply)


def echo_patch(inst: Any) -> str:
    """A signal patch of the public fields the last change assigned without changing them
    ("" when none): the tab that ran the event gets them anyway, so ``self.draft = ""``
    clears its bound input even when the server's value already was empty."""
    meta = meta_of(inst)
    echoed = meta.echoed
    if not echoed:
        return ""
    meta.echoed = set()
    changed = meta.last_changed
    if echoed.issubset(changed):  # each assigned field changed: its patch carries it
        return ""
    names = [f for f in info_of(type(inst)).fields if f in echoed and f not in changed]
    if not names:
        return ""
    return _patch_of(inst, names)


class Mutation:
    """``async with state.mutate() as s:`` — the body is one change (it cannot be re-run, so a
    lost race with another worker is a BackendUnavailable, and the state is rolled back)."""

    __slots__ = ("before", "inst", "lock")

    def __init__(self, inst: Any) -> None:
        self.inst = inst
        self.before: dict[str, Any] = {}
        self.lock = locked(inst)

    async def __aenter__(self) -> Any:
        await self.lock.__aenter__()
        self.before = snapshot(self.inst)
        return self.inst

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None:
                restore(self.inst, self.before)
                return
            try:
                await settle(self.inst, self.before)
            except Conflict:
                raise BackendUnavailable(
                    "another worker changed this state first; try again"
                ) from None
        finally:
            await self.lock.__aexit__(None, None, None)


__all__ = [
    "Conflict",
    "Mutation",
    "Unfinished",
    "change_now",
    "changed_since",
    "commit",
    "commits_now",
    "echo_patch",
    "locked",
    "restore",
    "run_change",
    "run_grouped",
    "settle",
    "snapshot",
]
