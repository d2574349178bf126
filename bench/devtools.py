"""What the devtools page costs an app's events: in process (faststate_mw.testing), the time
per event with the page off, on with nobody watching, and on with a tab watching it; and the
time to render the page with many live states.

``python -m bench devtools``. Informational: no target is enforced.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware

from faststate_mw import FastStateMiddleware, State, StateStore, UserContext, event
from faststate_mw.testing import TestClient

EVENTS = 1000
#: runs of each configuration, interleaved; the fastest counts (the machine is shared)
ROUNDS = 5
ADMIN = UserContext(id="root", roles=["admin"])


class BenchLamp(State):
    on: bool = False
    clicks: int = 0

    @event
    def toggle(self) -> None:
        self.on = not self.on
        self.clicks += 1


def app_with(store: StateStore, devtools: bool) -> Starlette:
    options: dict[str, Any] = {"devtools_path": "/_devtools"} if devtools else {}
    return Starlette(
        middleware=[Middleware(FastStateMiddleware, secret_key="k" * 32, store=store, **options)]
    )


async def per_event(devtools: bool, watched: bool) -> float:
    store = StateStore()
    app = app_with(store, devtools)
    async with TestClient(app) as client, TestClient(app) as admin:
        if watched:
            admin.login(ADMIN)
            await admin.open("/_devtools")
        action = BenchLamp.toggle()
        for _ in range(200):  # warm up
            await client.event(action)
        started = time.perf_counter()
        for _ in range(EVENTS):
            await client.event(action)
        return (time.perf_counter() - started) / EVENTS


async def render_time(states: int) -> float:
    store = StateStore()
    app = app_with(store, True)
    async with TestClient(app) as admin:
        for i in range(states):
            async with TestClient(app) as visitor:
                await visitor.event(BenchLamp.toggle())
            if i == 0:
                admin.login(ADMIN)
        await admin.get("/_devtools")
        started = time.perf_counter()
        for _ in range(20):
            await admin.get("/_devtools")
        return (time.perf_counter() - started) / 20


def run() -> None:
    print("devtools: in-process time per event (faststate_mw.testing, one session)")
    configs = (
        ("off", False, False),
        ("on, nobody watching", True, False),
        ("on, one tab watching", True, True),
    )
    best = [float("inf")] * len(configs)
    for _ in range(ROUNDS):
        for i, (_label, devtools, watched) in enumerate(configs):
            best[i] = min(best[i], asyncio.run(per_event(devtools, watched)))
    for (label, _d, _w), seconds in zip(configs, best, strict=True):
        print(f"  {label:<22} {seconds * 1e6:8.1f} µs/event (best of {ROUNDS} x {EVENTS})")
    for states in (10, 1000):
        seconds = asyncio.run(render_time(states))
        print(f"  page with {states:>5} live states: {seconds * 1000:6.2f} ms per GET")


if __name__ == "__main__":
    run()
