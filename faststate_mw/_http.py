"""HTTP plumbing for one request: headers, body, query and signals, CSRF, and writing replies.

Everything here works on the raw ASGI scope and messages; nothing knows about State classes.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import json.encoder
from typing import Any
from urllib.parse import parse_qsl

from datastar_py import ServerSentEventGenerator as SSE

from . import _untrusted as untrusted
from ._context import RequestContext
from ._deadlines import Deadlines
from ._exceptions import (
    CSRFError,
    FastStateError,
    InvalidPayload,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
)
from ._types import Receive, Scope, Send

#: the signal that carries errors to the page (leading underscore: Datastar never sends it back)
ERROR_SIGNAL = "_faststate"
ERROR_SIGNAL_INITIAL: dict[str, Any] = {"error": "", "status": 0, "code": ""}
#: the signal that tells the server which tab sent an event (see _streams.py)
TAB_SIGNAL = "faststate"


def tab_of(signals: dict[str, Any]) -> str | None:
    """The tab id an event's signals carry (None when absent or not a string)."""
    block = signals.get(TAB_SIGNAL)
    if not isinstance(block, dict):
        return None
    tab = block.get("tab")
    return tab if isinstance(tab, str) else None


SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Reply:
    """Sends one response straight over ASGI (no streaming machinery for one-shot replies).
    ``ctx``: the request's context, when the reply's start must set the cookie of a session id
    minted while it was served (as the middleware's ``send`` wrapper of a page does)."""

    __slots__ = ("ctx", "send", "streaming")

    def __init__(self, send: Send, ctx: RequestContext | None = None) -> None:
        self.send = send
        self.ctx = ctx
        #: True once a streamed reply has begun (generator events); it must then be ended
        self.streaming = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        ctx = self.ctx
        if ctx is not None and ctx.new_session_id is not None:
            headers = [*headers, await ctx.take_session_cookie()]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def full(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await self.start(status, [*headers, (b"content-length", str(len(body)).encode())])
        await self.send({"type": "http.response.body", "body": body})

    async def chunk(self, body: bytes) -> None:
        if not self.streaming:
            await self.start(200, SSE_HEADERS)
            self.streaming = True
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b""})


def client_address(scope: Scope) -> str | None:
    """The client's address as the server reports it (the key of per-address limits). An IPv6
    client is its /64: a host is given one and may send from any address in it."""
    client = scope.get("client")
    if not client:
        return None
    host = str(client[0])
    if ":" not in host:
        return host  # IPv4, or a name
    return _ipv6_client(host)


@functools.lru_cache(maxsize=4096)
def _ipv6_client(host: str) -> str:
    """The /64 of an IPv6 address (an IPv4-mapped one: its IPv4 address); anything that does
    not parse as IPv6, as it is."""
    try:
        ip = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


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
        headers = [*SSE_HEADERS, (b"x-faststate-error", code), *err.headers()]
        await reply.full(200, headers, body)
    else:
        body = json.dumps({"error": err.to_dict()}, separators=(",", ":")).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-faststate-error", code),
            *err.headers(),
        ]
        await reply.full(err.status, headers, body)


def _error_event(err: FastStateError) -> str:
    return patch_signals(
        {ERROR_SIGNAL: {"error": err.message, "status": err.status, "code": err.code}}
    )


#: one encoder for every signal patch, set as datastar_py's ``json.dumps(signals,
#: separators=(",", ":"))``, which builds a new encoder on every call
_SIGNALS_ENCODER = json.JSONEncoder(separators=(",", ":"))
_SIGNALS_JSON = _SIGNALS_ENCODER.encode
#: what ``_SIGNALS_JSON`` runs, without its two Python frames: json's C encoder as
#: ``JSONEncoder.iterencode(o, _one_shot=True)`` makes it (None without the C accelerator).
#: Made once, without circular-reference markers, it keeps no state from call to call (what
#: it encodes never holds a cycle: JSON-mode model dumps and error dicts).
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Any = _C_MAKE_ENCODER and _C_MAKE_ENCODER(
    None,
    _SIGNALS_ENCODER.default,
    json.encoder.encode_basestring_ascii,
    None,
    ":",
    ",",
    False,
    False,
    True,
)


