"""``@view``: a State method that renders HTML kept live in every tab that shows it.

On an instance a view renders for the page: ``todo.items_view()`` returns the HTML wrapped in an
element whose id is :func:`view_element_id` (usable as a FastHTML child and, through
``__html__``, in Jinja) and subscribes the page's live stream to it. On the class it is the
descriptor itself (``TodoList.items_view.element_id(ident)``).

Who is looking: a view declared ``per_viewer=True`` is rendered once per distinct user
(``current_user()`` inside it is that user); by default a view is viewer-independent, rendered
once per change for all its tabs, and runs as an anonymous request (``current_user()`` is None,
there is no session), so it can never leak one tab's user to another.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, overload

from ._config import info_of, meta_of
from ._context import RequestContext, UserContext, _current
from ._events import render_target
from ._exceptions import ConfigurationError
from ._http import is_html, to_html

_SAFE_IDENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ViewSpec:
    """What ``@view`` records about one view method."""

    __slots__ = ("fields", "func", "name", "per_viewer")

    def __init__(
        self, func: Callable[..., Any], per_viewer: bool, fields: Iterable[str] | None
    ) -> None:
        self.func = func
        self.name = func.__name__
        self.per_viewer = per_viewer
        #: the fields the view reads (None: all of them); a change to others does not re-render
        self.fields = None if fields is None else frozenset(fields)


def view_element_id(state_name: str, ident: str | None, view_name: str) -> str:
    """The id of a view's element on the page: ``fs-<State>-<view>``, or
    ``fs-<State>-<id>-<view>`` for RECORD and COMPONENT states (an id outside
    ``[A-Za-z0-9_-]{1,64}`` is replaced by the first 16 hex digits of its SHA-256). It never
    contains a store key or a session id."""
    if ident is None:
        return f"fs-{state_name}-{view_name}"
    if not _SAFE_IDENT.fullmatch(ident):
        ident = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return f"fs-{state_name}-{ident}-{view_name}"


class ViewHTML(str):
    """Rendered view HTML: a ``str`` that FastHTML and Jinja insert unescaped."""

    __slots__ = ()

    def __html__(self) -> str:
        return str(self)

    def __ft__(self) -> Any:
        from fastcore.xml import NotStr  # optional: FastHTML apps have it

        return NotStr(str(self))


def wrap(element_id: str, inner: str) -> str:
    """The element a view lives in: morphed by its id, invisible to layout."""
    return f'<div id="{element_id}" style="display:contents">{inner}</div>'


def viewer_context(ctx: RequestContext | None, user: UserContext | None, per_viewer: bool) -> Any:
    """The request context a view renders in: the viewer's (per-viewer views), or an anonymous
    one with no session, headers or query (viewer-independent views)."""
    if ctx is None:
        return None
    if per_viewer:
        scope = ctx.scope
    else:
        path = ctx.scope.get("path", "/")
        scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
        user = None
    out = RequestContext(scope, ctx.owner)
    out._user = user
    out._sid = None if not per_viewer else ctx._sid
    out.activated = ctx.activated  # a store activated within the request still counts
    return out


@contextmanager
def rendering(ctx: Any, inst: Any) -> Iterator[None]:
    """Run a view's body in ``ctx``, with ``inst`` as the target of class-form actions."""
    token = _current.set(ctx)
    target = render_target.set(inst)
    try:
        yield
    finally:
        render_target.reset(target)
        _current.reset(token)


def render_inner(inst: Any, spec: ViewSpec, ctx: Any) -> str:
    """The HTML a view returns for ``inst`` (an FT, a string, anything with ``__html__``)."""
    with rendering(ctx, inst):
        result = spec.func(inst)
    if result is None:
        return ""
    if isinstance(result, (list, tuple)):
        return "".join(to_html(r) for r in result if is_html(r))
    if not is_html(result):
        raise TypeError(f"view {spec.name!r} returned {type(result).__name__}, not HTML")
    return to_html(result)


