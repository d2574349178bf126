"""Serving one event request: checks, argument binding, serialized execution, the SSE reply."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from datastar_py import ServerSentEventGenerator as SSE
from pydantic import ValidationError

from .backends.base import Stored
from .exceptions import (
    ArgumentError,
    BackendUnavailable,
    CSRFError,
    EventFailed,
    FastStateError,
    InvalidPayload,
    MethodNotAllowed,
    MissingIdentifier,
    PayloadTooLarge,
)
from .scopes import StateScope
from .state import ERROR_SIGNAL, State

#: the signal that tells the server which tab sent an event (see stream.py)
TAB_SIGNAL = "faststate"


def tab_of(signals: dict[str, Any]) -> str | None:
    block = signals.get(TAB_SIGNAL)
    tab = block.get("tab") if isinstance(block, dict) else None
    return tab if isinstance(tab, str) else None


if TYPE_CHECKING:
    from .broadcast import Hub
    from .context import RequestContext, UserContext
    from .events import EventSpec
    from .types import Receive, Scope, Send

log = logging.getLogger("faststate_mw")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Reply:
    """Sends one response straight over ASGI (no streaming machinery for one-shot replies)."""

    __slots__ = ("send", "streaming")

    def __init__(self, send: Send) -> None:
        self.send = send
        #: True once a streamed reply has begun (generator events); it must then be ended
        self.streaming = False

    async def full(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        hdrs = [*headers, (b"content-length", str(len(body)).encode())]
        await self.send({"type": "http.response.start", "status": status, "headers": hdrs})
        await self.send({"type": "http.response.body", "body": body})

    async def chunk(self, body: bytes) -> None:
        if not self.streaming:
            await self.send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            self.streaming = True
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b""})


def header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


def wants_sse(scope: Scope) -> bool:
    """A Datastar browser request: errors must come as a 200 SSE reply or the page never sees
    them."""
    if header(scope, b"datastar-request") is None:
        return False
    accept = header(scope, b"accept") or b""
    return b"text/event-stream" in accept


async def send_error(scope: Scope, reply: Reply, err: FastStateError) -> None:
    """Errors reach a Datastar page as the ``$_faststate`` signal in a 200 SSE reply, and an API
    client as the real status with a JSON body. Either way there is no traceback."""
    if reply.streaming:
        # A generator event already streamed: report inside the stream, then close it.
        await reply.chunk(_error_event(err).encode())
        return
    code = err.code.encode()
    if wants_sse(scope):
        body = _error_event(err).encode()
        headers = [*SSE_HEADERS, (b"x-faststate-error", code)]
        await reply.full(200, headers, body)
    else:
        body = json.dumps({"error": err.to_dict()}, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"), (b"x-faststate-error", code)]
        await reply.full(err.status, headers, body)


def _error_event(err: FastStateError) -> str:
    return str(
        SSE.patch_signals(
            {ERROR_SIGNAL: {"error": err.message, "status": err.status, "code": err.code}}
        )
    )


def check_csrf(scope: Scope, hdrs: dict[bytes, bytes], method: str) -> None:
    """State-changing events need Datastar's header with a JSON body, or a same-origin request."""
    if method in _SAFE_METHODS:
        return
    if b"datastar-request" in hdrs and _content_type(hdrs) == b"application/json":
        return
    if same_origin(scope, hdrs):
        return
    raise CSRFError(
        "cross-site request rejected: send the 'Datastar-Request' header with a JSON body, "
        "or make the request from the same origin"
    )


def _content_type(hdrs: dict[bytes, bytes]) -> bytes:
    return hdrs.get(b"content-type", b"").split(b";")[0].strip()


def same_origin(scope: Scope, hdrs: dict[bytes, bytes]) -> bool:
    origin = hdrs.get(b"origin")
    if origin is None:
        return hdrs.get(b"sec-fetch-site") == b"same-origin"
    host = hdrs.get(b"host")
    if host is None:
        return False
    scheme = scope.get("scheme", "http")
    return origin.decode("latin-1") == f"{scheme}://{host.decode('latin-1')}"


