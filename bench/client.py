"""A tiny stdlib HTTP client for the benchmarks. The servers it talks to are started by the
project's one launcher, :mod:`tests.servers` (``running``, ``Uvicorn``)."""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie

HOST = "127.0.0.1"


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    set_cookies: list[str]
    body: bytes


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> HttpReply:
    """One HTTP/1.1 request over a fresh connection (stdlib only)."""
    parsed = http.client.urlsplit(url)
    conn = http.client.HTTPConnection(parsed.hostname or HOST, parsed.port, timeout=timeout)
    try:
        path = parsed.path or "/"
        if parsed.query:
            path += "?" + parsed.query
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        data = resp.read()
        return HttpReply(
            status=resp.status,
            headers={k.lower(): v for k, v in resp.getheaders()},
            set_cookies=resp.headers.get_all("set-cookie") or [],
            body=data,
        )
    finally:
        conn.close()


def cookie_header(reply: HttpReply) -> str:
    """The ``Cookie`` request header that sends back every cookie ``reply`` set."""
    jar: SimpleCookie = SimpleCookie()
    for raw in reply.set_cookies:
        jar.load(raw)
    return "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())