def patch_signals(signals: dict[str, Any]) -> str:
    """One ``datastar-patch-signals`` event, byte for byte what datastar_py's
    ``ServerSentEventGenerator.patch_signals(signals)`` writes: its JSON escapes every character
    outside printable ASCII, so it is one ``data:`` line."""
    text = _SIGNALS_JSON(signals) if _C_ENCODE is None else "".join(_C_ENCODE(signals, 0))
    return f"event: datastar-patch-signals\ndata: signals {text}\n\n"


def check_csrf(scope: Scope, hdrs: dict[bytes, bytes], method: str, json_body: bool) -> None:
    """State-changing events need Datastar's header with a JSON body, or a same-origin request.
    ``json_body``: what :func:`declares_json` says of ``hdrs``."""
    if method in _SAFE_METHODS:
        return
    if json_body and b"datastar-request" in hdrs:
        return
    if same_origin(scope, hdrs):
        return
    raise CSRFError(
        "cross-site request rejected: send the 'Datastar-Request' header with a JSON body, "
        "or make the request from the same origin"
    )


def declares_json(hdrs: dict[bytes, bytes]) -> bool:
    """Whether the request's Content-Type is JSON (``application/json``, parameters allowed):
    read once per event, for the CSRF check and the signals."""
    value = hdrs.get(b"content-type", b"")
    return (
        value == b"application/json"  # the common case, as Datastar sends it
        or value.partition(b";")[0].strip() == b"application/json"
    )


def same_origin(scope: Scope, hdrs: dict[bytes, bytes]) -> bool:
    origin = hdrs.get(b"origin")
    if origin is None:
        return hdrs.get(b"sec-fetch-site") == b"same-origin"
    host = hdrs.get(b"host")
    if host is None:
        return False
    scheme = scope.get("scheme", "http")
    return origin.decode("latin-1") == f"{scheme}://{host.decode('latin-1')}"


async def read_body(
    receive: Receive, hdrs: dict[bytes, bytes], limit: int, deadlines: Deadlines
) -> bytes:
    """The request body: 413 over ``limit`` bytes, 408 when it takes over
    ``deadlines.seconds`` to arrive (a body that trickles in cannot hold the request open)."""
    length = hdrs.get(b"content-length")
    declared = -1
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise InvalidPayload("invalid Content-Length header") from None
        if declared > limit:
            raise PayloadTooLarge(f"request body over the {limit}-byte limit")
    task = deadlines.watch()
    try:
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
            # the last message, or the last byte Content-Length declares (granian sends the
            # body with more_body, then an empty last message: one more trip through the loop)
            if not message.get("more_body", False) or size == declared:
                if not chunks and type(body) is bytes:
                    return body  # all in one message (what b"".join would return)
                chunks.append(body)
                break
            chunks.append(body)
        return b"".join(chunks)
    except asyncio.CancelledError:
        if deadlines.expired(task):
            raise RequestTimeout(
                f"the request body did not arrive within {deadlines.seconds:g}s"
            ) from None
        raise
    finally:
        deadlines.done(task)


def parse_signals(
    json_body: bool, method: str, body: bytes, query: dict[str, str]
) -> dict[str, Any]:
    """The Datastar signals a request carries (JSON body, or ``?datastar=`` for GET/DELETE).
    ``json_body``: whether its Content-Type is JSON (:func:`declares_json`)."""
    if method in ("GET", "DELETE"):
        raw: bytes | str | None = query.pop("datastar", None)
    else:
        if not body.strip():
            return {}
        if not json_body:
            raise InvalidPayload("the request body must be JSON (Content-Type: application/json)")
        raw = body
    if not raw:
        return {}
    data = untrusted.loads(raw, "the request's signals")
    if not isinstance(data, dict):
        raise InvalidPayload("the request's signals must be a JSON object")
    return data


