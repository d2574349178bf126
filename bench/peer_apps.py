"""The ASGI servers of the ``peers`` section beside faststate_mw (``bench.apps:app_a``), each
doing one counter increment per event with the same URLs as :mod:`bench.apps`:

- ``raw``: a bare ASGI callable (no framework): the ceiling of what uvicorn can serve;
- ``bench.apps:app_c``: a bare Starlette endpoint replying with a plain ``Response``.

stario runs on its own server, from :mod:`bench.stario_app` (Python >= 3.12, its own venv).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

SID = b"sid"
counts: dict[bytes, int] = {}


def _sid(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.split(b";"):
                key, _, val = part.strip().partition(b"=")
                if key == SID:
                    return bytes(val)
    return b""


async def raw(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """``GET /`` sets the cookie and answers the count; ``POST`` reads the JSON signals, adds
    ``amount`` and answers one ``datastar-patch-signals`` event."""
    if scope["type"] != "http":
        return
    sid = _sid(scope)
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if scope["method"] != "POST":
        if not sid:
            sid = secrets.token_urlsafe(18).encode()
            headers.append((b"set-cookie", b"sid=" + sid + b"; HttpOnly; Path=/"))
        body = str(counts.get(sid, 0)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    signals = json.loads(b"".join(chunks))
    assert isinstance(signals, dict)
    query = dict(parse_qsl(scope["query_string"].decode()))
    n = counts.get(sid, 0) + int(query.get("amount", "1"))
    counts[sid] = n
    data = json.dumps({"counter": {"count": n}}, separators=(",", ":"))
    body = f"event: datastar-patch-signals\ndata: signals {data}\n\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    await send({"type": "http.response.body", "body": body})
