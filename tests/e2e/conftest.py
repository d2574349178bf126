"""Fixtures for the real-browser tests: example_app under uvicorn and a Debian chromium.

Every test in this directory is marked ``e2e``. When chromium or the cached Datastar client is
missing the tests are skipped locally, and fail under CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Uvicorn, unavailable

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SECRET = "e2e-test-secret-5f0c1d9a7b3e42a8"
E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of this directory ``e2e`` and run them after every other test.

    While a sync Playwright is started, the main thread has a "running" asyncio loop, so any
    anyio/asyncio test that ran while the session-scoped browser is alive would fail with
    "Cannot run the event loop while another loop is running". Running e2e tests last means the
    browser only starts once the other tests are done.
    """
    e2e: list[pytest.Item] = []
    other: list[pytest.Item] = []
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
            e2e.append(item)
        else:
            other.append(item)
    items[:] = other + e2e


def _datastar_js() -> Path:
    env = os.environ.get("FASTSTATE_DATASTAR_JS")
    return Path(env) if env else ROOT / ".cache" / "datastar" / "datastar-core.js"


@pytest.fixture(scope="session")
def secret() -> str:
    return SECRET


@pytest.fixture(scope="session")
def datastar_js() -> Path:
    path = _datastar_js()
    if not path.is_file():
        unavailable(f"Datastar client not found at {path} (run `make datastar-js`)")
    return path


def _server_env(datastar_js: Path, db: Path) -> dict[str, str]:
    """The app's environment: the cached client, the test secret and a SQLite file of the
    test's own (EXAMPLE_DB), so tests never touch example_app/example.db."""
    return {
        "FASTSTATE_DATASTAR_JS": str(datastar_js),
        "FASTSTATE_SECRET": SECRET,
        "EXAMPLE_DB": str(db),
    }


def _example_app(env: dict[str, str]) -> Uvicorn:
    """example_app.main:app in a uvicorn process of its own; live streams never end by
    themselves, so a stop does not wait long for them."""
    return Uvicorn("example_app.main:app", env, graceful=1)


@pytest.fixture(scope="session")
def server(datastar_js: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """example_app.main:app served by a real uvicorn process; yields its base URL."""
    db = tmp_path_factory.mktemp("example-db") / "example.db"
    srv = _example_app(_server_env(datastar_js, db)).start()
    try:
        yield srv.url
    finally:
        srv.stop()


@pytest.fixture
def restartable_server(datastar_js: Path, tmp_path: Path) -> Iterator[Uvicorn]:
    """A function-scoped server of its own (own port, own SQLite file) that the test may kill
    and start again on the same port with the same EXAMPLE_DB and FASTSTATE_SECRET; restarting
    it disturbs no other test. In-memory states start over; the products table persists."""
    srv = _example_app(_server_env(datastar_js, tmp_path / "example.db")).start()
    try:
        yield srv
    finally:
        srv.stop(grace=3.0)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Debian chromium driven by Playwright."""
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} not found (run `make system-deps`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


@pytest.fixture
def js_errors() -> list[str]:
    """Uncaught JavaScript errors of the test's pages; the test fails if any are left at the end
    (a test that expects some takes them out of this list)."""
    return []


@pytest.fixture
def new_page(browser: Any, server: str, js_errors: list[str]) -> Iterator[Any]:
    """Factory of pages, each in a fresh browser context (a new cookie jar = a new session).

    ``new_page(base_url)`` targets another server (by default the session's). A second tab of
    the same session is ``page.context.new_page()``: every page of these contexts reports its
    uncaught errors to ``js_errors``."""
    contexts: list[Any] = []

    def make(base_url: str | None = None) -> Any:
        context = browser.new_context(base_url=base_url or server)
        context.set_default_timeout(5000)
        context.on("page", lambda p: p.on("pageerror", lambda exc: js_errors.append(str(exc))))
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
    assert not js_errors, f"uncaught JavaScript errors in the page: {js_errors}"


@pytest.fixture
def page(new_page: Any) -> Any:
    """A page in its own fresh browser context (its own session)."""
    return new_page()
