"""Real uvicorn server processes for benchmarks, and a tiny HTTP client to talk to them."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import IO

#: the repository root: servers run from here so ``bench.apps`` and ``faststate_mw`` import
ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One uvicorn process serving ``app`` (``module:attribute``) with one worker."""

    app: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    #: extra environment for the server process
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        cmd = [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", HOST, "--port", str(self.port),
            "--workers", "1", "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **self.env}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, deadline: float, path: str = "/") -> None:
        """Block until the port answers an HTTP request, the process dies, or the deadline."""
        assert self.proc is not None
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server {self.app} exited with code {self.proc.returncode}:\n{self.output()}"
                )
            try:
                request("GET", self.base_url + path, timeout=1.0)
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"server {self.app} did not answer on port {self.port} in time:\n"
                    f"{self.output()}"
                )
            time.sleep(0.05)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server process has used so far (Linux ``/proc``)."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            return None
        # after the command name: state is field 3, utime and stime are fields 14 and 15
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def output(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.log is not None:
            self.log.close()
            self.log = None


@contextlib.contextmanager
def running(
    *apps: str, timeout: float = START_TIMEOUT, env: Mapping[str, str] | None = None
) -> Iterator[list[Server]]:
    """Start one server per app (in parallel), wait until all answer; always stop them."""
    servers = [Server(app, env=dict(env or {})) for app in apps]
    try:
        for s in servers:
            s.start()
        deadline = time.monotonic() + timeout
        for s in servers:
            s.wait_ready(deadline)
        yield servers
    finally:
        for s in servers:
            s.stop()


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
