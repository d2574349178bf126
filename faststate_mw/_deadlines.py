"""One timer for every request's time bound (a body's arrival, an event's run).

``asyncio.timeout()`` schedules and cancels a timer of its own on every use. The bounds here
have one length per store (``Limits.body_timeout``, ``Limits.event_timeout``), so the tasks
they watch reach their deadlines in the order they started: one :class:`Deadlines` keeps them
in that order and arms one timer, at the first deadline. Watching a task costs two dict
operations; a task past its deadline is cancelled, as ``asyncio.timeout()`` would cancel it.
"""

from __future__ import annotations

import asyncio
import sys
from asyncio import get_running_loop
from collections.abc import Callable
from typing import Any


def _current_task_finder() -> Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]:
    """``asyncio.current_task``; on Python 3.11, where it is a Python function around one
    lookup in asyncio's table of running tasks, that lookup itself (a frame less per watch)."""
    table = getattr(asyncio.tasks, "_current_tasks", None)
    if sys.version_info < (3, 12) and isinstance(table, dict):
        return table.get
    return asyncio.current_task


current_task = _current_task_finder()


class Deadlines:
    """Cancel the watched tasks that run past ``seconds``; None watches nothing.

    ``task = deadlines.watch()`` before the bounded block, ``deadlines.expired(task)`` when
    the block ends with a CancelledError (True: the deadline cancelled it, and the cancel is
    taken back: the caller raises its own error instead), ``deadlines.done(task)`` in a
    ``finally``. A task already watched here is not watched again (its first deadline is the
    earlier one). A commit does not stop for a deadline: see :meth:`put_off`."""

    __slots__ = ("_armed_at", "_expired", "_loop", "_spared", "_tasks", "_timer", "seconds")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        #: watched task -> (deadline, its cancel requests when watched), earliest first
        self._tasks: dict[asyncio.Task[Any], tuple[float, int]] = {}
        #: tasks cancelled by their deadline -> their cancel requests when watched
        self._expired: dict[asyncio.Task[Any], int] = {}
        #: tasks whose deadline passed while they waited for a commit -> as in ``_expired``
        self._spared: dict[asyncio.Task[Any], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = 0.0

    def watch(self) -> asyncio.Task[Any] | None:
        """Start the running task's clock; returns the task to hand to :meth:`done` (None
        when nothing is watched)."""
        seconds = self.seconds
        if seconds is None:
            return None
        loop = get_running_loop()
        task = current_task(loop)
        tasks = self._tasks
        if task is None or task in tasks:
            return None
        if loop is not self._loop:  # a new event loop: the old one's timer never fires
            self._reset(loop)
        deadline = loop.time() + seconds
        tasks[task] = (deadline, task.cancelling())
        if self._timer is None:
            self._arm(deadline)
        return task

    def done(self, task: asyncio.Task[Any] | None) -> None:
        """The bounded block ended (any way): stop watching ``task``."""
        if task is not None and self._tasks.pop(task, None) is None:
            if self._expired.pop(task, None) is not None:
                task.uncancel()  # cancelled, but the block ended otherwise: take it back
            else:
                self._spared.pop(task, None)  # its deadline was put off: it never comes

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether the CancelledError ending ``task``'s block came from its deadline alone
        (then the cancel is taken back), as ``asyncio.timeout()`` tells them apart."""
        if task is None:
            return False
        cancelling = self._expired.pop(task, None)
        return cancelling is not None and task.uncancel() <= cancelling

    def put_off(self, task: asyncio.Task[Any]) -> bool:
        """``task`` was cancelled while it waited for a commit's outcome (which no cancel cuts:
        the backend may store the change whatever the task does). If its deadline cancelled
        it, that cancel is taken back and comes again at the next turn of the loop, unless
        the bounded block ends first: an event whose commit went through replies with it, no
        504; a block that goes on (an async body that committed another state) is still cut.
        Returns whether something else cancelled the task too (the caller cancels it again)."""
        cancelling = self._expired.pop(task, None)
        if cancelling is None:
            return True
        task.uncancel()
        self._spared[task] = cancelling
        assert self._loop is not None
        self._loop.call_soon(self._cut, task)
        return task.cancelling() > cancelling

    def _cut(self, task: asyncio.Task[Any]) -> None:
        """A deadline put off by :meth:`put_off` whose block still runs: cancel it now."""
        cancelling = self._spared.pop(task, None)
        if cancelling is not None:
            self._expired[task] = cancelling
            task.cancel()

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        self._armed_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """The first deadline came (as the loop judges time): cancel every task past it."""
        self._timer = None
        assert self._loop is not None
        now = max(self._loop.time(), self._armed_at)
        tasks = self._tasks
        late = []
        for task, (deadline, _cancelling) in tasks.items():
            if deadline > now:
                break
            late.append(task)
        for task in late:
            self._expired[task] = tasks.pop(task)[1]
            task.cancel()
        if tasks:
            self._arm(next(iter(tasks.values()))[0])

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        old = self._loop
        if self._timer is not None and old is not None and not old.is_closed():
            self._timer.cancel()
        self._timer = None
        self._tasks.clear()
        self._expired.clear()
        self._spared.clear()
        self._loop = loop

    def __len__(self) -> int:
        return len(self._tasks)


__all__ = ["Deadlines"]
