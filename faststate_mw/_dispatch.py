"""Serving one event request: checks, argument binding, running the event, the reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from pydantic import ValidationError

from ._changes import (
    Conflict,
    Unfinished,
    change_now,
    echo_patch,
    locked,
    restore,
    run_change,
    run_grouped,
    settle,
    snapshot,
)
from ._config import StateInfo, info_of, meta_of
from ._context import RequestContext
from ._deadlines import Deadlines
from ._eventspec import EventSpec, Param
from ._exceptions import (
    ArgumentError,
    BackendUnavailable,
    EventFailed,
    EventTimeout,
    FastStateError,
    MissingIdentifier,
)
from ._http import (
    Reply,
    check_csrf,
    client_address,
    declares_json,
    elements_events,
    finish,
    known_query,
    method_allowed,
    parse_query,
    parse_signals,
    read_body,
    send_error,
    tab_of,
)
from ._metrics import outcome_of
from ._observe import EventRun, Observer
from ._recorder import public_key
from ._scopes import StateScope
from ._store import StateStore
from ._tracing import end_span
from ._types import Receive, Scope, Send

log = logging.getLogger("faststate_mw")

#: query names every event URL may carry besides its arguments (Datastar's GET signals)
_URL_NAMES = ("datastar",)


def bind_arguments(
    cls: type[Any],
    spec: EventSpec,
    query: dict[str, str],
    signals: dict[str, Any],
    info: StateInfo | None = None,
    qs: Any = None,
) -> dict[str, Any]:
    """Arguments come from the action URL first, then the state's own signals, then top-level
    signals. An argument named like a field that is not client-writable comes from the URL
    only: signals never carry a value into a server-owned field. A URL name that is neither an
    argument nor the state's id is a 422. ``info``: ``info_of(cls)``, if the caller has it.
    ``qs``: the raw query string ``query`` was parsed from, when :func:`parse_query` keeps it:
    what the URL binds is then kept for the next request with the same URL (the event's
    ``url_args``)."""
    if info is None:
        info = info_of(cls)
    identity = info.identity
    if type(qs) is bytes:  # (ASGI says bytes; anything else is not kept)
        kept = spec.url_args.get(qs)
        if kept is not None and kept[0] == identity:  # names checked, values validated
            kwargs = kept[1].copy()
            rest = kept[2]
            if rest:
                kwargs.update(spec.validate_args(_from_signals(rest, info, signals, {}), rest))
            return kwargs
    spec.check_names(query, _URL_NAMES if identity is None else (*_URL_NAMES, identity))
    raw: dict[str, Any] = {}
    unnamed: list[Param] = []  # arguments the URL does not name
    for p in spec.params:
        if p.name in query:
            raw[p.name] = query[p.name]
        else:
            unnamed.append(p)
    if unnamed:
        _from_signals(unnamed, info, signals, raw)
    kwargs = spec.validate_args(raw)
    if type(qs) is bytes and (known_query(qs) is query or not (qs or query)):
        spec.keep_url_args(qs, identity, query, kwargs)
    return kwargs


def _from_signals(
    params: Iterable[Param], info: StateInfo, signals: dict[str, Any], raw: dict[str, Any]
) -> dict[str, Any]:
    """``raw`` with the values of ``params`` (arguments the URL does not carry) that the
    signals carry."""
    ns = info.namespace
    own = signals.get(ns) if ns else signals
    if not isinstance(own, dict):
        own = {}
    owned = info.server_owned
    for p in params:
        if p.signal_name in owned:
            continue
        if p.signal_name in own:
            raw[p.name] = own[p.signal_name]
        elif ns and p.name in signals:
            raw[p.name] = signals[p.name]
    return raw


def event_ident(ident_name: str, query: dict[str, str]) -> str:
    """The component or record id (``ident_name``) an event's URL names."""
    ident = query.get(ident_name)
    if not ident:
        raise MissingIdentifier(f"this event needs a {ident_name} in its URL")
    return ident


