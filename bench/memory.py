"""Memory of SESSION states: 100,000 sessions each touch a small state, then their ttl passes.

Reports bytes per live instance (beside a bare pydantic model kept in a dict, as a ratio) and
the process's resident size before, at the peak, and after eviction.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import tracemalloc
from typing import Any

from pydantic import BaseModel

from faststate_mw import State, StateConfig, StateStore
from faststate_mw._context import RequestContext, _current

SESSIONS = 100_000
SAMPLE = 10_000
TTL = 600.0


class Cart(State):
    __faststate__ = StateConfig(ttl=TTL)
    items: int = 0
    note: str = ""


class BareCart(BaseModel):
    items: int = 0
    note: str = ""


class _Owner:
    user_loader = staticmethod(lambda scope: None)

    def read_session(self, scope: Any) -> tuple[str, str]:
        return str(scope["sid"]), ""  # an anonymous session

    def session_binding(self, session_id: str, user: Any) -> str:
        return ""

    def session_ended(self, session_id: str, user: Any) -> None:  # pragma: no cover
        raise AssertionError

    def new_session_id(self) -> str:  # pragma: no cover - every scope names its session
        raise AssertionError


def rss() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def trim() -> None:
    """Give freed heap back to the OS (glibc keeps it otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def touch(store: StateStore, count: int, offset: int = 0) -> None:
    owner = _Owner()
    for i in range(offset, offset + count):
        ctx = RequestContext({"type": "http", "headers": [], "sid": f"s{i:07d}"}, owner)
        token = _current.set(ctx)
        inst = store.resolve_now(Cart, ctx)
        inst.items = 1
        _current.reset(token)


def traced_bytes(fn: Any) -> int:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = fn()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return after - before


def run() -> None:
    print("\n== memory: SESSION states of 100,000 sessions, then eviction ==")
    now = [0.0]
    store = StateStore(clock=lambda: now[0])

    # bytes per live instance, measured on a sample with tracemalloc
    def sample() -> StateStore:
        store = StateStore(clock=lambda: now[0])
        touch(store, SAMPLE)
        return store

    ours = traced_bytes(sample) / SAMPLE
    bare = traced_bytes(
        lambda: {f"session:s{i:07d}:Cart": BareCart(items=1) for i in range(SAMPLE)}
    )
    bare /= SAMPLE
    print(f"  bytes per live instance   faststate_mw {ours:8.0f}")
    print(f"                            bare dict of pydantic models {bare:8.0f}")
    print(f"                            ratio {ours / bare:.2f}")

    trim()
    before = rss()
    touch(store, SESSIONS)
    peak = rss()
    assert len(store) == SESSIONS
    now[0] += TTL + 1
    evicted = asyncio.run(store.sweep())
    del evicted[:]
    trim()
    after = rss()
    mib = 1024 * 1024
    print(f"  live instances at peak    {SESSIONS:,}; left after eviction {len(store)}")
    print(
        f"  resident size             before {before / mib:7.1f} MiB   peak {peak / mib:7.1f} MiB"
        f"   after eviction {after / mib:7.1f} MiB"
    )
    print(
        f"  resident growth per session at peak {(peak - before) / SESSIONS:6.0f} B;"
        f" kept after eviction {(after - before) / mib:5.1f} MiB"
        f" ({(after - before) / max(peak - before, 1):.0%} of the growth)"
    )
