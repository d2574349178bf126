"""``@event`` and ``@requires_auth``: State methods become endpoints and Datastar action strings.

On the class an event gives its action: ``Counter.increment(5)`` is
``@post('/_faststate/Counter/increment?amount=5')``. On an instance it is the plain method.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, TypeVar, overload
from urllib.parse import quote, urlencode

from datastar_py.attributes import JSExpression, action_generator

from ._auth import AuthRule
from ._config import DEFAULT_PREFIX, info_of
from ._context import _current
from ._eventspec import EventSpec, build_spec
from ._exceptions import ConfigurationError, FastStateError
from ._http import TAB_SIGNAL

F = TypeVar("F", bound=Callable[..., Any])

#: the instance a view is rendering: class-form actions of its class inside it target it
render_target: ContextVar[Any] = ContextVar("faststate_render_target", default=None)

_EXPRESSION = re.compile(r"[^'\\\n\r<>]{1,500}")


class Expr:
    """An event argument whose value the browser computes when the action runs:
    ``TodoList.add(text=expr(TodoList.ref("draft")))`` or ``expr("evt.target.value")``. The
    value arrives in the query string like any argument and is validated the same way."""

    __slots__ = ("code",)

    def __init__(self, code: str) -> None:
        if not isinstance(code, str) or not _EXPRESSION.fullmatch(code):
            raise ConfigurationError(
                "expr() takes a Datastar expression of 1-500 characters without quotes (')"
                ", backslashes, newlines or angle brackets"
            )
        self.code = code

    def __repr__(self) -> str:
        return f"expr({self.code!r})"


def expr(code: str) -> Expr:
    """A browser-side value for an event argument: a Datastar expression such as
    ``"$todoList.draft"`` or ``"evt.target.value"``, sent URL-encoded in the action's query."""
    return Expr(code)


class EventDescriptor:
    """What ``@event`` leaves on the class: an action factory on the class, the method on
    instances."""

    def __init__(self, spec: EventSpec) -> None:
        self.spec = spec
        self.__doc__ = spec.func.__doc__
        self.__wrapped__ = spec.func

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.spec.name and self.spec.setter_field is None:
            self.spec.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> EventAction: ...
    @overload
    def __get__(self, obj: Any, owner: type[Any] | None = None) -> Callable[..., Any]: ...
    def __get__(self, obj: Any | None, owner: type[Any] | None = None) -> Any:
        if obj is None:
            assert owner is not None
            return EventAction(owner, self.spec)
        return types.MethodType(self.spec.func, obj)


class EventAction:
    """``MyState.my_event``: call it for the Datastar action string, or ask for its ``url()``.

    Made from an instance (``state.actions.my_event``) it is aimed at that instance: its
    component or record id rides in the URL, and ownership can be checked."""

    __slots__ = ("instance", "spec", "state_cls")

    def __init__(self, state_cls: type[Any], spec: EventSpec, instance: Any | None = None) -> None:
        self.state_cls = state_cls
        self.spec = spec
        self.instance = instance

    def url(self, *args: Any, **kwargs: Any) -> str:
        """The event's URL with the given arguments in its query string (no :func:`expr`
        arguments: those exist only in the action)."""
        url, exprs = self._url(args, kwargs)
        if exprs:
            raise TypeError("an expr() argument has no plain URL: call the action instead")
        return url

    def _url(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]]]:
        spec = self.spec
        info = info_of(self.state_cls)
        if spec.path is not None:
            base = spec.path
        else:
            ctx = _current.get()
            prefix = ctx.owner.prefix if ctx is not None else DEFAULT_PREFIX
            base = f"{prefix}/{info.name}/{spec.name}"
        query, exprs = _query(spec, args, kwargs)
        ident = self._ident(info)
        if ident is not None:
            ident_name = info.identity
            if ident_name is not None:
                pair = urlencode([(ident_name, ident)], quote_via=quote)
                query = f"{query}&{pair}" if query else pair
        return (f"{base}?{query}" if query else base), exprs

    def _ident(self, info: Any) -> str | None:
        """The record or component id the action carries: the instance's; for the class form
        of a RECORD or COMPONENT state inside a request, the instance a view is rendering or
        the record id the request names; else a clear error (the action could never work)."""
        if self.instance is not None:
            return self.instance.identity  # type: ignore[no-any-return]
        ident_name = info.identity
        if ident_name is None:
            return None
        target = render_target.get()
        if target is not None and type(target) is self.state_cls:
            return target.identity  # type: ignore[no-any-return]
        ctx = _current.get()
        if ctx is None:
            return None
        if ident_name == "record_id":
            for source in (ctx.scope.get("path_params") or {}, ctx.request.query_params):
                for name in ("record_id", "id"):
                    value = source.get(name)
                    if value not in (None, ""):
                        return str(value)
        raise ConfigurationError(
            f"{self.state_cls.__name__}.{self.spec.name}() on the class cannot tell which "
            f"{info.scope} instance it targets here: use "
            f"instance.actions.{self.spec.name}()"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        """The Datastar action; an empty string when the current user may not use the event
        (see :attr:`allowed`)."""
        if not self.allowed:
            return ""
        url, exprs = self._url(args, kwargs)
        target: str | JSExpression = url
        if exprs:  # expr() arguments: the URL is built in the browser when the action runs
            literal = json.dumps(url)
            for i, (name, code) in enumerate(exprs):
                sep = "&" if ("?" in url or i) else "?"
                literal += f" + {json.dumps(f'{sep}{quote(name)}=')} + encodeURIComponent({code})"
            target = JSExpression(literal)
        fetch = getattr(action_generator, self.spec.method.lower())
        return str(fetch(target, include_signals=self.signal_filter()))

    def signal_filter(self) -> JSExpression:
        """The signals this action sends (Datastar's ``filterSignals.include``): its state's
        namespace (or, for flat signals, its fields), the top-level signals named like its
        arguments, and the tab signal live sync needs; never the rest of the page. Signals
        with a leading underscore (``_faststate``) are never sent (Datastar's default)."""
        info = info_of(self.state_cls)
        ns = info.namespace_for(self.instance.identity if self.instance is not None else None)
        exact = [f"{TAB_SIGNAL}.tab", *(p.name for p in self.spec.params)]
        if ns is None:
            exact += info.fields
            alternatives = [f"{re.escape(n)}$" for n in dict.fromkeys(exact)]
        else:
            alternatives = [f"{re.escape(ns)}\\.", *(f"{re.escape(n)}$" for n in exact)]
        return JSExpression(f"/^({'|'.join(alternatives)})/")

    @property
    def allowed(self) -> bool:
        """Whether the running request's user may call this event, as far as is cheap to know:
        sign-in, permissions and roles of the event and its state; ownership only when the
        action was made from an instance. True outside a request."""
        ctx = _current.get()
        state_rule = info_of(self.state_cls).auth
        if ctx is None or not (self.spec.auth.requires_auth or state_rule.requires_auth):
            return True
        try:
            user = ctx.user
        except FastStateError:  # an async user_loader not awaited yet: cannot tell cheaply
            return True
        if state_rule.failure(user) is not None:
            return False
        return self.spec.auth.failure(user, self.instance) is None

    def __str__(self) -> str:
        return self()

    def __repr__(self) -> str:
        return f"<event {self.state_cls.__name__}.{self.spec.name}: {self()}>"

    def __html__(self) -> str:
        return self()


class ActionSet:
    """``state.actions``: the events of one instance, as action factories aimed at it."""

    __slots__ = ("instance",)

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def __getattr__(self, name: str) -> EventAction:
        cls = type(self.instance)
        spec = info_of(cls).events.get(name)
        if spec is None:
            raise AttributeError(f"{cls.__name__} has no event {name!r}")
        return EventAction(cls, spec, self.instance)


def _query(
    spec: EventSpec, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, list[tuple[str, str]]]:
    if len(args) > len(spec.params):
        raise TypeError(f"{spec.name}() takes {len(spec.params)} arguments, got {len(args)}")
    values: dict[str, Any] = {}
    for p, v in zip(spec.params, args, strict=False):
        values[p.name] = v
    for k, v in kwargs.items():
        if k not in spec.param_names:
            raise TypeError(f"{spec.name}() got an unexpected argument {k!r}")
        if k in values:
            raise TypeError(f"{spec.name}() got multiple values for {k!r}")
        values[k] = v
    pairs = [
        (k, _url_value(v)) for k, v in values.items() if v is not None and not isinstance(v, Expr)
    ]
    exprs = [(k, v.code) for k, v in values.items() if isinstance(v, Expr)]
    return urlencode(pairs, quote_via=quote), exprs


def _url_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (str, int, float)):
        return str(v)
    if hasattr(v, "model_dump_json"):
        return str(v.model_dump_json())
    return json.dumps(v, separators=(",", ":"), default=str)