class time_limit:  # named like the function it replaces: ``async with time_limit(...)``
    """Cancel the block after ``deadlines.seconds``: an EventTimeout (504) instead. A class
    rather than an ``@asynccontextmanager``: it runs on every event."""

    __slots__ = ("_deadlines", "_task", "name")

    def __init__(self, deadlines: Deadlines | None, name: str) -> None:
        self._deadlines = deadlines
        self.name = name
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        if self._deadlines is not None:
            self._task = self._deadlines.watch()

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool | None:
        deadlines = self._deadlines
        if deadlines is None:
            return None
        task = self._task
        try:
            if kind is asyncio.CancelledError and deadlines.expired(task):
                raise EventTimeout(
                    f"event {self.name!r} ran longer than {deadlines.seconds:g}s: it was "
                    "cancelled and rolled back"
                ) from None
        finally:
            deadlines.done(task)
        return None


async def run_event(
    inst: Any,
    spec: EventSpec,
    kwargs: dict[str, Any],
    reply: Reply,
    user: Any,
    live: bool,
    deadlines: Deadlines | None = None,
) -> str:
    """Run the event under the instance's lock and return the SSE text of its reply; a
    generator event streams its steps through ``reply``. On an exception the state is rolled
    back and the exception re-raised. ``live``: the sender's tab gets signal patches through
    its stream, so the reply carries only elements (never the same patch twice). ``deadlines``:
    an async event (waiting for the lock included), or each step of a generator event, that
    runs longer is cancelled and rolled back, its lock released (EventTimeout)."""
    gen = spec.is_async_gen or spec.is_gen
    if not (gen or spec.is_coroutine):
        meta = inst._fs  # meta_of, inline
        lock = meta.lock
        if meta.now and meta.group is None and (lock is None or not lock.locked()):
            # idle, and its commit waits for nothing: run and commit it in this turn of the
            # loop (nothing to lock, nothing a time limit could cut)
            if spec.auth.owner_only:
                _check_owner(spec, user, inst)
            try:
                result, signals, echo = change_now(inst, spec.func, kwargs)
            except Unfinished as rest:  # it returned an awaitable: the rest as any change
                async with time_limit(deadlines, spec.name), locked(inst):
                    result, signals, echo = await rest.finish(inst)
        else:
            # a plain event may be committed in one group with others on a busy instance
            step = _Step(inst, spec, kwargs, user)
            async with time_limit(deadlines, spec.name):
                result, signals, echo = await run_grouped(inst, step)
        text = ("" if live else signals) + echo
        return text if result is None else text + elements_events(result)
    async with time_limit(None if gen else deadlines, spec.name), locked(inst):
        if spec.auth.owner_only:  # under the lock: the owner cannot change before the event runs
            _check_owner(spec, user, inst)
        if gen:
            return await _run_generator(inst, spec, kwargs, reply, live, deadlines)
        result, signals = await run_change(inst, spec.func, (inst,), kwargs)
        return ("" if live else signals) + echo_patch(inst) + elements_events(result)


class _Step:
    """A plain event's body with its owner check, as one step of a change (run under the
    instance's lock: the owner cannot change before the event runs)."""

    __slots__ = ("inst", "kwargs", "spec", "user")

    def __init__(self, inst: Any, spec: EventSpec, kwargs: dict[str, Any], user: Any) -> None:
        self.inst, self.spec, self.kwargs, self.user = inst, spec, kwargs, user

    def __call__(self) -> Any:
        spec = self.spec
        if spec.auth.owner_only:
            _check_owner(spec, self.user, self.inst)
        return spec.func(self.inst, **self.kwargs)


def _check_owner(spec: EventSpec, user: Any, inst: Any) -> None:
    """An ``owner_only`` event's check, run under the instance's lock (the owner cannot change
    before the event runs)."""
    spec.auth.check(user, state=inst, key=meta_of(inst).key or "", event=spec.name)


