"""Hearing that the server is about to stop, before it waits for open connections to end.

Servers finish in-flight responses before they send the ASGI ``lifespan.shutdown`` event, and a
live stream never finishes by itself: uvicorn, by default, would wait for the streams forever.
So the middleware also listens to the stop signals (SIGTERM, SIGINT) and ends its streams at
once; the handler the server installed still runs right after. Nothing of the server is
patched: the previous handler is kept and called, and put back at shutdown.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("faststate_mw")

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def chain_exit_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Run ``callback()`` when SIGTERM or SIGINT arrives, then the handler that was there before.
    Returns a function that puts the previous handlers back. Outside the main thread (where
    Python cannot set signal handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in EXIT_SIGNALS:
        previous = signal.getsignal(sig)
        handler = _chained(callback, previous)
        signal.signal(sig, handler)
        installed[sig] = (handler, previous)

    def restore() -> None:
        for sig, (handler, previous) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)

    return restore


def _chained(
    callback: Callable[[], None], previous: Any
) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            callback()
        except Exception:  # the server's own handler must run whatever happens here
            log.exception("faststate_mw: ending streams at a stop signal failed")
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


__all__ = ["chain_exit_signals"]
