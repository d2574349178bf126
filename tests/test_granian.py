"""README "Serving with granian": ``granian --interface asgi example_app.main:app`` serves the app
unchanged: the page with its session cookie, and an event POST that patches the new count."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import HOST, ROOT, free_port, unavailable, wait_for_port
from tests.sse import patched_signals


@pytest.fixture
def granian_url(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("granian", path=str(Path(sys.executable).parent)) or shutil.which("granian")
    if exe is None:
        unavailable("granian is not installed (pip install granian: the dev extra)")
    port = free_port()
    cmd = [exe, "--interface", "asgi", "--host", HOST, "--port", str(port), "--workers", "1"]
    cmd += ["--no-access-log", "example_app.main:app"]
    env = {"EXAMPLE_DB": str(tmp_path / "example.db"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    try:
        wait_for_port(port, proc)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_example_app_runs_under_granian(granian_url: str) -> None:
    with httpx.Client(base_url=granian_url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "data-signals" in page.text
        reply = client.post(
            "/_faststate/Counter/increment?amount=2",
            json={"counter": {"count": 0}},
            headers={"Datastar-Request": "true", "Accept": "text/event-stream"},
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/event-stream")
        assert {"counter": {"count": 2}} in patched_signals(reply.text)