async def read_body(receive: Receive, hdrs: dict[bytes, bytes], limit: int) -> bytes:
    length = hdrs.get(b"content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise PayloadTooLarge(f"request body over the {limit}-byte limit")
        except ValueError:
            raise InvalidPayload("invalid Content-Length header") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise PayloadTooLarge(f"request body over the {limit}-byte limit")
        chunks.append(body)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def parse_signals(
    hdrs: dict[bytes, bytes], method: str, body: bytes, query: dict[str, str]
) -> dict[str, Any]:
    """The Datastar signals a request carries (JSON body, or ``?datastar=`` for GET/DELETE)."""
    if method in ("GET", "DELETE"):
        raw: bytes | str | None = query.pop("datastar", None)
    else:
        if not body.strip():
            return {}
        if _content_type(hdrs) != b"application/json":
            raise InvalidPayload("the request body must be JSON (Content-Type: application/json)")
        raw = body
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPayload("malformed JSON in the request's signals") from None
    if not isinstance(data, dict):
        raise InvalidPayload("the request's signals must be a JSON object")
    return data


def parse_query(scope: Scope) -> dict[str, str]:
    qs: bytes = scope.get("query_string", b"")
    if not qs:
        return {}
    text = qs.decode("latin-1")
    if "%" not in text and "+" not in text:  # the common case: plain ids and numbers
        out = {}
        for part in text.split("&"):
            if part:
                name, _, value = part.partition("=")
                out[name] = value
        return out
    try:
        return dict(parse_qsl(text, keep_blank_values=True))
    except ValueError:
        raise InvalidPayload("malformed query string") from None


def bind_arguments(
    cls: type[State], spec: EventSpec, query: dict[str, str], signals: dict[str, Any]
) -> dict[str, Any]:
    """Arguments come from the action URL first, then the state's own signals, then top-level
    signals. Server-owned fields are never read from signals."""
    ns = cls.signal_namespace()
    own = signals.get(ns) if ns else signals
    if not isinstance(own, dict):
        own = {}
    owned = cls.__faststate_server_owned__
    raw: dict[str, Any] = {}
    for p in spec.params:
        if p.name in query:
            raw[p.name] = query[p.name]
        elif p.signal_name in owned:
            continue
        elif p.signal_name in own:
            raw[p.name] = own[p.signal_name]
        elif ns and p.name in signals:
            raw[p.name] = signals[p.name]
    return spec.validate_args(raw)


async def resolve_for_event(cls: type[State], ctx: RequestContext, query: dict[str, str]) -> State:
    """The instance an event targets: the URL's component or record id picks it (no new ids)."""
    from .registry import state_registry

    ident_name = state_registry.config_for(cls).rule.identity
    ident = query.get(ident_name) if ident_name is not None else None
    if ident_name is not None and not ident:
        raise MissingIdentifier(f"this event needs a {ident_name} in its URL")
    # no refresh from a shared backend here: the commit's version check catches a stale copy
    return await state_registry.aresolve(cls, ctx, ident, refresh=False)


_USERLESS_SCOPES = frozenset(
    {StateScope.GLOBAL, StateScope.SESSION, StateScope.COMPONENT, StateScope.RECORD}
    | {StateScope.TEMPORARY}
)


def _needs_user(cls: type[State]) -> bool:
    """Whether resolving ``cls`` may ask for the user (its rule, or a user-keyed scope)."""
    from .registry import state_registry

    config = state_registry.config_for(cls)
    return config.auth.active or config.scope not in _USERLESS_SCOPES


def is_html(value: Any) -> bool:
    return isinstance(value, str) or hasattr(value, "__html__") or hasattr(value, "__ft__")


def to_html(value: Any) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "__html__"):
        return str(value.__html__())
    from fastcore.xml import to_xml

    return str(to_xml(value))


def elements_events(returned: Any) -> str:
    """``datastar-patch-elements`` events for HTML an event returned (or yielded)."""
    if returned is None:
        return ""
    if isinstance(returned, (list, tuple)) and all(is_html(r) for r in returned):
        return "".join(SSE.patch_elements(to_html(r)) for r in returned)
    if is_html(returned):
        return str(SSE.patch_elements(to_html(returned)))
    return ""


class Conflict(Exception):
    """Another worker changed the state first (shared backends): re-run on what it stored."""

    def __init__(self, stored: Stored) -> None:
        self.stored = stored


#: how often an event is re-run when other workers keep changing its state first
MAX_CONFLICT_RETRIES = 100


async def commit(inst: State, changed: list[str]) -> str:
    """A change is final: run the ``save`` hook, store it in the backend (a shared backend
    checks the version and publishes to other workers in the same step), bump the key's
    version, serialize the patch once and hand it to every local subscriber. Returns the patch
    for the caller's own reply. Raises Conflict when another worker won the race."""
    from .registry import state_registry

    await save(inst)
    key = inst._fs.key
    version = inst._fs.version + 1
    data = inst.model_dump(mode="json", include=set(changed))
    text = str(SSE.patch_signals(inst.signals(data)))
    sse = text[:-1].encode()
    if key is not None:
        backend = state_registry.backend
        config = state_registry.config_for(type(inst))
        if backend.shared:
            current = await backend.commit(
                key, inst._fs.version, version, inst.model_dump_json(), config.effective_ttl, sse
            )
            if current is not None:
                raise Conflict(current)
        elif backend.durable and config.auto_persist:
            await backend.save(key, version, inst.model_dump_json(), config.effective_ttl)
    inst._fs.version = version
    if key is not None:
        state_registry.hub.publish(key, version, sse)
    return text


