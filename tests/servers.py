"""Real processes for tests and bench: uvicorn servers and private redis-servers, on free
loopback ports. The one launcher of the project: tests/e2e and bench/ use it too.

Outside CI a missing redis-server skips the tests that need it; under CI=true it fails them
(outside a test run, as in bench, it is a plain error).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, NoReturn

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def unavailable(reason: str) -> NoReturn:
    """A missing prerequisite: a skip in a local test run, a failure under CI (``CI=true``),
    an error outside a test run."""
    if "PYTEST_CURRENT_TEST" not in os.environ:
        raise RuntimeError(reason)
    if os.environ.get("CI") == "true":
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing answered on port {port} within {timeout}s")


def wait_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.02)
        except OSError:
            return
    raise RuntimeError(f"port {port} still answers")


class Uvicorn:
    """``python -m uvicorn <app>`` (one worker) on a free port (or a given one), run from the
    repository root. ``log=True`` keeps its output for :meth:`output`; ``graceful`` caps how long
    a stop waits for open responses (live streams never end by themselves)."""

    def __init__(
        self,
        app: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        *,
        graceful: float | None = None,
        log: bool = False,
    ) -> None:
        self.app = app
        self.env = dict(env or {})
        self.port = port or free_port()
        self.graceful = graceful
        self.keep_log = log
        self.log: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def launch(self) -> Uvicorn:
        """Start the process without waiting for it (see :meth:`wait_ready`)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [sys.executable, "-m", "uvicorn", self.app, "--host", HOST, "--port", str(self.port)]
        cmd += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
        if self.graceful is not None:
            cmd += ["--timeout-graceful-shutdown", str(int(self.graceful))]
        if self.keep_log:
            self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        stderr = subprocess.STDOUT if self.log is not None else None
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **self.env}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=stderr)
        return self

    def wait_ready(self, timeout: float = 20.0) -> Uvicorn:
        try:
            wait_for_port(self.port, self.proc, timeout)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"uvicorn {self.app}: {exc}\n{self.output()}") from None
        return self

    def start(self) -> Uvicorn:
        return self.launch().wait_ready()

    def kill(self) -> None:
        """A hard kill (SIGKILL), like a crash: no shutdown code runs, streams drop at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        wait_closed(self.port)

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()
            self.log = None

    def output(self) -> str:
        """What the server printed (with ``log=True``)."""
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

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


@contextlib.contextmanager
def running(
    *apps: str, env: Mapping[str, str] | None = None, timeout: float = 20.0, log: bool = True
) -> Iterator[list[Uvicorn]]:
    """One uvicorn per app, started side by side; yields them once all answer; always stops them."""
    servers = [Uvicorn(app, env, log=log) for app in apps]
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready(timeout)
        yield servers
    finally:
        for server in servers:
            server.stop(5)


def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        unavailable("redis-server is not installed (make system-deps)")
    return path


class RedisServer:
    """A private redis-server that the test can stop and start again on the same port.
    With ``durable`` it keeps an fsync-always append-only file, so a restart keeps the data."""

    def __init__(self, workdir: Path, durable: bool = True) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.workdir = workdir
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(self.workdir), "--daemonize", "no", "--loglevel", "warning"]
        if self.durable:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, self.proc)
        except BaseException:
            # a fixture whose setup failed has no teardown to stop it
            self.proc.kill()
            self.proc.wait(10)
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        wait_closed(self.port)


def redis_cli() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        unavailable("redis-cli is not installed (make system-deps)")
    return path


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisCluster:
    """A private Redis Cluster: ``masters`` masters, each with ``replicas`` replicas, on free
    loopback ports, created with ``redis-cli --cluster create``. A short node timeout lets a
    replica take over quickly when a test kills its master."""

    def __init__(self, workdir: Path, masters: int = 3, replicas: int = 1) -> None:
        self.binary = redis_binary()
        self.cli = redis_cli()
        self.workdir = workdir
        self.masters = masters
        self.replicas = replicas
        self.ports = [_cluster_port() for _ in range(masters * (1 + replicas))]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start_node(self, port: int) -> None:
        node_dir = self.workdir / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--dir", str(node_dir), "--daemonize", "no", "--loglevel", "warning"]
        args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"]
        args += ["--cluster-config-file", "nodes.conf", "--appendonly", "no"]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for_port(port, self.procs[port])

    def start(self) -> RedisCluster:
        try:
            for port in self.ports:
                self.start_node(port)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                [self.cli, "--cluster", "create", *nodes, "--cluster-replicas", str(self.replicas)],
                input=b"yes\n",
                check=True,
                capture_output=True,
                timeout=60,
            )
            self.wait_ok()
        except BaseException:
            self.stop()  # a fixture whose setup failed has no teardown to stop the nodes
            raise
        return self

    def info(self, port: int) -> str:
        out = subprocess.run(
            [self.cli, "-p", str(port), "cluster", "info"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return out.stdout.decode()

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [p for p, proc in self.procs.items() if proc.poll() is None]
            if all("cluster_state:ok" in self.info(p) for p in live):
                return
            time.sleep(0.1)
        raise RuntimeError("the redis cluster did not become ok")

    def master_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        live = next(p for p, proc in self.procs.items() if proc.poll() is None)
        slot = subprocess.run(
            [self.cli, "-p", str(live), "cluster", "keyslot", key],
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.decode()
        nodes = subprocess.run(
            [self.cli, "-p", str(live), "cluster", "nodes"],
            capture_output=True,
            timeout=10,
            check=True,
        ).stdout.decode()
        wanted = int(slot)
        for line in nodes.splitlines():
            parts = line.split()
            if "master" not in parts[2] or "fail" in parts[2]:
                continue
            for span in parts[8:]:
                lo, _, hi = span.partition("-")
                if lo.isdigit() and int(lo) <= wanted <= int(hi or lo):
                    return int(parts[1].split(":")[1].split("@")[0])
        raise RuntimeError(f"no master owns slot {wanted}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (a crashed master: its replica takes over)."""
        proc = self.procs[port]
        proc.kill()
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
