"""Sign-out and sign-in in one real browser: bob never sees alice's session states."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from .helpers import TIMEOUT, click_and_wait, expect_text, is_event_reply, login, open_live, unique


def test_bob_does_not_see_alices_session_after_she_signs_out(page: Any) -> None:
    alice, bob = unique("alice"), unique("bob")
    secret = unique("alice-secret")
    login(page, alice)
    open_live(page, "/")
    expect_text(page, "#count", 0)  # signing in gave alice a session of her own
    for _ in range(3):
        click_and_wait(page, "#inc")
    expect_text(page, "#count", 3)
    page.locator("#message").fill(secret)
    with page.expect_response(is_event_reply, timeout=TIMEOUT):
        page.locator("#message").press("Tab")  # set_message: a client-writable field
    page.reload()
    expect_text(page, "#message-echo", secret)  # what bob must not see

    page.goto("/login")
    page.click("#logout-button")
    expect(page).to_have_url(re.compile(r"/login$"), timeout=TIMEOUT)
    expect_text(page, "#who", "Not signed in.")
    login(page, bob)
    open_live(page, "/")
    expect_text(page, "#count", 0)
    expect(page.locator("#message-echo")).to_have_text("Hello", timeout=TIMEOUT)
    click_and_wait(page, "#inc")
    expect_text(page, "#count", 1)