async def _run_generator(
    inst: Any,
    spec: EventSpec,
    kwargs: dict[str, Any],
    reply: Reply,
    live: bool,
    deadlines: Deadlines | None = None,
) -> str:
    """Each step between yields is one change (saved, versioned, broadcast); an exception
    rolls back only the step that raised it. A step cannot be re-run, so losing a race with
    another worker ends the event with a 503."""
    before = snapshot(inst)
    gen = spec.func(inst, **kwargs)
    try:
        while True:
            try:
                if spec.is_async_gen:
                    async with time_limit(deadlines, spec.name):
                        item = await gen.__anext__()
                else:
                    item = next(gen)
            except (StopAsyncIteration, StopIteration):
                break
            signals = await settle(inst, before)
            before = snapshot(inst)  # committed: a cancel while the step streams keeps it
            text = ("" if live else signals) + elements_events(item)
            if text:
                # under the lock: a client that stops reading must not hold the state
                async with time_limit(deadlines, spec.name):
                    await reply.chunk(text.encode())
    except Conflict:
        raise  # settle() already took what the other worker stored
    except BaseException:
        restore(inst, before)
        raise
    finally:
        if spec.is_async_gen:
            await gen.aclose()
        else:
            gen.close()
    signals = await settle(inst, before)
    return "" if live else signals


def event_failure(exc: BaseException, spec: EventSpec, cls: type[Any]) -> FastStateError:
    """Map an exception raised by the event body to a client-safe error."""
    if isinstance(exc, FastStateError):
        return exc
    if isinstance(exc, Conflict):  # a generator step lost a race: its step was rolled back
        return BackendUnavailable(f"event {spec.name!r} raced another worker; try again")
    if isinstance(exc, ValidationError):
        errors: Iterable[Any] = exc.errors(include_url=False, include_input=False)
        detail = [{"field": ".".join(map(str, e["loc"])), "error": e["msg"]} for e in errors]
        return ArgumentError(f"event {spec.name!r} produced an invalid value", detail=detail)
    log.exception("event %s.%s failed", cls.__name__, spec.name)
    return EventFailed(f"event {spec.name!r} failed; the state was left unchanged")


class EventRoute:
    """One (state, event) served at a path, with what serving it asks on every request that
    is the same each time (read once, when the path is first served)."""

    __slots__ = ("auth", "cls", "info", "scope_rule", "spec", "state_auth", "user_first")

    def __init__(self, info: StateInfo, spec: EventSpec) -> None:
        self.info = info
        self.spec = spec
        self.cls: type[Any] = info.cls
        self.auth = spec.auth
        self.state_auth = info.auth
        #: a custom scope's rule is looked up on each request (it may be registered again)
        self.scope_rule = info.rule if isinstance(info.scope, StateScope) else None
        #: whether the user is loaded up front (its rules, its scope's keys), whatever loader
        self.user_first = (
            spec.auth.requires_auth
            or info.auth.requires_auth
            or (self.scope_rule is not None and self.scope_rule.needs_user)
        )


