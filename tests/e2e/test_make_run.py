"""README's first command on a fresh clone: ``make run`` serves a working example_app.

The repository this file lives in is cloned (committed work only) into a temporary folder, where
``make run PORT=<free port>`` creates its own venv, fetches the Datastar client and starts
uvicorn. Chromium then loads the counter page and clicks "+": the count only changes when the
page, the self-hosted client and the event round trip all work.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.servers import free_port, unavailable

ROOT = Path(__file__).resolve().parents[2]
#: a fresh venv and `pip install -e '.[dev]'` (from pip's cache when it is warm)
SERVE_TIMEOUT = 360.0
TIMEOUT = 10_000
NUMBER = re.compile(r"^-?\d+$")
#: variables of a calling make (or of its venv) that must not leak into the clone's make
LEAKY_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "FASTSTATE_DATASTAR_JS")


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> int:
    """Poll ``url`` until something answers over HTTP; returns that first status code."""
    deadline = time.monotonic() + SERVE_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`make run` exited with code {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:  # an answer, but an error one (e.g. 500)
            return int(exc.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.5)
    pytest.fail(f"`make run` did not serve {url} within {SERVE_TIMEOUT:.0f}s:\n{_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop make and everything it started (uvicorn): the whole process group."""
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
    # uvicorn may outlive make; the group is gone once every member has exited
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[str]:
    """``make run PORT=<free port>`` in a fresh clone of this repository; yields its base URL."""
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so that _stop reaches uvicorn
        )
    try:
        started = time.monotonic()
        status = _wait_for_http(url + "/", proc, log)
        print(f"`make run` on a fresh clone served after {time.monotonic() - started:.1f}s")
        assert status == 200, f"GET / answered {status}:\n{_tail(log)}"
        yield url
    finally:
        _stop(proc)
        shutil.rmtree(clone, ignore_errors=True)  # its venv is a few hundred MB


def test_make_run_serves_a_working_counter(browser: Any, make_run: str) -> None:
    context = browser.new_context(base_url=make_run)
    context.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        with page.expect_response(lambda r: r.url.endswith("/_faststate/datastar.js")) as client:
            response = page.goto("/")
        assert response is not None and response.status == 200, response and response.status
        # the page loads the self-hosted client, and that client is a Datastar 1.0.x bundle
        expect(page.locator('script[src="/_faststate/datastar.js"]')).to_have_count(1)
        assert client.value.status == 200, client.value.status
        assert client.value.text().startswith("// Datastar v1.0."), client.value.text()[:80]
        # the count is rendered by Datastar (data-text): a number shows once the client runs
        count = page.locator("#count")
        expect(count).to_have_text(NUMBER, timeout=TIMEOUT)
        start = int(count.inner_text())
        page.click("#inc")
        expect(count).to_have_text(str(start + 1), timeout=TIMEOUT)
        page.click("#inc")
        expect(count).to_have_text(str(start + 2), timeout=TIMEOUT)
        assert not errors, f"uncaught JavaScript errors in the page: {errors}"
    finally:
        context.close()
