"""In chromium, a click posts only its own state's signals and the tab id (Datastar 1.0's
filterSignals in the action), and still works; live dedupe still knows the tab."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import expect

TIMEOUT = 5000


def test_a_click_posts_only_its_namespace(page: Any) -> None:
    page.goto("/")
    count = page.locator("#count")
    expect(count).to_have_text(re.compile(r"^\d+$"), timeout=TIMEOUT)
    start = int(count.inner_text())
    # the page carries other states' signals too (visitors, the error signal)
    signals = page.evaluate("() => document.body.innerHTML")
    assert "visitors" in signals
    with page.expect_request(
        lambda r: urlsplit(r.url).path == "/_faststate/Counter/increment", timeout=TIMEOUT
    ) as info:
        page.click("#inc")
    body = info.value.post_data_json
    assert set(body) == {"counter", "faststate"}, body
    assert set(body["faststate"]) == {"tab"} and body["faststate"]["tab"]
    assert "count" in body["counter"]
    expect(count).to_have_text(str(start + 1), timeout=TIMEOUT)
