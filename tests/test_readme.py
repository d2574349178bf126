"""Every Python snippet in README.md runs, and the apps it builds answer."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from faststate_mw.testing import isolated_state_names
from tests.conftest import API, DS
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


# -- "From an empty file to a live page": each guide does what its text says ------------------
README_TEXT = README.read_text()
GUIDES_SECTION = re.search(
    r"^## From an empty file to a live page\n(.*?)^## ", README_TEXT, flags=re.S | re.M
)
assert GUIDES_SECTION is not None, "README lost its guides section"
GUIDES = dict(
    (part.split("\n", 1)[0], part.split("\n", 1)[1])
    for part in re.split(r"^### ", GUIDES_SECTION.group(1), flags=re.M)[1:]
)
#: what a guide promises for its first click: the request sent and the patch replied
CLAIM = re.compile(r"sends `POST ([^`]+)`; the reply patches\s+`([^`]+)`")


def guide_client(title: str) -> TestClient:
    snippet = re.search(r"```python\n(.*?)```", GUIDES[title], flags=re.S)
    assert snippet is not None, title
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(snippet.group(1), f"README guide {title}", "exec", dont_inherit=True), namespace)
    return TestClient(namespace["app"])


def test_there_is_a_guide_per_framework() -> None:
    assert [t.split(":")[0] for t in GUIDES] == ["Starlette", "FastHTML", "FastAPI"]
    intro = GUIDES_SECTION.group(1).split("### ")[0]
    assert "uvicorn app:app" in intro and "pip install -e" in intro


@pytest.mark.parametrize("title", list(GUIDES))
def test_guide_ends_with_a_live_page(title: str) -> None:
    claim = CLAIM.search(GUIDES[title])
    assert claim is not None, f"{title}: says no request and patch"
    url, patch = claim.groups()
    client = guide_client(title)
    page = client.get("/")
    assert page.status_code == 200
    html = unescape(page.text)
    assert '<script type="module"' in html  # the Datastar client
    assert 'id="faststate-stream"' in html  # the live stream that keeps other tabs in step
    assert f'@post("{url}"' in html  # the button the guide tells you to click
    reply = client.post(url, headers=DS, content=b"{}")
    assert patched_signals(reply.text) == [json.loads(patch)]


def test_fasthtml_guide_refuses_another_choice() -> None:
    client = guide_client(next(t for t in GUIDES if t.startswith("FastHTML")))
    client.get("/")
    reply = client.post("/_faststate/Poll/vote?choice=beer", headers=API, content=b"{}")
    assert reply.status_code == 422
    assert reply.json()["error"]["code"] == "invalid_arguments"
    tea = client.post("/_faststate/Poll/vote?choice=tea", headers=API, content=b"{}")
    assert patched_signals(tea.text) == [{"poll": {"tea": 1}}]


def test_fastapi_guide_json_view_shares_the_page_state() -> None:
    client = guide_client(next(t for t in GUIDES if t.startswith("FastAPI")))
    client.get("/")
    client.post("/_faststate/Basket/add?item=apple", headers=DS, content=b"{}")
    client.post("/_faststate/Basket/add?item=pear", headers=DS, content=b"{}")
    assert client.get("/basket.json").json() == {"fruit": ["apple", "pear"]}
    other = guide_client(next(t for t in GUIDES if t.startswith("FastAPI")))
    assert other.get("/basket.json").json() == {"fruit": []}  # another session's basket