@overload
def event(func: Callable[..., Any], /) -> EventDescriptor: ...
@overload
def event(
    *,
    method: str = "POST",
    path: str | None = None,
    name: str | None = None,
    requires_auth: bool = False,
    permissions: tuple[str, ...] | list[str] = (),
    roles: tuple[str, ...] | list[str] = (),
    owner_only: bool = False,
    owner_field: str | None = None,
) -> Callable[[Callable[..., Any]], EventDescriptor]: ...
def event(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a State method an event endpoint.

    ``@event`` or ``@event(method="GET", path="/custom/url")``. The method may be sync or async, or
    an (async) generator that yields progress. Its arguments are validated from its annotations.

    Options: ``method`` (default ``POST``), ``path`` (a URL of its own instead of
    ``<prefix>/<State>/<event>``), ``name`` (in the URL); and the rules of :func:`requires_auth`:
    ``requires_auth``, ``permissions`` (all needed), ``roles`` (one needed), ``owner_only`` (the
    user must own the instance: its ``user_id`` / ``owner_id`` field, or ``owner_field``).
    """

    def wrap(f: Callable[..., Any]) -> EventDescriptor:
        if isinstance(f, EventDescriptor):
            raise ConfigurationError("@event applied twice")
        return EventDescriptor(build_spec(f, **options))

    return wrap(func) if func is not None else wrap


@overload
def requires_auth(func: F, /) -> F: ...
@overload
def requires_auth(
    *,
    permissions: Iterable[str] = (),
    roles: Iterable[str] = (),
    owner_only: bool = False,
    owner_field: str | None = None,
) -> Callable[[F], F]: ...
def requires_auth(func: Any = None, /, **options: Any) -> Any:
    """Protect an event: ``@requires_auth`` or ``@requires_auth(permissions=[...], roles=[...],
    owner_only=True)``. Stack it under or over ``@event``; both orders work."""
    rule = AuthRule(requires_auth=True, **options)

    def apply(target: Any) -> Any:
        if isinstance(target, EventDescriptor):
            target.spec.auth = target.spec.auth.merged(rule)
            return target
        if not callable(target):
            raise ConfigurationError("@requires_auth decorates an event method")
        existing: AuthRule | None = getattr(target, "__faststate_auth__", None)
        target.__faststate_auth__ = rule if existing is None else existing.merged(rule)
        return target

    return apply(func) if func is not None else apply


__all__ = [
    "ActionSet",
    "EventAction",
    "EventDescriptor",
    "Expr",
    "event",
    "expr",
    "render_target",
    "requires_auth",
]
