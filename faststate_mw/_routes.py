"""Checks of the app's own routes, run once when the middleware starts (ASGI lifespan).

FastHTML passes the session dict to any page parameter whose name is a prefix of "session"
(``s``, ``sess``, ``session``), before it looks at the annotation: ``def page(s: Counter)`` gets a
dict, not the state, and fails later with an ``AttributeError`` or shows ``undefined``. Such
routes are found here, from the app's routes, and reported with the fix.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from ._context import UserContext
from ._exceptions import ConfigurationError
from ._state import State


def check_routes(app: Any) -> None:
    """Raise ConfigurationError naming every route whose FastHTML handler would get the
    session dict for a State (or UserContext) parameter."""
    problems = [
        f"{path}: parameter {name!r} ({anno.__name__})"
        for path, sig in _fasthtml_handlers(getattr(app, "routes", None) or ())
        for name, anno in _injected(sig)
        if "session".startswith(name.lower())
    ]
    if problems:
        raise ConfigurationError(
            "FastHTML passes the session dict to a page parameter whose name is a prefix of "
            f"'session', whatever its annotation: {'; '.join(problems)}. Rename the "
            "parameter (e.g. `counter: Counter`)"
        )


def _injected(sig: inspect.Signature) -> Iterator[tuple[str, type]]:
    for name, param in sig.parameters.items():
        anno = param.annotation
        if isinstance(anno, type) and issubclass(anno, (State, UserContext)):
            yield name, anno


def _fasthtml_handlers(
    routes: Iterable[Any], prefix: str = ""
) -> Iterator[tuple[str, inspect.Signature]]:
    """(path, signature FastHTML injects by) of each FastHTML page handler, mounts included."""
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        inner = getattr(route, "routes", None)
        if inner:  # a Mount or a sub-router
            yield from _fasthtml_handlers(inner, path)
            continue
        sig = _fasthtml_signature(getattr(route, "endpoint", None))
        if sig is not None:
            yield path or "/", sig


def _fasthtml_signature(endpoint: Any) -> inspect.Signature | None:
    """FastHTML wraps each handler in a closure that keeps the handler's signature (``sig``);
    read it there (None: not a FastHTML handler)."""
    code = getattr(endpoint, "__code__", None)
    if code is None or not str(getattr(endpoint, "__module__", "")).startswith("fasthtml"):
        return None
    cells = dict(zip(code.co_freevars, endpoint.__closure__ or (), strict=False))
    cell = cells.get("sig")
    sig = cell.cell_contents if cell is not None else None
    return sig if isinstance(sig, inspect.Signature) else None


__all__ = ["check_routes"]