#: query strings already parsed, by their raw bytes: an event's URL is written once in the page
#: and sent again and again. Bounded: emptied when full (a client sending ever new ones only
#: makes the others parsed again; one step, safe between threads); never one naming
#: ``datastar`` (:func:`parse_signals` takes it out of the dict)
_QUERIES: dict[bytes, dict[str, str]] = {}
QUERIES_KEPT = 256
#: a longer query string is parsed anew each time
QUERY_KEPT_BYTES = 256
#: the parsed dict of a query string :func:`parse_query` keeps (None when it keeps none)
known_query = _QUERIES.get


def parse_query(scope: Scope) -> dict[str, str]:
    """The query's names and values (the last value of a repeated name). The dict may be one
    shared by every request with the same query string: read it, never change it (the
    ``datastar`` name :func:`parse_signals` pops is never in a shared one)."""
    qs: bytes = scope.get("query_string", b"")
    if not qs:
        return {}
    try:
        query = _QUERIES.get(qs)
    except TypeError:  # not bytes (ASGI says bytes): not kept
        query = None
    if query is not None:
        return query
    text = qs.decode("latin-1")
    if "%" not in text and "+" not in text:  # the common case: plain ids and numbers
        query = {}
        for part in text.split("&"):
            if part:
                name, _, value = part.partition("=")
                query[name] = value
    else:
        try:
            query = dict(parse_qsl(text, keep_blank_values=True))
        except ValueError:
            raise InvalidPayload("malformed query string") from None
    if len(qs) <= QUERY_KEPT_BYTES and "datastar" not in query and type(qs) is bytes:
        if len(_QUERIES) >= QUERIES_KEPT:
            _QUERIES.clear()
        _QUERIES[qs] = query
    return query


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
        return "".join(patch_elements(to_html(r)) for r in returned)
    if is_html(returned):
        return patch_elements(to_html(returned))
    return ""


def patch_elements(html: str) -> str:
    """One ``datastar-patch-elements`` event. Its data lines are split where SSE ends a line
    (LF, CR, CRLF) and nowhere else: datastar_py splits with ``str.splitlines()``, which also
    breaks at U+2028, U+2029, U+0085 and other separators and so turns them into newlines."""
    if not html:
        return str(SSE.patch_elements(html))
    lines = html.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    data = "".join(f"data: elements {line}\n" for line in lines)
    return f"event: datastar-patch-elements\n{data}\n"


async def finish(reply: Reply, text: str) -> None:
    """The end of an event's reply: ``text`` (SSE) as the whole reply, or as the last chunk of
    a streamed one. (``Reply.full`` written out: one coroutine less per event.)"""
    if reply.streaming:
        if text:
            await reply.chunk(text.encode())
        await reply.end()
        return
    if text:
        body = text.encode()
        status, headers = 200, [*SSE_HEADERS, (b"content-length", str(len(body)).encode())]
    else:
        body = b""
        status, headers = 204, [(b"content-length", b"0")]
    send = reply.send
    ctx = reply.ctx
    if ctx is None or ctx.new_session_id is None:  # no cookie to add: Reply.start written out
        await send({"type": "http.response.start", "status": status, "headers": headers})
    else:
        await reply.start(status, headers)
    await send({"type": "http.response.body", "body": body})


def method_allowed(name: str, expected: str, method: str) -> None:
    """Raise MethodNotAllowed unless ``method`` is the event's (HEAD serves a GET event)."""
    if method != expected and not (method == "HEAD" and expected == "GET"):
        raise MethodNotAllowed(f"event {name!r} accepts {expected}, not {method}")


__all__ = ["ERROR_SIGNAL", "Reply", "patch_signals", "send_error"]
