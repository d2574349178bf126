"""In-process view of where an event's time goes, without HTTP: ``python -m bench.profile_apps``.

Calls each benchmark app's ASGI callable directly in a loop (the same event request the
roundtrip section sends), prints microseconds of this process's CPU time per event (CPU time, not
wall time: another process taking the core does not count), then cProfiles app (a) with the same
clock. Not a
``python -m bench`` section: it is a diagnostic for when (a) falls behind its targets.
Options: ``-n N`` events per app (default 20000), ``--top K`` profile rows (default 25).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from typing import Any

from .apps import app_a, app_b, app_c
from .inprocess import cpu_per_event


async def _main(n: int, top: int) -> None:
    for name, app in (("a", app_a), ("b", app_b), ("c", app_c)):
        await cpu_per_event(app, n // 10)  # warm-up
        print(f"({name}) {await cpu_per_event(app, n):7.1f} us/event in-process (CPU time)")
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    await cpu_per_event(app_a, n)
    profile.disable()
    print(f"\ncProfile of (a), {n} events, by own time:")
    pstats.Stats(profile).sort_stats("tottime").print_stats(top)
    print("by cumulative time:")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_apps", description=__doc__)
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_main(args.n, args.top))


if __name__ == "__main__":
    main()
