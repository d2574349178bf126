"""``python -m bench [section ...]``: run the named benchmark sections, or all of them.

Targets are informational: the exit status is 0 whether they are met or not (it is non-zero
only when a benchmark could not run).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from . import backends, devtools, fanout, hostile, memory, peers, request_bytes, roundtrip

#: section name -> function, in the order ``python -m bench`` runs them
SECTIONS: dict[str, Callable[[], Any]] = {
    "roundtrip": roundtrip.run,
    "peers": peers.run,
    "memory": memory.run,
    "fanout": fanout.run,
    "backends": backends.run,
    "request_bytes": request_bytes.run,
    "hostile": hostile.run,
    "devtools": devtools.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="section",
        help=f"sections to run (default: all): {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    names = args.sections or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    started = time.monotonic()
    for name in names:
        SECTIONS[name]()
    print(f"bench: {', '.join(names)} done in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
