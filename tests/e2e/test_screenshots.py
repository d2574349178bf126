"""Every page of example_app's navigation in chromium: styled by the app's own stylesheet, its
link marked current, its explanation line shown, and a screenshot of it saved for a person to
look at, under tmp/artifacts/screenshots/ (ignored by git).

The pages are taken from the navigation bar itself, so a page added to it is covered too.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from .conftest import ROOT
from .helpers import TIMEOUT, is_stream_open, login

ARTIFACTS = ROOT / "tmp" / "artifacts" / "screenshots"

#: Decodes a PNG in the browser and measures it: how many distinct colours a grid of sampled
#: pixels has, and which share of them differ from the most common one (the background).
PNG_STATS_JS = """async (dataUrl) => {
    const img = new Image();
    img.src = dataUrl;
    await img.decode();
    const canvas = document.createElement("canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    const counts = new Map();
    let samples = 0;
    for (let y = 0; y < img.height; y += 3) {
        for (let x = 0; x < img.width; x += 3) {
            const i = (y * img.width + x) * 4;
            const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
            counts.set(key, (counts.get(key) || 0) + 1);
            samples += 1;
        }
    }
    const top = Math.max(...counts.values());
    return {width: img.width, height: img.height, colours: counts.size,
            notBackground: (samples - top) / samples};
}"""


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def png_stats(page: Any, png: Path) -> dict[str, Any]:
    data_url = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    stats: dict[str, Any] = page.evaluate(PNG_STATS_JS, data_url)
    return stats


def visit(page: Any, href: str) -> None:
    """Load ``href``; a page with states is ready once its live stream is open (Datastar has
    then rendered its signals)."""
    has_states = "faststate-stream" in page.request.get(href).text()
    if has_states:
        with page.expect_response(is_stream_open, timeout=TIMEOUT):
            page.goto(href)
    else:
        page.goto(href)


def test_every_page_is_styled_explained_and_screenshotted(new_page: Any) -> None:
    page = new_page()
    login(page, "admin")  # every page opens, with its controls enabled
    links = page.locator("header nav ul a").evaluate_all(
        "els => els.map(e => [e.textContent.trim(), e.getAttribute('href')])"
    )
    assert len(links) >= 7, links
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    decoder = page.context.new_page()  # decodes the screenshots

    for label, href in links:
        visit(page, href)
        # the app's stylesheet applies: a system font, not the browser's default serif
        font = page.evaluate("getComputedStyle(document.body).fontFamily")
        assert font.startswith("system-ui"), (href, font)
        # the navigation marks this page, and only it
        current = page.locator('header nav a[aria-current="page"]')
        expect(current).to_have_count(1, timeout=TIMEOUT)
        expect(current).to_have_attribute("href", href)
        expect(current).to_have_text(label)
        # one line says which scope the page shows and what to try
        about = page.locator("#about")
        expect(about).to_be_visible(timeout=TIMEOUT)
        expect(about).to_have_text(re.compile(r"Try .{20,}"))

        shot = ARTIFACTS / f"{slug(label)}.png"
        page.screenshot(path=str(shot), full_page=True)
        stats = png_stats(decoder, shot)
        assert stats["width"] >= 800 and stats["height"] >= 300, (shot, stats)
        assert stats["colours"] >= 16, (shot, stats)  # text, a nav bar, buttons: not blank
        assert stats["notBackground"] >= 0.05, (shot, stats)


def test_pages_fit_a_phone_screen_and_explain_refusals(new_page: Any) -> None:
    """On a 390 px wide screen no page scrolls sideways; a signed-in user without the admin
    permission sees the admin page's buttons disabled and the reason."""
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    login(page, "plain-user")
    links = page.locator("header nav ul a").evaluate_all(
        "els => els.map(e => e.getAttribute('href'))"
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for href in links:
        visit(page, href)
        expect(page.locator("#about")).to_be_visible(timeout=TIMEOUT)
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, (href, width)
    visit(page, "/admin")
    expect(page.locator("#why")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("#toggle-maintenance")).to_be_disabled()
    page.screenshot(path=str(ARTIFACTS / "admin-plain-user-phone.png"), full_page=True)
    visit(page, "/")
    page.screenshot(path=str(ARTIFACTS / "counter-phone.png"), full_page=True)


def test_the_stylesheet_is_served_by_the_app_itself(page: Any) -> None:
    responses: list[str] = []
    page.on("response", lambda r: responses.append(r.url))
    page.goto("/login")
    expect(page.locator('link[rel="stylesheet"]')).to_have_attribute("href", "/app.css")
    reply = page.request.get("/app.css")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/css")
    # nothing of the page comes from another host (no CDN, no web fonts)
    base = page.url.split("/login")[0]
    assert responses and all(url.startswith(base) for url in responses), responses