def element_id_of(inst: Any, spec: ViewSpec) -> str:
    return view_element_id(info_of(type(inst)).name, meta_of(inst).ident, spec.name)


class BoundView:
    """``todo.items_view``: call it to render the view for the page being built."""

    __slots__ = ("inst", "spec")

    def __init__(self, inst: Any, spec: ViewSpec) -> None:
        self.inst = inst
        self.spec = spec

    @property
    def element_id(self) -> str:
        """The id of this view's element on the page."""
        return element_id_of(self.inst, self.spec)

    def __call__(self) -> ViewHTML:
        """Render for the running request's page; its live stream then keeps it current."""
        inst, spec = self.inst, self.spec
        ctx = _current.get()
        user = ctx.user if ctx is not None and spec.per_viewer else None
        inner = render_inner(inst, spec, viewer_context(ctx, user, spec.per_viewer))
        inst._rendered()
        entry = ctx.page_states.get(meta_of(inst).key or "") if ctx is not None else None
        if entry is not None:
            if len(entry) == 3:
                entry.append([])
            if spec.name not in entry[3]:
                entry[3].append(spec.name)
        return ViewHTML(wrap(element_id_of(inst, spec), inner))


class ViewDescriptor:
    """What ``@view`` leaves on the class: the spec on the class, a :class:`BoundView` on
    instances."""

    def __init__(self, spec: ViewSpec) -> None:
        self.spec = spec
        self.__doc__ = spec.func.__doc__
        self.__wrapped__ = spec.func

    def __set_name__(self, owner: type, name: str) -> None:
        self.spec.name = name

    def element_id(self, state_cls: type[Any], ident: Any = None) -> str:
        """The element id of this view for ``state_cls`` (and a record or component id)."""
        name = info_of(state_cls).name
        return view_element_id(name, None if ident is None else str(ident), self.spec.name)

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> ViewDescriptor: ...
    @overload
    def __get__(self, obj: Any, owner: type[Any] | None = None) -> BoundView: ...
    def __get__(self, obj: Any | None, owner: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        return BoundView(obj, self.spec)


@overload
def view(func: Callable[..., Any], /) -> ViewDescriptor: ...
@overload
def view(
    *, per_viewer: bool = False, fields: Iterable[str] | None = None
) -> Callable[[Callable[..., Any]], ViewDescriptor]: ...
def view(
    func: Callable[..., Any] | None = None,
    /,
    *,
    per_viewer: bool = False,
    fields: Iterable[str] | None = None,
) -> Any:
    """Make a State method a live view: ``@view`` or ``@view(per_viewer=True, fields=[...])``.

    The method takes only ``self`` and returns HTML (a FastHTML FT, a string, or anything with
    ``__html__``). Calling it on an instance in a page handler renders it into the page; every
    tab that shows it then receives the view re-rendered after each change of the state.
    ``per_viewer=True``: it depends on who is looking (``current_user()``), rendered once per
    distinct user; otherwise once per change for every tab, as an anonymous request.
    ``fields``: the only fields it reads; changes to the others do not re-render it.
    """

    def wrap_view(f: Callable[..., Any]) -> ViewDescriptor:
        if isinstance(f, ViewDescriptor):
            raise ConfigurationError("@view applied twice")
        return ViewDescriptor(ViewSpec(f, per_viewer, fields))

    return wrap_view(func) if func is not None else wrap_view


def collect_views(cls: type[Any], field_names: Iterable[str]) -> dict[str, ViewSpec]:
    """The views of ``cls`` (and its bases); a declared field that does not exist is an error."""
    known = set(field_names)
    views: dict[str, ViewSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, ViewDescriptor):
                spec = value.spec
                unknown = sorted((spec.fields or frozenset()) - known)
                if unknown:
                    raise ConfigurationError(
                        f"view {cls.__name__}.{attr} depends on unknown field(s) {unknown}"
                    )
                views[attr] = spec
    return views


__all__ = [
    "BoundView",
    "ViewDescriptor",
    "ViewHTML",
    "ViewSpec",
    "collect_views",
    "view",
    "view_element_id",
]