async def serve_event(
    scope: Scope,
    receive: Receive,
    send: Send,
    ctx: RequestContext,
    store: StateStore,
    route: EventRoute,
    max_body: int,
    sets_cookie: bool = False,
    run: EventRun | None = None,
) -> None:
    """Serve one event request, from the raw ASGI messages to the bytes of the reply; then
    log, count, trace and record it (see ``_observe``). ``sets_cookie``: the reply's start
    sets the cookie of a session id minted on the way (else ``send`` does). ``run``: given by
    ``_traced``, inside the event's span; the event is then told about there.

    One coroutine, without an EventRun, for the common event that nobody observes: each
    level of coroutine costs more than the checks it would save."""
    observer = store.observer
    started = 0.0
    if run is None:
        started = perf_counter()
        tracing = observer.tracing
        if started >= tracing.due:  # a tracer found, or time to look for one
            tracer = tracing.tracer(started)
            if tracer is not None:
                await _traced(
                    tracer, started, scope, receive, send, ctx, store, route, max_body, sets_cookie
                )
                return
    cls = route.cls
    spec = route.spec
    status = 200
    run_key = ""
    text = ""
    reply = Reply(send, ctx if sets_cookie else None)
    try:
        method = scope["method"]
        if method != spec.method:
            method_allowed(spec.name, spec.method, method)
        hdrs = dict(scope["headers"])
        json_body = declares_json(hdrs)
        # before the limits: a page on another site that makes a visitor's browser send
        # events, refused here, spends nothing of that visitor's (and their address's) buckets
        check_csrf(scope, hdrs, method, json_body)
        cookie = ctx.session_cookie()  # a signed id: no user needed to read it
        store.event_limiter.check(cookie[0] if cookie else None, client_address(scope))
        body = await read_body(receive, hdrs, max_body, store.body_deadlines)
        query = parse_query(scope)
        signals = parse_signals(json_body, method, body, query)
        scope_rule = route.scope_rule
        if scope_rule is None:
            scope_rule = route.info.rule
        try:
            # Load the user up front when anything may need it; otherwise a sync loader runs
            # only if the event asks (current_user()), which keeps anonymous public events cheap.
            user = None
            if (
                route.user_first
                or ctx.owner.async_user_loader
                or (route.scope_rule is None and scope_rule.needs_user)
            ):
                user = await ctx.load_user()
                # sign-in, permissions, roles: before any instance is made; an event's denial
                # is logged at WARNING even for anonymous users (a page visit's only at INFO)
                state_rule = route.state_auth
                if state_rule.requires_auth:
                    state_rule.check(user, key=cls.__name__, event=spec.name)
                rule = route.auth
                if rule.requires_auth:
                    rule.check(user, key=cls.__name__, event=spec.name)
            # the instance the URL's id picks (no new ids); a live one without awaiting, and
            # no refresh from a shared backend: the commit's version check catches a stale
            # copy. Its key as store.key_for makes it, whose state rule check was just made.
            ident_name = scope_rule.identity
            ident = None if ident_name is None else event_ident(ident_name, query)
            key = scope_rule.key(route.info.name, ctx, ident)
            inst = store.cached(key, cls, ctx)
            if inst is None:
                inst = await store.create(key, cls, ctx, ident)
            run_key = key
            kwargs = bind_arguments(
                cls, spec, query, signals, route.info, scope.get("query_string")
            )
            sid = ctx.session_id(create=False)  # (reads the user if the cookie is bound)
            live = store.hub.live_tab(tab_of(signals), sid, key)
            if sid is not None and sid in store.hub.sessions:
                # the session's open streams follow its user as this request has it (a role
                # taken away): what they may no longer see stops, as after a page request
                store.hub.recheck_session(sid, ctx.user)
        except FastStateError:
            raise
        except Exception as exc:  # the app's code failed on what a client sent: its user
            # loader, a scope's owner(), a load hook (or what it returned), an argument's own
            # validator
            log.exception("event %s.%s failed before it ran", cls.__name__, spec.name)
            raise EventFailed(f"event {spec.name!r} failed; the state was left unchanged") from exc
        try:
            text = await run_event(inst, spec, kwargs, reply, user, live, store.event_deadlines)
        except Exception as exc:
            raise event_failure(exc, spec, cls) from exc
        await finish(reply, text)
    except FastStateError as err:
        status = err.status
        await send_error(scope, reply, err)
        if reply.streaming:
            await reply.end()
    if run is not None:  # in _traced's span, which tells about the event
        run.key, run.status, run.reply = run_key, status, text
    elif status >= 400 or not observer.quiet():
        run = EventRun(cls.__name__, spec.name, run_key, status, text)
        await _tell(observer, ctx, run, perf_counter() - started)


async def _traced(
    tracer: Any,
    started: float,
    scope: Scope,
    receive: Receive,
    send: Send,
    ctx: RequestContext,
    store: StateStore,
    route: EventRoute,
    max_body: int,
    sets_cookie: bool,
) -> None:
    """:func:`serve_event` in an OpenTelemetry span, then told about."""
    run = EventRun(route.cls.__name__, route.spec.name)
    with tracer.start_as_current_span(
        f"{run.state}.{run.event}",
        attributes={"faststate.state": run.state, "faststate.event": run.event},
    ) as span:
        await serve_event(scope, receive, send, ctx, store, route, max_body, sets_cookie, run)
        end_span(span, public_key(run.key), outcome_of(run.status), run.status)
    observer = store.observer
    if run.status >= 400 or not observer.quiet():
        await _tell(observer, ctx, run, perf_counter() - started)


async def _tell(observer: Observer, ctx: RequestContext, run: EventRun, seconds: float) -> None:
    """Log, count and record a served event, naming its user when that is told."""
    user = ctx.cached_user()
    if user is None and observer.names_user(run.status):
        try:  # the event did not need its user, but its log line or record does
            user = await ctx.load_user()
        except Exception:
            user = None
    run.user_id = user.id if user is not None else None
    observer.event_done(run, seconds)


__all__ = ["EventRoute", "bind_arguments", "serve_event"]
