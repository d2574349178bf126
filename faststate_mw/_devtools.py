"""The devtools page: one app's live states, streams, recent events and per-key history, for
its admins, kept live by faststate_mw itself.

The page shows one view of a GLOBAL devtools state (one per store; its class requires the
configured role, so its stream is authorized like any state's). While some tab watches it, a
ticker bumps that state once a second: the view re-renders once per tick for every watching
tab, from the store's tables and its :class:`Recorder`. With nobody watching the ticker stops,
and events pay only for the recorder (a few appends per event).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import weakref
from collections import deque
from typing import Any

from ._config import StateConfig, catalog, info_of, meta_of
from ._context import RequestContext, _current
from ._devtools_html import (
    STYLE,
    events_section,
    history_section,
    rate_chart,
    states_section,
    streams_section,
)
from ._exceptions import ConfigurationError, FastStateError, MethodNotAllowed
from ._http import Reply, send_error
from ._markup import datastar_script
from ._recorder import Recorder
from ._scopes import StateScope
from ._state import State
from ._store import StateStore
from ._types import Scope, Send
from ._viewspec import view

log = logging.getLogger("faststate_mw")

#: seconds of the chart, and seconds a devtools state is kept ticking with nobody watching
WINDOW = 60
IDLE_TICKS = 10

#: each store's devtools (a view finds them through the store it renders for)
_tools: weakref.WeakKeyDictionary[StateStore, Devtools] = weakref.WeakKeyDictionary()
#: the devtools state class of each role
_classes: dict[str, type[State]] = {}


def _panel(self: Any) -> str:
    meta = meta_of(self)
    tools = _tools.get(meta.store) if meta.store is not None else None
    return "<p>devtools are off</p>" if tools is None else tools.render(meta.key or "")


def devtools_state(role: str) -> type[State]:
    """The GLOBAL state whose ``panel`` view is the devtools page, readable by ``role`` only."""
    cls = _classes.get(role)
    if cls is None:
        suffix = "" if role == "admin" else "_" + hashlib.sha256(role.encode()).hexdigest()[:8]
        namespace = {
            "__module__": __name__,
            "__qualname__": "FastStateDevtools",
            "__annotations__": {"tick": "int"},
            "__doc__": "The devtools page's state: a tick that re-renders its view.",
            "tick": 0,
            "__faststate__": StateConfig(
                scope=StateScope.GLOBAL, roles=(role,), name="FastStateDevtools" + suffix
            ),
            "panel": view(_panel),
        }
        made: type[State] = type(State)("FastStateDevtools", (State,), namespace)  # type: ignore[misc]
        _classes[role] = cls = made
    return cls


class Devtools:
    """One app's devtools page at ``path``, for signed-in users with ``role``; the last
    ``events`` events are listed. ``reserved``: the event prefix first, then the other paths
    the middleware serves."""

    def __init__(
        self, store: StateStore, path: str, role: str, events: int, reserved: list[str]
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
            raise ConfigurationError("devtools_path must start with '/', e.g. '/_devtools'")
        prefix = reserved[0] + "/"  # the event prefix: <prefix>/<State>/<event> are events
        if path in reserved or (path.startswith(prefix) and "/" in path[len(prefix) :]):
            raise ConfigurationError(f"devtools_path {path!r} collides with faststate's own paths")
        if not isinstance(role, str) or not role.strip():
            raise ConfigurationError("devtools_role must be a non-empty role name")
        if isinstance(events, bool) or not isinstance(events, int) or not 1 <= events <= 1000:
            raise ConfigurationError("devtools_events must be a number of events, 1 to 1000")
        self.store = store
        self.path = path
        self.events = events
        self.state_cls = devtools_state(role)
        if store.observer.recorder is None:  # the events and history shown come from it
            store.observer.recorder = Recorder(max(200, events))
        self.recorder: Recorder = store.observer.recorder
        #: events recorded in each of the last WINDOW seconds, oldest first
        self.rates: deque[int] = deque([0] * WINDOW, maxlen=WINDOW)
        self._seen = 0
        #: the key of the devtools state (known once the page was served)
        self.key = ""
        self._task: asyncio.Task[None] | None = None
        _tools[store] = self

    # -- the page ------------------------------------------------------------------------------
    async def serve(self, scope: Scope, send: Send, ctx: RequestContext) -> None:
        """``GET <devtools_path>``: the page for users with the role; 401 for anonymous
        visitors, 403 for other users."""
        reply = Reply(send)
        if scope["method"] not in ("GET", "HEAD"):
            await send_error(scope, reply, MethodNotAllowed("the devtools page is read with GET"))
            return
        cls = self.state_cls
        name = info_of(cls).name
        if catalog.class_named(name) is not cls:  # a test restored the catalog without it
            catalog.add(cls, name)
        try:
            await ctx.load_user()
            inst: Any = await self.store.resolve(cls, ctx)
        except FastStateError as err:
            await send_error(scope, reply, err)
            return
        self.key = meta_of(inst).key or ""
        self._start_ticker()  # first: it fills the chart from the recorded events
        body = page(str(inst.panel())).encode()
        headers = [
            (b"content-type", b"text/html; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-frame-options", b"SAMEORIGIN"),
            (b"content-security-policy", b"frame-ancestors 'self'"),
        ]
        await reply.full(200, headers, b"" if scope["method"] == "HEAD" else body)

    def render(self, own_key: str) -> str:
        """The panel's HTML, as it is now."""
        store = self.store
        now = time.strftime("%H:%M:%S")
        summary = (
            f'<p id="devtools-summary">{len(store)} live states, '
            f"{len(store.hub.tabs)} open streams, {self.recorder.total} events recorded; "
            f"updated {now}</p>"
        )
        return "".join(
            (
                summary,
                # the samples, and the second under way
                rate_chart([*self.rates, self.recorder.total - self._seen][-WINDOW:]),
                states_section(store, own_key),
                streams_section(store.hub, store.hub.now),
                events_section(self.recorder, self.events, own_key),
                history_section(self.recorder, own_key),
            )
        )

    # -- the ticker ----------------------------------------------------------------------------
    def _start_ticker(self) -> None:
        task = self._task
        if task is None or task.done():
            self._prefill()
            self._task = asyncio.get_running_loop().create_task(self._tick_forever())

    def _prefill(self) -> None:
        """The chart from the recorded events' times (when nobody watched, nothing sampled)."""
        now = time.time()
        counts = [0] * WINDOW
        for rec in list(self.recorder.events):
            age = int(now - rec.at)
            if 0 <= age < WINDOW:
                counts[WINDOW - 1 - age] += 1
        self.rates.extend(counts)
        self._seen = self.recorder.total

    def sample(self) -> None:
        """Count the events recorded since the last sample into the chart."""
        total = self.recorder.total
        self.rates.append(total - self._seen)
        self._seen = total

    async def tick(self) -> bool:
        """One tick: sample, and re-render the page for the tabs that watch it. False when
        nobody watches it."""
        self.sample()
        inst: Any = self.store.get(self.key) if self.store.hub.subscribers.get(self.key) else None
        if not isinstance(inst, self.state_cls):
            return False
        await inst.update(tick=inst.tick + 1)
        return True

    async def _tick_forever(self) -> None:
        _current.set(None)  # the ticker is no request: its changes are nobody's
        idle = 0
        try:
            while self.store.started and idle < IDLE_TICKS:
                await asyncio.sleep(1.0)
                try:
                    idle = 0 if await self.tick() else idle + 1
                except Exception:  # a failed tick (a backend hiccup) must not end the page
                    log.debug("devtools: a tick failed", exc_info=True)
                    idle += 1
        finally:
            self._task = None


def page(panel: str) -> str:
    """The standalone devtools page around the panel view."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>faststate_mw devtools</title><style>{STYLE}</style>{datastar_script()}"
        "</head><body><h1>faststate_mw devtools</h1>"
        "<p>Live states, streams and events of this app and worker; it updates every second "
        "while open. Session ids are shown as …, private fields and secrets never.</p>"
        f"{panel}</body></html>"
    )


__all__ = ["Devtools", "devtools_state", "page"]
