"""One timer for many time bounds (_deadlines.py): a task past its deadline is cancelled and
told apart from any other cancel, tasks that finish in time are left alone, every late one is
cut off in turn, and a new event loop gets a timer of its own. The deadlines are 0.05 s and the
tests await them (never a sleep); GUARD only stops a test whose bound does not hold."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from faststate_mw._deadlines import Deadlines

GUARD = 10.0
SHORT = 0.05


async def _bounded(deadlines: Deadlines, wait: asyncio.Event) -> str:
    """Wait for ``wait`` under ``deadlines``: "done", "expired" or "cancelled"."""
    task = deadlines.watch()
    try:
        await wait.wait()
        return "done"
    except asyncio.CancelledError:
        if deadlines.expired(task):
            return "expired"
        raise
    finally:
        deadlines.done(task)


async def test_a_task_past_its_deadline_is_cancelled_and_told_so() -> None:
    deadlines = Deadlines(SHORT)
    task = asyncio.create_task(_bounded(deadlines, asyncio.Event()))
    assert await asyncio.wait_for(task, GUARD) == "expired"
    assert task.cancelling() == 0  # the deadline's cancel was taken back
    assert len(deadlines) == 0


async def test_a_task_done_in_time_is_left_alone() -> None:
    deadlines = Deadlines(SHORT)
    ready = asyncio.Event()
    ready.set()
    assert await _bounded(deadlines, ready) == "done"
    late = asyncio.create_task(_bounded(deadlines, asyncio.Event()))
    # the first task's deadline passes while the second waits: only the second is cut off
    assert await asyncio.wait_for(late, GUARD) == "expired"
    assert len(deadlines) == 0


async def test_another_cancel_is_not_a_deadline() -> None:
    deadlines = Deadlines(GUARD * 10)
    started = asyncio.Event()

    async def body() -> str:
        started.set()
        return await _bounded(deadlines, asyncio.Event())

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deadlines) == 0


async def test_every_late_task_is_cut_off_in_turn() -> None:
    deadlines = Deadlines(SHORT)
    ready = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    for i in range(6):
        wait = ready if i % 2 else asyncio.Event()  # odd ones finish when `ready` is set
        tasks.append(asyncio.create_task(_bounded(deadlines, wait)))
        await asyncio.sleep(0)  # each starts (and is watched) before the next
    ready.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), GUARD)
    assert results == ["expired", "done"] * 3
    assert len(deadlines) == 0


async def test_nothing_is_watched_without_a_bound() -> None:
    deadlines = Deadlines(None)
    assert deadlines.watch() is None
    assert not deadlines.expired(None)
    deadlines.done(None)


def test_a_new_event_loop_gets_its_own_timer() -> None:
    deadlines = Deadlines(SHORT)  # a store reused by a second loop (tests, a restarted server)

    async def in_time() -> str:
        ready = asyncio.Event()
        ready.set()
        return await _bounded(deadlines, ready)  # leaves the timer armed in this loop

    async def late() -> str:
        return await asyncio.wait_for(_bounded(deadlines, asyncio.Event()), GUARD)

    assert asyncio.run(in_time()) == "done"
    assert asyncio.run(late()) == "expired"
