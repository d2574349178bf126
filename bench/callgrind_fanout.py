"""Instructions per delivery of a fan-out, repeatable on a busy machine: run under callgrind
twice and subtract.

    valgrind --tool=callgrind --callgrind-out-file=f.0 python -m bench.callgrind_fanout 1000 0
    valgrind --tool=callgrind --callgrind-out-file=f.20 python -m bench.callgrind_fanout 1000 20

(Ir of the second minus Ir of the first) / (1000 * 20) is what one change costs per tab: the
streams are opened the same way in both runs (``bench.fanout.open_tabs``, in process, the same
app), so only the deliveries differ. ``--views``: the streams show a live view of a 100-item list
and the change moves one item (the ``bench fanout`` live-view part). ``--bare`` runs the baseline
instead: one asyncio queue per stream read by one task each (the ``bench fanout`` baseline, its
tasks kept between rounds).
Not a ``python -m bench`` section: a diagnostic. Uses asyncio's own loop, as ``bench fanout``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from .fanout import (
    Broadcasted,
    Round,
    ViewedList,
    _app,
    close_tabs,
    faststate_round,
    open_tabs,
    view_round,
)

WARM_UP = 2
PAYLOAD = b'event: datastar-patch-signals\ndata: signals {"broadcasted":{"value":1}}\n\n'


async def _ours(n: int, k: int, views: bool) -> None:
    app, mw = _app()
    await mw.store.start()
    if views:
        listed = await mw.store.resolve(ViewedList, None)
        assert isinstance(listed, ViewedList)
        entry = ["ViewedList", None, listed.version, ["items_view"]]
        tabs = await open_tabs(app, mw, n, entry, ending=b"</ul></div>\n\n")
        rounds = [view_round(tabs, listed) for _ in range(WARM_UP + k)]
    else:
        inst = await mw.store.resolve(Broadcasted, None)
        assert isinstance(inst, Broadcasted)
        tabs = await open_tabs(app, mw, n)
        rounds = [faststate_round(tabs, inst) for _ in range(WARM_UP + k)]
    for one in rounds[:WARM_UP]:
        await one
    started = time.monotonic()
    for one in rounds[WARM_UP:]:
        await one
    print(f"{k} changes to {n} streams took {time.monotonic() - started:.2f}s", file=sys.stderr)
    await close_tabs(tabs)
    await mw.store.close()


async def _bare(n: int, k: int) -> None:
    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in range(n)]
    current = Round(n)

    async def consume(queue: asyncio.Queue[bytes]) -> None:
        while True:
            if await queue.get() is None:
                return
            current.arrive()

    tasks = [asyncio.ensure_future(consume(q)) for q in queues]
    await asyncio.sleep(0)
    started = time.monotonic()
    for _ in range(WARM_UP + k):
        current = Round(n)
        for q in queues:
            q.put_nowait(PAYLOAD)
        await current.done.wait()
    print(f"{k} bare rounds to {n} tasks took {time.monotonic() - started:.2f}s", file=sys.stderr)
    for q in queues:
        q.put_nowait(None)  # type: ignore[arg-type]
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind_fanout", description=__doc__)
    parser.add_argument("n", type=int, help="open streams")
    parser.add_argument("k", type=int, help="changes after the warm-up")
    parser.add_argument("--views", action="store_true", help="streams showing a live view")
    parser.add_argument("--bare", action="store_true", help="the bare asyncio baseline")
    args = parser.parse_args()
    asyncio.run(_bare(args.n, args.k) if args.bare else _ours(args.n, args.k, args.views))


if __name__ == "__main__":
    main()
