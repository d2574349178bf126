"""Live views on a tab's stream: which views a tab shows, and the patches that keep them current.

A tab's writer calls :func:`view_patches` after it took its signal patches from the hub's log:
for each view it shows whose data changed since it last sent it, it sends the render of the
latest committed version (after the signal patches of the same versions, so the page sees
them in version order). Renders are cached in the hub's :class:`ViewLog` per (key, view,
viewer) and shown version: one per change for a viewer-independent view, one per distinct user
(or anonymous session) for a per-viewer view, however many tabs show it. A render that raises
is logged once, and the tabs that show it get the error signal instead; the state and other
views are unaffected.
"""

from __future__ import annotations

import logging
from typing import Any

from ._config import catalog, meta_of
from ._context import RequestContext
from ._http import ERROR_SIGNAL, patch_elements, patch_signals
from ._hub import Connection
from ._store import StateStore
from ._viewlog import Committed
from ._viewspec import ViewSpec, element_id_of, render_inner, viewer_context, wrap

log = logging.getLogger("faststate_mw")

#: at most this many views per state a token may name (a state has no more views than that)
MAX_VIEWS = 64


class ViewWatch:
    """One view a tab shows: the key's index on the tab, and the version it last got."""

    __slots__ = ("index", "sent", "spec")

    def __init__(self, index: int, spec: ViewSpec, sent: int) -> None:
        self.index = index
        self.spec = spec
        self.sent = sent


def watches_for(names: list[Any], versions: list[int]) -> list[ViewWatch]:
    """The views a stream's token names (``names[i]``: the state name and its view names of
    key ``i``), those the state really has."""
    out: list[ViewWatch] = []
    for index, (state_name, view_names) in enumerate(names):
        if not isinstance(view_names, list):
            continue
        cls = catalog.class_named(state_name)
        if cls is None:
            continue
        views: dict[str, ViewSpec] = getattr(cls, "__faststate_views__", {})
        for name in dict.fromkeys(v for v in view_names[:MAX_VIEWS] if isinstance(v, str)):
            spec = views.get(name)
            if spec is not None:
                out.append(ViewWatch(index, spec, versions[index]))
    return out


def viewer_of(conn: Connection, spec: ViewSpec) -> tuple[Any, str | None]:
    """Who ``conn`` renders ``spec`` as, and the key its render is cached under: nobody for a
    viewer-independent view; for a per-viewer view the tab's user (renders shared by that
    user's tabs) or, for an anonymous tab or one whose session ended, its session (the render
    runs in that session: one visitor's render is never shown to another)."""
    if not spec.per_viewer:
        return None, None
    user = conn.user
    if user is not None and not conn.ended:
        return user, "u" + user.id
    if conn.session_id is None:  # no session to share a render with: the tab's own
        return user, "t" + conn.tab
    # session ids hold no ":"; the user, if any, too: two users never share one render
    return user, "s" + conn.session_id + ("" if user is None else ":" + user.id)


def render_event(inst: Any, spec: ViewSpec, ctx: RequestContext | None, user: Any) -> bytes:
    """The ``datastar-patch-elements`` event of ``spec`` rendered on ``inst`` (or the error
    signal if the view raises: logged, and nothing else is affected)."""
    try:
        inner = render_inner(inst, spec, viewer_context(ctx, user, spec.per_viewer))
    except Exception:
        log.exception("view %s.%s failed to render", type(inst).__name__, spec.name)
        message = f"view {spec.name!r} failed to render"
        error: dict[str, Any] = {"error": message, "status": 500, "code": "view_failed"}
        return patch_signals({ERROR_SIGNAL: error}).encode()
    return patch_elements(wrap(element_id_of(inst, spec), inner)).encode()


def _shadow(cls: type[Any], rec: Committed, key: str, ident: str | None, store: Any) -> Any:
    """An instance holding the committed fields of ``rec`` (what the view renders)."""
    inst = cls.model_construct(**rec.fields)
    meta = meta_of(inst)
    meta.key, meta.ident, meta.version, meta.store = key, ident, rec.version, store
    return inst


def view_patches(
    conn: Connection,
    store: StateStore,
    ctx: RequestContext,
    entries: list[tuple[str, str, str | None, int, Any]],
    index: int,
) -> bytes:
    """The view patches of key ``index`` that ``conn`` is due after the signal patches of that
    key it just took. Called once per tab per change: the common case (cached renders) costs
    a few lookups, no copy."""
    hub = store.hub
    key = conn.keys[index]
    if index in conn.resync or conn not in hub.subscribers.get(key, ()):
        return b""  # a snapshot will render it, or this user may no longer see the state
    views = hub.views
    rec = views.committed.get(key)
    if rec is None or conn.versions[index] < rec.version:
        return b""
    out: list[bytes] = []
    shadow = None
    for watch in conn.views:
        if watch.index != index:
            continue
        spec = watch.spec
        shown = rec.shown_version(spec.fields)
        if shown <= watch.sent:
            continue
        user, viewer = viewer_of(conn, spec)
        data = views.cached(key, spec.name, viewer, shown)
        if data is None:
            if shadow is None:
                cls = catalog.class_named(entries[index][0])
                if cls is None:
                    continue
                shadow = _shadow(cls, rec, key, entries[index][2], store)
            data = render_event(shadow, spec, ctx, user)
            views.render_count += 1
            views.store(key, spec.name, viewer, shown, data)
        out.append(data)
        watch.sent = shown
    # one view: the cached render itself (the hub shares one message per render object)
    return out[0] if len(out) == 1 else b"".join(out)


def resync_views(conn: Connection, index: int, inst: Any, store: StateStore, ctx: Any) -> bytes:
    """The views of key ``index`` rendered on ``inst`` (a resync: the tab may have missed any
    number of changes)."""
    out = bytearray()
    key = conn.keys[index]
    views = store.hub.views
    rec = views.committed.get(key)
    meta = meta_of(inst)
    version = meta.version
    for watch in conn.views:
        if watch.index != index:
            continue
        spec = watch.spec
        user, viewer = viewer_of(conn, spec)
        shown = rec.shown_version(spec.fields) if rec and rec.version == version else version
        # the live instance mid-change (locked) is rendered but not shared with other tabs
        data = None if meta.locked() else views.cached(key, spec.name, viewer, shown)
        if data is None:
            data = render_event(inst, spec, ctx, user)
            views.render_count += 1
            if not meta.locked():
                views.store(key, spec.name, viewer, shown, data)
        out += data
        watch.sent = shown
    return bytes(out)


def view_keys(conn: Connection) -> list[str]:
    """The keys (one per view shown) whose committed fields the hub keeps for ``conn``."""
    return [conn.keys[w.index] for w in conn.views]


__all__ = ["ViewWatch", "render_event", "resync_views", "view_keys", "view_patches", "watches_for"]
