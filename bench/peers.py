"""``peers``: faststate_mw's event round trip beside the servers a Datastar user could pick instead.

One counter increment per POST (the roundtrip section's event, ``bench/post.lua``), ``wrk -t1``
over loopback, one process each, against:

- ``raw``: a bare ASGI callable under uvicorn (:func:`bench.peer_apps.raw`): the ceiling;
- ``starlette``: a bare Starlette endpoint with a plain ``Response`` (``bench.apps:app_c``);
- ``faststate_mw``: ``Counter.increment`` behind FastStateMiddleware (``bench.apps:app_a``);
- ``raw+granian``, ``faststate_mw+granian``: the raw callable and the same app under granian
  (``--http 1 --no-ws``: SSE over HTTP/1.1 needs neither HTTP/2 nor websockets), if ``granian``
  is installed;
- ``stario``: its idiomatic handler (``read_signals`` + ``patch_signals``) on its own server
  (:mod:`bench.stario_app`), in a venv under ``.cache/bench-peers/`` made with a Python >= 3.12
  from pyenv or PATH and ``pip install stario uvloop``; skipped, with the reason, when none exists.

The servers are measured in turn, round after round (one interleaved run), and each one's median
round counts: events/s and server CPU µs per event (the process tree's user + system time over the
events served). Targets, as time per event, under each server: faststate_mw/stario <= 1.0 and
faststate_mw/raw <= 1.5 (raw on the same server).
Environment: ``BENCH_SECONDS`` (default 5), ``BENCH_WARMUP`` (default 1), ``BENCH_CONNECTIONS``
(default 16), ``BENCH_ROUNDS`` (default 3, at least 3 for a median that means something).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.servers import HOST, ROOT, free_port, wait_for_port

from .roundtrip import _check_event, _count, _env_float, _session
from .soak import save
from .wrk import run_wrk

VENV = ROOT / ".cache" / "bench-peers" / "venv"
EVENT_PATH = "/_faststate/Counter/increment?amount=1"
#: (server, its raw callable): how much room each server leaves an app to match stario
ROOMS = [("uvicorn", "raw"), ("granian", "raw+granian")]
#: (numerator, denominator, target) as time per event
TARGETS = [
    ("faststate_mw", "stario", 1.0),
    ("faststate_mw", "raw", 1.5),
    ("faststate_mw+granian", "stario", 1.0),
    ("faststate_mw+granian", "raw+granian", 1.5),
]


class Server:
    """One server process on a free loopback port; ``url`` and ``app`` as :class:`Uvicorn` has
    them, so the roundtrip section's helpers work on it."""

    def __init__(self, label: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
        self.label = label
        self.app = label
        self.port = free_port()
        self.cmd = [a.replace("{port}", str(self.port)) for a in cmd]
        self.env = {k: v.replace("{port}", str(self.port)) for k, v in (env or {}).items()}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def launch(self) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **self.env}
        self.proc = subprocess.Popen(
            self.cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )

    def wait_ready(self) -> None:
        try:
            wait_for_port(self.port, self.proc, 30)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.label}: {exc}\n{self.output()}") from None

    def output(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.log is not None:
            self.log.close()
            self.log = None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process and its descendants (granian's workers)."""
        if self.proc is None:
            return None
        stats: dict[int, tuple[int, float]] = {}  # pid -> (ppid, cpu seconds)
        tick = os.sysconf("SC_CLK_TCK")
        for path in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(path) as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            pid = int(path.split("/")[2])
            stats[pid] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
        if self.proc.pid not in stats:
            return None
        tree, total = {self.proc.pid}, 0.0
        changed = True
        while changed:
            changed = False
            for pid, (ppid, _) in stats.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        for pid in tree:
            total += stats[pid][1]
        return total


def find_python312() -> str | None:
    """A Python >= 3.12 interpreter: this one, pyenv's newest, or one on PATH."""
    if sys.version_info >= (3, 12):
        return sys.executable
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = []
    for exe in glob.glob(f"{pyenv}/versions/3.*/bin/python"):
        minor = Path(exe).parents[1].name.split(".")[1]
        if minor.isdigit() and int(minor) >= 12:
            found.append((int(minor), exe))
    if found:
        return max(found)[1]
    for name in ("python3.14", "python3.13", "python3.12"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def stario_python() -> tuple[str | None, str]:
    """The venv's python with stario installed, or None and why not."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import stario"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python), ""
    base = find_python312()
    if base is None:
        return None, "needs Python >= 3.12, none found"
    try:
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, capture_output=True)
        pip = [str(python), "-m", "pip", "install", "-q", "stario", "uvloop"]
        subprocess.run(pip, check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not install stario into {VENV}: {exc}"
    return str(python), ""


def servers() -> tuple[list[Server], list[str]]:
    uvicorn = [sys.executable, "-m", "uvicorn", "--host", HOST, "--port", "{port}"]
    uvicorn += ["--workers", "1", "--log-level", "warning", "--no-access-log"]
    out = [
        Server("raw", [*uvicorn, "bench.peer_apps:raw"]),
        Server("starlette", [*uvicorn, "bench.apps:app_c"]),
        Server("faststate_mw", [*uvicorn, "bench.apps:app_a"]),
    ]
    skipped = []
    granian = shutil.which("granian", path=str(Path(sys.executable).parent)) or shutil.which(
        "granian"
    )
    if granian:
        cmd = [granian, "--interface", "asgi", "--host", HOST, "--port", "{port}"]
        cmd += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
        cmd += ["--http", "1", "--no-ws"]  # SSE over HTTP/1.1: no HTTP/2 sniffing, no websockets
        out.append(Server("raw+granian", [*cmd, "bench.peer_apps:raw"]))
        out.append(Server("faststate_mw+granian", [*cmd, "bench.apps:app_a"]))
    else:
        skipped.append("raw+granian, faststate_mw+granian: skipped (granian is not installed)")
    python, why = stario_python()
    if python is None:
        skipped.append(f"stario: skipped ({why})")
    else:
        env = {"STARIO_PORT": "{port}", "STARIO_HOST": HOST, "STARIO_TRACER": "noop"}
        out.append(Server("stario", [python, str(ROOT / "bench" / "stario_app.py")], env))
    return out, skipped


@contextlib.contextmanager
def started(group: list[Server]) -> Iterator[list[Server]]:
    try:
        for s in group:
            s.launch()
        for s in group:
            s.wait_ready()
        yield group
    finally:
        for s in group:
            s.stop()


@dataclass
class Rounds:
    rps: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    latency: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _round(s: Server, cookie: str, seconds: float, warmup: float, conns: int, r: Rounds) -> None:
    url = s.url + EVENT_PATH
    if warmup:
        warm = run_wrk(url, seconds=warmup, connections=conns, script_args=(cookie,))
        r.warnings += [f"warm-up: {p}" for p in warm.problems]
    before, cpu_before = _count(s, cookie), s.cpu_seconds()  # type: ignore[arg-type]
    result = run_wrk(url, seconds=seconds, connections=conns, script_args=(cookie,))
    cpu_after, served = s.cpu_seconds(), _count(s, cookie) - before  # type: ignore[arg-type]
    r.warnings += result.problems
    if served < result.requests:
        r.warnings.append(f"count rose by {served}, fewer than wrk's {result.requests} requests")
    r.rps.append(result.requests_per_sec)
    r.latency.append(result.latency_avg)
    if cpu_before is not None and cpu_after is not None and served > 0:
        r.cpu.append((cpu_after - cpu_before) / served)


def run() -> dict[str, float]:
    seconds = _env_float("BENCH_SECONDS", 5)
    warmup = _env_float("BENCH_WARMUP", 1, minimum=0)
    conns = int(_env_float("BENCH_CONNECTIONS", 16))
    rounds = int(_env_float("BENCH_ROUNDS", 3))
    print(
        f"== peers: one counter increment per POST, one process each (wrk -t1 -c{conns}, "
        f"{warmup:g}s warm-up, median of {rounds} interleaved rounds x {seconds:g}s)"
    )
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cpus:
        print(f"  note: load average {load:.1f} on {cpus} cores: machine busy, figures noisy")
    group, skipped = servers()
    for line in skipped:
        print(f"  {line}")
    results = {s.label: Rounds() for s in group}
    with started(group):
        cookies = {}
        for s in group:
            cookie, count = _session(s)  # type: ignore[arg-type]
            _check_event(s, cookie, count + 1)  # type: ignore[arg-type]
            cookies[s.label] = cookie
        for i in range(rounds):
            warm = warmup if i == 0 else 0
            for s in group:
                _round(s, cookies[s.label], seconds, warm, conns, results[s.label])
    return _report(results)


def _report(results: dict[str, Rounds]) -> dict[str, float]:
    rps = {k: statistics.median(r.rps) for k, r in results.items()}
    cpu = {k: statistics.median(r.cpu) for k, r in results.items() if r.cpu}
    width = max(map(len, results))
    print(f"  {'server':<{width}}  {'events/s':>9}  {'CPU us/event':>12}  rounds (events/s)")
    for k, r in results.items():
        c = f"{cpu[k] * 1e6:12.1f}" if k in cpu else f"{'?':>12}"
        each = " / ".join(f"{x:,.0f}" for x in r.rps)
        print(f"  {k:<{width}}  {rps[k]:>9,.0f}  {c}  {each}")
    for k, r in results.items():
        for w in r.warnings:
            print(f"  WARNING {k}: {w}")
    for num, den, target in TARGETS:
        if num not in rps or den not in rps:
            print(f"  time/event {num}/{den}: not measured (target <= {target:g})")
            continue
        ratio = rps[den] / rps[num]
        verdict = "PASS" if ratio <= target else "MISS"
        cpu_ratio = ""
        if num in cpu and den in cpu:
            cpu_ratio = f"; CPU/event {cpu[num] / cpu[den]:.2f}"
        # each round's ratio: the servers of one round ran minutes apart at most, so these
        # show how far the machine's other load moved the verdict
        paired = [d / n for n, d in zip(results[num].rps, results[den].rps, strict=True)]
        each = " / ".join(f"{x:.2f}" for x in paired)
        print(
            f"  time/event {num}/{den} = {ratio:.2f} (target <= {target:g})  {verdict}{cpu_ratio}"
            f"; by round {each}"
        )
    room = _room(rps)
    figures = {
        "room": room,
        "events_per_s": {k: round(v, 1) for k, v in rps.items()},
        "cpu_us_per_event": {k: round(v * 1e6, 1) for k, v in cpu.items()},
    }
    lines = [
        f"{k}: {rps[k]:,.0f} events/s" + (f", {cpu[k] * 1e6:.1f} us CPU/event" if k in cpu else "")
        for k in results
    ]
    save("peers", figures, lines)
    return rps


def _room(rps: dict[str, float]) -> dict[str, float]:
    """Print, per server, the raw callable's time per event as a share of stario's, and so how
    much an app may add per event over a callable that does nothing else and still match
    stario (none when the bare callable alone is slower); returns the shares."""
    shares = {}
    for server, raw in ROOMS:
        if raw not in rps or "stario" not in rps:
            continue
        share = rps["stario"] / rps[raw]
        shares[server] = round(share, 3)
        room = (
            f"{1 / share - 1:.0%} over the bare callable"
            if share < 1
            else "nothing: the bare callable alone is slower"
        )
        print(
            f"  room under {server}: the raw callable takes {share:.2f} of stario's time per "
            f"event; matching stario leaves an app {room}"
        )
    return shares
