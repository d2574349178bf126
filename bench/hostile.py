"""Hostile load: resident memory of a real uvicorn server before and after 10,000 hostile
requests of each kind, beside a stated bound (README, "Limits").

Each kind runs against a fresh server of ``bench/hostile_app.py`` with the default limits; all
but the event flood lift the event rate limits (``FS_UNRATED=1``) so that the bound under test,
not the rate limiter, is what stops the attack. After each kind a normal client checks that the
server still serves (a page and an event). ``FS_HOSTILE_N`` sets the count (default 10,000).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from tests.servers import HOST, Uvicorn, running

APP = "bench.hostile_app:app"
MIB = 1024 * 1024
DS = {"Datastar-Request": "true", "Content-Type": "application/json"}


def rss(server: Uvicorn) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Client:
    """One keep-alive HTTP/1.1 connection (reopened when the server closes it)."""

    def __init__(self, port: int, source: str = HOST) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=30, source_address=(source, 0))
        self.cookie = ""

    def send(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        hdrs = dict(headers or {})
        if self.cookie and "Cookie" not in hdrs:
            hdrs["Cookie"] = self.cookie
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body or None, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                out = {k.lower(): v for k, v in resp.getheaders()}
                if resp.will_close:
                    self.conn.close()
                return resp.status, out, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt:
                    raise
        raise AssertionError  # pragma: no cover

    def login(self) -> None:
        """Get a session cookie and come back with it (a browser)."""
        _s, headers, _b = self.send("GET", "/")
        self.cookie = headers.get("set-cookie", "").split(";")[0]
        self.send("GET", "/")

    def close(self) -> None:
        self.conn.close()


def stats(port: int) -> dict[str, object]:
    c = Client(port)
    try:
        return dict(json.loads(c.send("GET", "/stats")[2]))
    finally:
        c.close()


def still_serves(port: int) -> bool:
    """A normal client, from another address than the attacker's, gets a page and an event."""
    c = Client(port, source="127.0.0.2")
    try:
        c.login()
        status, _h, _b = c.send("POST", "/_faststate/HNote/write", b'{"blob":"ok"}', DS)
        return status == 200
    finally:
        c.close()


# -- the attacks: each sends n requests and returns the statuses it got --------------------------
def cookieless_big_strings(port: int, n: int) -> Counter[int]:
    body = json.dumps({"blob": "x" * 200_000}).encode()
    c, got = Client(port), Counter[int]()
    for _ in range(n):  # never sends the cookie back
        got[c.send("POST", "/_faststate/HNote/write", body, DS)[0]] += 1
    c.close()
    return got


def made_up_record_ids(port: int, n: int) -> Counter[int]:
    c, got = Client(port), Counter[int]()
    c.login()
    for _ in range(n):
        rid = secrets.token_hex(8)
        got[c.send("POST", f"/_faststate/HRecord/bump?record_id={rid}", b"{}", DS)[0]] += 1
    c.close()
    return got


def component_ids(port: int, n: int) -> Counter[int]:
    c, got = Client(port), Counter[int]()
    c.login()
    for i in range(n):
        got[c.send("POST", f"/_faststate/HWidget/bump?component_id=w{i}", b"{}", DS)[0]] += 1
    c.close()
    return got


