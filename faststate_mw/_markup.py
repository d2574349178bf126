"""Datastar 1.0 attributes for FastHTML components and plain HTML templates.

Datastar 1.0 writes attribute keys with colons (``data-on:click``). FastHTML's keyword form
``data_on_click=`` renders ``data-on-click``, which Datastar 1.0 silently ignores, so these helpers
return attribute dicts instead: pass them positionally to a FastHTML component
(``Button("+", on("click", Counter.increment(1)))``) or render them with :func:`attrs_html` in a
template (``<button {{ attrs_html(on("click", ...)) }}>``).

``bind``, ``text``, ``show`` and ``init`` come from datastar-py's ``attribute_generator``; ``on``
and ``attr`` stay hand-written: the generator marks every keyed attribute ``__case.kebab``
(``data-on:click__case.kebab``) and writes ``data-attr`` as one object, longer forms of the same
Datastar 1.0 attributes that templates and tests match on.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from datastar_py.attributes import attribute_generator as data

from ._config import DEFAULT_PREFIX
from ._context import _current
from ._http import ERROR_SIGNAL, ERROR_SIGNAL_INITIAL
from ._state import State, signals_attribute

#: Where pages load the Datastar 1.0 client from unless told otherwise.
DATASTAR_CDN = "https://cdn.jsdelivr.net/gh/starfederation/datastar@v1.0.1/bundles/datastar.js"


def _attr(generated: Mapping[str, str | bool]) -> dict[str, str]:
    """An attribute from datastar-py's ``attribute_generator`` as a plain dict."""
    return {k: str(v) for k, v in generated.items()}


def _signal_path(target: type[State] | State | str, field: str | None) -> str:
    if isinstance(target, str):
        if field is not None:
            raise TypeError("pass either a signal path string or (StateClass, field)")
        return target.removeprefix("$")
    if field is None:
        raise TypeError("name the field: bind(Counter, 'count')")
    return str(target.signal_path(field))


def _modifiers(mods: dict[str, Any]) -> str:
    out = ""
    for name, value in mods.items():
        if value is False or value is None:
            continue
        out += f"__{name}" if value is True else f"__{name}.{value}"
    return out


def on(event: str, action: Any, **modifiers: Any) -> dict[str, str]:
    """``data-on:<event>``: ``on("click", Counter.increment(1))``;
    modifiers as keywords: ``on("input", action, debounce="300ms")``. An empty action (an event
    the current user may not use) gives no attribute at all."""
    action = str(action)
    if not action:  # an event the current user may not use: attach nothing
        return {}
    return {f"data-on:{event}{_modifiers(modifiers)}": action}


def bind(target: type[State] | State | str, field: str | None = None) -> dict[str, str]:
    """Two-way binding of an input to a signal: ``bind(Counter, "text")`` (or an instance,
    for COMPONENT states: ``bind(widget, "text")``)."""
    return _attr(data.bind(_signal_path(target, field)))


def text(target: type[State] | State | str, field: str | None = None) -> dict[str, str]:
    """``data-text``: ``text(Counter, "count")`` or any expression ``text("$a + $b")``."""
    if isinstance(target, str) and field is None and not _is_path(target):
        return _attr(data.text(target))
    return _attr(data.text("$" + _signal_path(target, field)))


def show(expression: str) -> dict[str, str]:
    """``data-show``: show the element while ``expression`` is truthy."""
    return _attr(data.show(expression))


def attr(name: str, expression: str) -> dict[str, str]:
    """``data-attr:<name>``: set an attribute from an expression."""
    return {f"data-attr:{name}": expression}


def init(action: Any) -> dict[str, str]:
    """``data-init``: run an expression (e.g. an action) when the element loads."""
    return _attr(data.init(str(action)))


def signals(*states: State) -> dict[str, str]:
    """One ``data-signals`` attribute for several states: ``Div(signals(counter, visitors))``
    puts both on the page (with the error signal), as ``state.signal_attrs()`` does for one."""
    merged: dict[str, Any] = {ERROR_SIGNAL: dict(ERROR_SIGNAL_INITIAL)}
    for s in states:
        merged.update(s.signals())
        s._rendered()
    return {"data-signals": signals_attribute(merged)}


def _is_path(s: str) -> bool:
    body = s.removeprefix("$")
    return bool(body) and all(part.isidentifier() for part in body.split("."))


def attrs_html(*attr_dicts: dict[str, str], **more: str) -> str:
    """Render attribute dicts as escaped HTML (mark it safe in your template engine)."""
    merged: dict[str, str] = {}
    for d in attr_dicts:
        merged.update(d)
    merged.update(more)
    return " ".join(f'{k}="{escape(str(v), quote=True)}"' for k, v in merged.items())


def datastar_script(src: str | None = None) -> str:
    """The ``<script type="module">`` tag that loads Datastar 1.0.

    From ``src`` if given; else, inside a request, from where that request's app loads it: its
    self-hosted copy at ``<prefix>/datastar.js`` (``FastStateMiddleware(datastar_js=path)``) or
    the official CDN. Outside a request (FastHTML ``hdrs=``, built before any request) the tag
    points at ``/_faststate/datastar.js``, which each app's middleware answers by its own
    setting: its file, or a redirect to the CDN. With another ``prefix`` call it in the page.
    """
    if src is None:
        ctx = _current.get()
        if ctx is None:
            src = f"{DEFAULT_PREFIX}/datastar.js"
        else:
            src = getattr(ctx.owner, "datastar_src", None) or DATASTAR_CDN
    return f'<script type="module" src="{escape(src, quote=True)}"></script>'


def error_attrs() -> dict[str, str]:
    """Attributes for an element that shows the last event error (``$_faststate.error``)."""
    return {
        "data-show": "$_faststate.error",
        "data-text": "$_faststate.error",
        # a new request clears the last error
        "data-on:datastar-fetch": "evt.detail.type === 'started' && ($_faststate.error = '')",
        "role": "alert",
    }


__all__ = [
    "DATASTAR_CDN",
    "attr",
    "attrs_html",
    "bind",
    "datastar_script",
    "error_attrs",
    "init",
    "on",
    "show",
    "signals",
    "text",
]