async def save(inst: State) -> None:
    """Run the state's ``save`` hook, if it has one (sync or async)."""
    from .registry import state_registry

    hook = state_registry.config_for(type(inst)).save
    if hook is not None:
        result = hook(inst)
        if inspect.isawaitable(result):
            await result


async def run_event(
    inst: State,
    spec: EventSpec,
    kwargs: dict[str, Any],
    reply: Reply,
    user: UserContext | None = None,
    live: bool = False,
) -> str:
    """Run the event under the instance's lock and return the SSE text of its reply; a
    generator event streams its steps through ``reply``. On an exception the state is rolled
    back and the exception re-raised. ``live``: the sender's tab gets signal patches through
    its stream, so the reply carries only elements (never the same patch twice)."""
    lock = inst._fs.lock
    if lock is None:
        lock = inst._fs.lock = asyncio.Lock()
    async with lock:
        if spec.auth.owner_only:  # under the lock: the owner cannot change before the event runs
            spec.auth.check(user, state=inst, key=inst.key or "", event=spec.name)
        if spec.is_async_gen or spec.is_gen:
            return await _run_generator(inst, spec, kwargs, reply, live)
        for _attempt in range(MAX_CONFLICT_RETRIES):
            before = inst._snapshot()
            try:
                result = spec.func(inst, **kwargs)
                if spec.is_coroutine or (result is not None and inspect.isawaitable(result)):
                    result = await result
                changed = inst._changed_since(before)
                signals = await commit(inst, changed) if changed else ""
            except Conflict as conflict:
                # another worker changed it first: run again on what it stored
                from .registry import load_into

                inst._restore(before)
                load_into(inst, conflict.stored)
                continue
            except BaseException:
                inst._restore(before)
                raise
            return ("" if live else signals) + elements_events(result)
        raise BackendUnavailable(f"{inst.key}: too many concurrent changes, try again")


async def _run_generator(
    inst: State, spec: EventSpec, kwargs: dict[str, Any], reply: Reply, live: bool
) -> str:
    """Each step between yields is committed (saved, versioned, broadcast) on its own; an
    exception rolls back only the step that raised it."""
    before = inst._snapshot()
    gen = spec.func(inst, **kwargs)
    try:
        while True:
            try:
                item = await gen.__anext__() if spec.is_async_gen else next(gen)
            except (StopAsyncIteration, StopIteration):
                break
            text = await _step(inst, before, live) + elements_events(item)
            if text:
                await reply.chunk(text.encode())
            before = inst._snapshot()
    except BaseException:
        inst._restore(before)
        raise
    finally:
        if spec.is_async_gen:
            await gen.aclose()
        else:
            gen.close()
    return await _step(inst, before, live)


async def _step(inst: State, before: dict[str, Any], live: bool) -> str:
    changed = inst._changed_since(before)
    if not changed:
        return ""
    signals = await commit(inst, changed)
    return "" if live else signals


async def finish(reply: Reply, text: str) -> None:
    if reply.streaming:
        if text:
            await reply.chunk(text.encode())
        await reply.end()
    elif text:
        await reply.full(200, SSE_HEADERS, text.encode())
    else:
        await reply.full(204, [], b"")


def event_failure(exc: BaseException, spec: EventSpec, cls: type[State]) -> FastStateError:
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


def method_allowed(spec: EventSpec, method: str) -> None:
    if method != spec.method and not (method == "HEAD" and spec.method == "GET"):
        raise MethodNotAllowed(f"event {spec.name!r} accepts {spec.method}, not {method}")


async def serve_event(
    scope: Scope,
    receive: Receive,
    send: Send,
    ctx: RequestContext,
    cls: type[State],
    spec: EventSpec,
    max_body: int,
    hub: Hub,
) -> None:
    reply = Reply(send)
    try:
        method = scope["method"]
        method_allowed(spec, method)
        hdrs = dict(scope["headers"])
        check_csrf(scope, hdrs, method)
        body = await read_body(receive, hdrs, max_body)
        query = parse_query(scope)
        signals = parse_signals(hdrs, method, body, query)
        rule = spec.auth
        # Load the user up front when anything may need it; otherwise a sync loader runs only
        # if the event asks (current_user()), which keeps anonymous public events cheap.
        user = None
        if ctx.owner.async_user_loader or rule.active or _needs_user(cls):
            user = await ctx.load_user()
        if rule.active:  # sign-in, permissions, roles: before any instance is made
            rule.check(user, key=cls.__name__, event=spec.name)
        inst = await resolve_for_event(cls, ctx, query)
        kwargs = bind_arguments(cls, spec, query, signals)
        live = hub.live_tab(tab_of(signals), ctx.session_id(create=False), inst.key or "")
        try:
            text = await run_event(inst, spec, kwargs, reply, user, live)
        except Exception as exc:
            raise event_failure(exc, spec, cls) from exc
        await finish(reply, text)
    except FastStateError as err:
        await send_error(scope, reply, err)
        if reply.streaming:
            await reply.end()