def streams(port: int, n: int) -> Counter[int]:
    """Open streams from one session and keep every accepted one open."""
    c, got = Client(port), Counter[int]()
    c.login()
    held: list[socket.socket] = []
    for _ in range(n):
        page = c.send("GET", "/")[2].decode()
        start = page.index("@get('") + 6
        url = page[start : page.index("'", start)]
        sock = socket.create_connection((HOST, port), timeout=30)
        sock.sendall(
            f"GET {url} HTTP/1.1\r\nHost: {HOST}\r\nCookie: {c.cookie}\r\n"
            "Accept: text/event-stream\r\nDatastar-Request: true\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        refused = b"too_many_requests" in head.lower()
        got[429 if refused else int(head.split()[1])] += 1
        if refused:
            sock.close()
        else:
            held.append(sock)
    for sock in held:
        sock.close()
    c.close()
    return got


def padded_cookies(port: int, n: int) -> Counter[int]:
    c, got = Client(port), Counter[int]()
    c.login()
    for _ in range(n):
        pad = secrets.token_hex(30_000)  # a different 60 kB neighbour cookie every time
        cookie = f"pad={pad}; {c.cookie}"
        got[c.send("GET", "/", headers={"Cookie": cookie})[0]] += 1
    c.close()
    return got


def oversized_states(port: int, n: int) -> Counter[int]:
    body = json.dumps({"blob": "y" * 300_000}).encode()
    c, got = Client(port), Counter[int]()
    c.login()
    for _ in range(n):
        got[c.send("POST", "/_faststate/HNote/write", body, DS)[0]] += 1
    c.close()
    return got


def event_flood(port: int, n: int, cookie: bool = True) -> Counter[int]:
    c, got = Client(port), Counter[int]()
    if cookie:
        c.login()
    body = json.dumps({"blob": "z" * 1_000}).encode()
    for _ in range(n):
        status, headers, _b = c.send("POST", "/_faststate/HNote/write", body, DS)
        got[429 if headers.get("x-faststate-error") == "too_many_requests" else status] += 1
    c.close()
    return got


@dataclass
class Kind:
    name: str
    attack: Callable[[int, int], Counter[int]]
    #: the growth of resident memory the limits allow, in MiB, and why
    bound_mib: float
    why: str
    rated: bool = False


KINDS = [
    Kind("cookie-less events, 200 kB strings", cookieless_big_strings, 64,
         "max_fresh_bytes 16 MiB of states + allocator slack"),
    Kind("made-up record ids, one session", made_up_record_ids, 48,
         "10,000 small RECORD instances (cap 100,000 per scope), 1 h idle ttl"),
    Kind("component ids, one session", component_ids, 16,
         "max_components_per_session 100"),
    Kind("streams, one session", streams, 16, "max_streams_per_session 16"),
    Kind("60 kB padded neighbour cookies", padded_cookies, 16,
         "cookie cache keyed by our value, 1 MiB"),
    Kind("events making a 300 kB state", oversized_states, 32,
         "max_state_bytes 256 kB: 413 (+ the allocator's high water of 300 kB bodies)"),
    Kind("event flood, one session", event_flood, 16,
         "token buckets 20/s (burst 60) per session", rated=True),
    Kind("event flood, cookie-less, one address", lambda p, n: event_flood(p, n, cookie=False),
         16, "token buckets 100/s (burst 300) per address", rated=True),
]  # fmt: skip


def run() -> None:
    n = int(os.environ.get("FS_HOSTILE_N", "10000"))
    print(f"\n== hostile: resident memory before/after {n:,} hostile requests of each kind ==")
    print("   (default limits; a fresh uvicorn server per kind; the machine is shared and noisy)")
    print(f"  {'kind':38} {'before':>8} {'after':>8} {'growth':>8} {'bound':>7}  result   replies")
    for kind in KINDS:
        env = {} if kind.rated else {"FS_UNRATED": "1"}
        with running(APP, env=env) as (server,):
            warm = Client(server.port)
            warm.login()
            for _ in range(200):
                warm.send("POST", "/_faststate/HNote/write", b'{"blob":"warm"}', DS)
            warm.close()
            before = rss(server)
            started = time.monotonic()
            got = kind.attack(server.port, n)
            took = time.monotonic() - started
            after = rss(server)
            held = stats(server.port)
            serving = still_serves(server.port)
        growth = (after - before) / MIB
        ok = growth <= kind.bound_mib and serving
        replies = " ".join(f"{k}x{v}" for k, v in sorted(got.items()))
        print(
            f"  {kind.name:38} {before / MIB:7.1f}M {after / MIB:7.1f}M {growth:+7.1f}M "
            f"{kind.bound_mib:6.0f}M  {'PASS' if ok else 'MISS':6}   {replies}"
        )
        print(
            f"  {'':38} bound: {kind.why}; held after: {held['instances']} instances, "
            f"{held['bytes']:,} state bytes, {held['streams']} streams; {took:.0f}s; "
            f"still serving: {'yes' if serving else 'NO'}"
        )
