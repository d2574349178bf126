"""Any string a user can store reaches the page verbatim, as the real Datastar client shows it:
through ``data-signals`` on page load, through a signal patch on the live stream, and through an
element patch, both in the ``data-signals`` it carries and as the app's own escaped HTML text
(issue 10: a string ending in a backslash and a later one holding ``;`` used to stop a page's
signals from loading at all; datastar_py's element patches turned U+2028 and friends into
newlines).

Property-based: hypothesis draws arbitrary unicode (no lone surrogates: the server refuses
those) mixed with pieces that Datastar's expression compiler treats specially. Each example is
one page load and 3 x SLOTS strings; EXAMPLES examples plus the explicit one run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.apps.roundtrip_app import SLOTS
from tests.servers import Uvicorn

from .helpers import TIMEOUT, open_live

EXAMPLES = 5
PIECES = [
    "\\",
    '"',
    "'",
    "`",
    ";",
    "@",
    "$",
    "${",
    "}",
    "</script>",
    "<!--",
    "&amp;",
    "/",
    "//",
    "/*",
    "@post('/x')",
    "$x.y",
    "\U0001f595JS_",
    "_DS\U0001f680",
    "__escaped0",
    "$&",
    "\n",
    "\r",
    "\u2028",
    "\x00",
    "\t",
    "return",
    "\\u0041",
]
# the issue's case: one string ending in a backslash, a later one holding ";"
ISSUE_CASE = ["a\\", "b", "c; d", *PIECES[: SLOTS * 3 - 3]]

unicode_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
one_string = st.lists(st.one_of(st.sampled_from(PIECES), unicode_text), max_size=4).map("".join)
all_strings = st.lists(one_string, min_size=3 * SLOTS, max_size=3 * SLOTS)

READ = "ids => ids.map(id => document.getElementById(id)?.textContent ?? null)"
SHOWS = (
    "([ids, want]) => ids.every((id, i) => document.getElementById(id)?.textContent === want[i])"
)


def as_html_text(s: str) -> str:
    """What HTML parsing itself makes of text (any HTML, not only Datastar's): line ends become
    LF and NUL characters are dropped."""
    return s.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


@pytest.fixture(scope="module")
def roundtrip_server(datastar_js: Any) -> Iterator[str]:
    server = Uvicorn("tests.apps.roundtrip_app:app", {"FASTSTATE_DATASTAR_JS": str(datastar_js)})
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def expect_shown(page: Any, prefix: str, want: list[str], where: str) -> None:
    ids = [f"{prefix}{i}" for i in range(SLOTS)]
    try:
        page.wait_for_function(SHOWS, arg=[ids, want], timeout=TIMEOUT)
    except Exception:
        assert page.evaluate(READ, ids) == want, where


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(strings=ISSUE_CASE)
@given(strings=all_strings)
def test_any_string_round_trips_through_datastar(
    strings: list[str], browser: Any, roundtrip_server: str, js_errors: list[str]
) -> None:
    loaded, live, patched = (strings[i * SLOTS : (i + 1) * SLOTS] for i in range(3))
    with httpx.Client(base_url=roundtrip_server) as http:
        assert http.post("/set", json={"items": loaded, "panel": patched}).status_code == 204
        context = browser.new_context(base_url=roundtrip_server)
        try:
            page = context.new_page()
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
            open_live(page, "/")
            expect_shown(page, "s", loaded, "data-signals on page load")
            assert http.post("/set", json={"items": live, "panel": patched}).status_code == 204
            expect_shown(page, "s", live, "signal patch over the live stream")
            page.click("#reveal")
            expect_shown(page, "p", patched, "element patch carrying data-signals")
            expect_shown(page, "t", [as_html_text(s) for s in patched], "element patch text")
        finally:
            context.close()
    assert not js_errors, js_errors


XSS = [
    '<img src=x onerror="window.__xss=1">',
    "<script>window.__xss=1</script>",
    "</script><script>window.__xss=1</script>",
    '"><svg onload=window.__xss=1>',
    "'; window.__xss=1; '",
    "\\'); window.__xss=1; //",
    "${window.__xss=1}",
    "`${window.__xss=1}`",
    "$x = (window.__xss=1)",
    "@post((window.__xss=1))",
    "\U0001f595JS_ window.__xss=1 _DS\U0001f680",
]


def test_xss_payloads_stay_text_in_the_real_browser(
    browser: Any, roundtrip_server: str, js_errors: list[str]
) -> None:
    """Script in stored strings never runs, on page load, live patch or element patch; the
    strings are shown as text."""
    first, second = XSS[:SLOTS], (XSS[SLOTS:] + XSS)[:SLOTS]
    with httpx.Client(base_url=roundtrip_server) as http:
        assert http.post("/set", json={"items": first, "panel": second}).status_code == 204
        context = browser.new_context(base_url=roundtrip_server)
        try:
            page = context.new_page()
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
            open_live(page, "/")
            expect_shown(page, "s", first, "page load")
            assert http.post("/set", json={"items": second, "panel": first}).status_code == 204
            expect_shown(page, "s", second, "live patch")
            page.click("#reveal")
            expect_shown(page, "p", first, "element patch")
            assert page.evaluate("window.__xss") is None
            assert page.locator("img, svg, script:not([src])").count() == 0
        finally:
            context.close()
    assert not js_errors, js_errors
