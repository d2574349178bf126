"""stario's idiomatic counter for the ``peers`` section, on stario's own server.

Run by :mod:`bench.peers` as ``<venv>/bin/python bench/stario_app.py`` with ``STARIO_PORT`` set,
in a Python >= 3.12 venv that has ``stario`` (not a dependency of faststate_mw: never imported by
the package or the tests). Same URLs as :mod:`bench.apps`: ``GET /`` (sets ``sid``, answers the
count), ``POST /_faststate/Counter/increment?amount=N`` (``read_signals`` + ``patch_signals``).
"""

# mypy: ignore-errors
from __future__ import annotations

import asyncio
import secrets

from stario import App, Context, Route, Span, Writer, serve
from stario.cookies import set_cookie
from stario.datastar import SSE, read_signals

counts: dict[str, int] = {}


async def page(c: Context, w: Writer) -> None:
    sid = c.req.cookies.get("sid")
    if not sid:
        set_cookie(w, "sid", secrets.token_urlsafe(18))
    w.text(str(counts.get(sid, 0) if sid else 0))


async def increment(c: Context, w: Writer) -> None:
    signals = await read_signals(c.req)
    assert isinstance(signals, dict)
    sid = c.req.cookies.get("sid", "")
    n = counts.get(sid, 0) + int(c.req.query.get("amount", "1"))
    counts[sid] = n
    SSE(w).patch_signals({"counter": {"count": n}})


async def bootstrap(app: App, span: Span):
    app.add(Route("GET", "/"), page)
    app.add(Route("POST", "/_faststate/Counter/increment"), increment)
    yield


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(bootstrap))
    else:
        uvloop.run(serve(bootstrap))
