"""Scopes in a real browser: USER, RECORD, COMPONENT and TEMPORARY states of example_app.

Users are named uniquely per test and shared states (products) are read before they are
changed, so no test depends on what another left behind.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from .helpers import (
    TIMEOUT,
    click_and_wait,
    expect_text,
    login,
    open_live,
    read_int,
    set_input,
    to_front,
    unique,
)


def save_name(page: Any, name: str) -> None:
    page.fill("#display-name", name)
    click_and_wait(page, "#save-name")


def test_two_users_do_not_see_each_others_profile(new_page: Any) -> None:
    alice, bob = new_page(), new_page()
    login(alice, unique("alice"))
    login(bob, unique("bob"))
    save_name(bob, "Bob's own name")
    save_name(alice, "Alice")
    expect_text(alice, "#shown-name", "Alice")

    # Bob's live stream carries nothing of Alice's profile: a sentinel change of Bob's own
    # profile, made after Alice's from another tab of his, reaches his page through the stream;
    # had Alice's change been sent to Bob it would have arrived before it
    bob_tab2 = bob.context.new_page()
    open_live(bob_tab2, "/profile")
    to_front(bob_tab2).fill("#bio", "sentinel from Bob's other tab")
    click_and_wait(bob_tab2, "#save-bio")
    expect_text(bob, "#shown-bio", "sentinel from Bob's other tab")
    expect_text(bob, "#shown-name", "Bob's own name")
    assert "Alice" not in bob.content()
    # and neither does a reload
    to_front(bob).reload()
    expect_text(bob, "#shown-name", "Bob's own name")
    expect(bob.locator("#display-name")).to_have_value("Bob's own name", timeout=TIMEOUT)
    alice.reload()
    expect_text(alice, "#shown-name", "Alice")


def test_two_sessions_of_one_user_share_the_profile_live(new_page: Any) -> None:
    name = unique("carol")
    laptop, phone = new_page(), new_page()  # two cookie jars: two sessions of one user
    login(laptop, name)
    login(phone, name)

    save_name(laptop, "Carol on the laptop")
    expect_text(laptop, "#shown-name", "Carol on the laptop")
    expect_text(phone, "#shown-name", "Carol on the laptop")  # live, no reload

    phone.fill("#bio", "written on the phone")
    click_and_wait(phone, "#save-bio")
    expect_text(laptop, "#shown-bio", "written on the phone")


def test_two_sessions_on_one_product_share_its_record(new_page: Any) -> None:
    a, b = new_page(), new_page()
    open_live(a, "/product/2")
    open_live(b, "/product/2")
    likes, stock = read_int(a, "#likes"), read_int(a, "#stock")
    assert read_int(b, "#likes") == likes

    a.click("#like")
    expect_text(a, "#likes", likes + 1)
    expect_text(b, "#likes", likes + 1)  # live
    b.click("#buy")
    expect_text(a, "#stock", stock - 1)
    expect_text(b, "#stock", stock - 1)

    b.reload()  # the record itself changed, not only the pages
    expect_text(b, "#likes", likes + 1)
    expect_text(b, "#stock", stock - 1)


def test_two_widgets_on_one_page_are_independent(page: Any) -> None:
    open_live(page, "/widgets")
    left, right = read_int(page, "#left-clicks"), read_int(page, "#right-clicks")
    page.click("#left-btn")
    page.click("#left-btn")
    expect_text(page, "#left-clicks", left + 2)
    page.click("#right-btn")
    expect_text(page, "#right-clicks", right + 1)
    expect_text(page, "#left-clicks", left + 2)

    page.reload()
    expect_text(page, "#left-clicks", left + 2)
    expect_text(page, "#right-clicks", right + 1)


def test_the_wizard_walks_its_steps_and_finishes(page: Any) -> None:
    open_live(page, "/wizard")
    expect_text(page, "#step", 1)
    expect(page.locator("#done")).to_be_hidden(timeout=TIMEOUT)
    expect(page.locator("#email")).to_be_hidden(timeout=TIMEOUT)

    set_input(page, "#name", "Dana")
    click_and_wait(page, "#next")
    expect_text(page, "#step", 2)
    expect(page.locator("#name")).to_be_hidden(timeout=TIMEOUT)
    set_input(page, "#email", "dana@example.org")
    click_and_wait(page, "#back")
    expect_text(page, "#step", 1)
    expect(page.locator("#name")).to_have_value("Dana", timeout=TIMEOUT)
    page.click("#next")
    page.click("#next")
    expect_text(page, "#step", 3)
    expect(page.locator("main")).to_contain_text("dana@example.org", timeout=TIMEOUT)

    page.click("#finish")
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT)
    page.reload()  # the draft lives on the server for this session
    expect_text(page, "#step", 3)
    expect(page.locator("#done")).to_be_visible(timeout=TIMEOUT)
