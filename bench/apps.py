"""The servers the round-trip benchmark compares, each doing one counter increment per event.

- ``app_a``: faststate_mw, a ``Counter`` State with an ``increment`` event.
- ``app_b``: the hand-written datastar-py idiom (``read_signals`` + ``DatastarResponse``).
- ``app_c``: the same bare endpoint replying with a plain ``Response`` of SSE text.

Every app has ``GET /`` (sets the session cookie, returns the session's count as text) and
``POST /_faststate/Counter/increment?amount=N`` (the event, same URL for all three).
"""

from __future__ import annotations

import secrets

from datastar_py import ServerSentEventGenerator as SSE
from datastar_py.starlette import DatastarResponse, read_signals
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bench.unrated import UNRATED
from faststate_mw import FastStateMiddleware, State, event

EVENT_PATH = "/_faststate/Counter/increment"
SECRET_KEY = "bench-secret-key-not-for-production"
SID_COOKIE = "sid"
#: wrk sends thousands of events a second from one address and one session: a throughput
#: benchmark lifts the event rate limits (bench/hostile.py measures them)


# -- (a) faststate_mw ------------------------------------------------------------------------
class Counter(State):
    count: int = 0

    @event
    def increment(self, amount: int = 1) -> None:
        self.count += amount


async def page_a(request: Request) -> Response:
    return PlainTextResponse(str(Counter.current().count))


app_a = Starlette(routes=[Route("/", page_a)])
app_a.add_middleware(FastStateMiddleware, secret_key=SECRET_KEY, limits=UNRATED)


# -- (b) and (c): bare Starlette endpoints, per-session counters keyed by a cookie -------------
counts: dict[str, int] = {}


async def page_bare(request: Request) -> Response:
    sid = request.cookies.get(SID_COOKIE)
    response = PlainTextResponse(str(counts.get(sid, 0) if sid else 0))
    if not sid:
        response.set_cookie(SID_COOKIE, secrets.token_urlsafe(18), httponly=True)
    return response


async def _increment(request: Request) -> int:
    signals = await read_signals(request)
    assert signals is not None
    sid = request.cookies.get(SID_COOKIE, "")
    n = counts.get(sid, 0) + int(request.query_params.get("amount", "1"))
    counts[sid] = n
    return n


async def increment_b(request: Request) -> Response:
    n = await _increment(request)
    return DatastarResponse(SSE.patch_signals({"counter": {"count": n}}))


async def increment_c(request: Request) -> Response:
    n = await _increment(request)
    body = SSE.patch_signals({"counter": {"count": n}})
    return Response(body, media_type="text/event-stream")


app_b = Starlette(routes=[Route("/", page_bare), Route(EVENT_PATH, increment_b, methods=["POST"])])
app_c = Starlette(routes=[Route("/", page_bare), Route(EVENT_PATH, increment_c, methods=["POST"])])
