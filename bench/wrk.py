"""Running wrk and reading its report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
POST_SCRIPT = HERE / "post.lua"


@dataclass
class WrkResult:
    requests_per_sec: float
    requests: int
    latency_avg: str
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    output: str = ""
    #: user + system CPU seconds wrk itself used (its resource usage when it exited)
    cpu_seconds: float | None = None

    @property
    def problems(self) -> list[str]:
        out = []
        if self.non_2xx:
            out.append(f"{self.non_2xx} non-2xx/3xx responses")
        errors = {k: v for k, v in self.socket_errors.items() if v}
        if errors:
            out.append("socket errors: " + ", ".join(f"{k} {v}" for k, v in errors.items()))
        if self.requests == 0:
            out.append("no request completed")
        return out


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("wrk not found: install it (`make system-deps` or apt-get install wrk)")
    return path


def run_wrk(
    url: str,
    *,
    seconds: float,
    threads: int = 1,
    connections: int = 16,
    script: Path = POST_SCRIPT,
    script_args: tuple[str, ...] = (),
) -> WrkResult:
    duration = f"{max(1, round(seconds))}s"
    cmd = [
        wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{duration}",
        "-s", str(script), url,
    ]  # fmt: skip
    if script_args:
        cmd += ["--", *script_args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err)
        timer = threading.Timer(seconds + 30, proc.kill)  # the timeout subprocess.run had
        timer.start()
        try:
            # reaped with wait4 rather than proc.wait(): it also gives wrk's resource usage
            _pid, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{stdout}{stderr}")
    result = parse_wrk(stdout)
    result.cpu_seconds = usage.ru_utime + usage.ru_stime
    return result


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{text}")
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    latency = re.search(r"^\s*Latency\s+(\S+)", text, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = {}
    if sock is not None:
        errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True)
        )
    return WrkResult(
        requests_per_sec=float(rps.group(1)),
        requests=int(total.group(1)) if total else 0,
        latency_avg=latency.group(1) if latency else "?",
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors,
        output=text,
    )
