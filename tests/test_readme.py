"""Every Python snippet in README.md runs, and the apps it builds answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from faststate_mw.testing import isolated_state_names
from tests.conftest import DS
from tests.sse import patched_signals

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.fixture(autouse=True)
def _names_back() -> Iterator[None]:
    """Snippets define classes named like other tests' and example_app's (Product, Counter):
    each test starts with no names taken and gives its names back."""
    with isolated_state_names(empty=True):
        yield


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 6


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index: int) -> None:
    # one module name for all snippets: a class they define again is a redefinition, not a clash
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(
        compile(SNIPPETS[index], f"README.md snippet {index}", "exec", dont_inherit=True), namespace
    )
    app = namespace.get("app") or namespace.get("api")
    if app is None or not getattr(app, "routes", None):
        return
    client = TestClient(app)
    paths = [getattr(r, "path", "") for r in app.routes]
    page = "/" if "/" in paths else "/cart"
    assert client.get(page).status_code == 200


def test_first_snippet_counts() -> None:
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(SNIPPETS[0], "README.md snippet 0", "exec", dont_inherit=True), namespace)
    client = TestClient(namespace["app"])
    html = client.get("/").text
    assert 'data-on:click="@post(&quot;/_faststate/Counter/increment?amount=1&quot;, ' in html
    r = client.post("/_faststate/Counter/increment?amount=1", headers=DS, content=b"{}")
    assert patched_signals(r.text) == [{"counter": {"count": 1}}]
