"""The ASGI lifespan of one app's store: start it before the app's startup, close it after the
app's shutdown, and end live streams as soon as the server is told to stop.

Servers finish open responses before they send ``lifespan.shutdown``, and a live stream never
finishes by itself, so the store also listens to the stop signals (see ``_signals.py``). An app
that does not speak lifespan gets it answered here.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ._exceptions import ConfigurationError
from ._routes import check_routes
from ._signals import chain_exit_signals
from ._store import StateStore
from ._types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("faststate_mw")


class Lifespan:
    """Runs one ``lifespan`` connection for ``app`` around ``store``."""

    def __init__(self, app: ASGIApp, store: StateStore) -> None:
        self.app = app
        self.store = store
        self._restore_signals: Any = lambda: None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":  # pragma: no cover - servers start first
            await self.app(scope, receive, send)
            return
        if not await self._start(scope, send):
            return
        replay: list[Message] = [message]
        app_started = False

        async def app_receive() -> Message:
            if replay:
                return replay.pop()
            return await receive()

        async def app_send(out: Message) -> None:
            nonlocal app_started
            if out["type"] == "lifespan.startup.complete":
                app_started = True
            elif out["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await self.close()
            await send(out)

        try:
            await self.app(scope, app_receive, app_send)
        except BaseException:
            if app_started:
                await self.close()
                raise
            # the app does not support lifespan: answer it ourselves
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await self.close()
            await send({"type": "lifespan.shutdown.complete"})

    async def _start(self, scope: Scope, send: Send) -> bool:
        """Check the app's routes and start the store; False (reported) when it cannot."""
        try:
            check_routes(scope.get("app"))
        except ConfigurationError as exc:  # as Starlette's router does: report, then raise
            await send({"type": "lifespan.startup.failed", "message": f"faststate_mw: {exc}"})
            raise
        try:
            await self.store.start()
        except Exception as exc:
            log.error("faststate_mw could not start: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": f"faststate_mw: {exc}"})
            return False
        # servers wait for open responses before they send lifespan.shutdown: end the live
        # streams as soon as a stop signal arrives, or the server would wait for them forever
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            loop.call_soon_threadsafe(self.store.begin_shutdown)

        self._restore_signals = chain_exit_signals(stopping)
        return True

    async def close(self) -> None:
        """Put the stop signals back and close the store (streams, saves, backend)."""
        self._restore_signals()
        try:
            await self.store.close()
        except Exception:
            log.exception("faststate_mw: closing the store failed")


__all__ = ["Lifespan"]
