"""faststate_mw.testing: the helpers apps (and this project's tests and bench) test with."""

from __future__ import annotations

from faststate_mw import State, StateStore, UserContext, current_user
from faststate_mw.testing import FakeClock, in_session


class HelperBasket(State):
    items: int = 0


def test_in_session_answers_as_a_request_of_that_session(store: StateStore) -> None:
    alice = UserContext(id="alice")
    with store.activate():
        with in_session("s1", alice):
            first = HelperBasket.current()
            first.items = 3
            assert current_user() == alice
        with in_session("s2"):
            assert HelperBasket.current().items == 0
            assert current_user() is None
        with in_session("s1"):
            assert HelperBasket.current() is first
    assert first.key == "session:s1:HelperBasket"


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start=5.0)
    assert clock() == 5.0
    clock.advance(2.5)
    assert clock() == 7.5
