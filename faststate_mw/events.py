"""``@event``: turn State methods into endpoints and into Datastar action strings.

On the class an event gives its action: ``Counter.increment(5)`` is
``@post('/_faststate/Counter/increment?amount=5')``. On an instance it is the plain method.
"""

from __future__ import annotations

import inspect
import json
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload
from urllib.parse import quote, urlencode

from pydantic import TypeAdapter, ValidationError

from .auth import AuthRule
from .exceptions import ArgumentError, ConfigurationError, FastStateError

if TYPE_CHECKING:
    from .state import State

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_MISSING: Any = inspect.Parameter.empty


@dataclass(eq=False)
class Param:
    """One argument of an event, with its validator built once."""

    name: str
    annotation: Any
    default: Any
    adapter: TypeAdapter[Any]
    #: where a value missing from the URL is read in the state's signals (setters: the field)
    signal_name: str

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def validate(self, raw: Any) -> Any:
        try:
            return self.adapter.validate_python(raw)
        except ValidationError:
            if not isinstance(raw, str) or raw[:1] not in ("[", "{", '"'):
                raise
        # URL values arrive as text: lists, dicts and models come as JSON.
        return self.adapter.validate_json(raw)


@dataclass(eq=False)
class EventSpec:
    """Everything known about one event, read from its signature once."""

    name: str
    func: Callable[..., Any]
    method: str = "POST"
    path: str | None = None
    params: list[Param] = field(default_factory=list)
    auth: AuthRule = field(default_factory=AuthRule)
    #: for generated setters: the field they write
    setter_field: str | None = None

    def __post_init__(self) -> None:
        self.is_async_gen = inspect.isasyncgenfunction(self.func)
        self.is_gen = inspect.isgeneratorfunction(self.func)
        self.is_coroutine = inspect.iscoroutinefunction(self.func)
        self.param_names = frozenset(p.name for p in self.params)

    def validate_args(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate raw argument values; raise ArgumentError listing every problem."""
        out: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for p in self.params:
            if p.name not in raw:
                if p.required:
                    errors.append({"arg": p.name, "error": "missing required argument"})
                else:
                    out[p.name] = p.default
                continue
            try:
                out[p.name] = p.validate(raw[p.name])
            except ValidationError as exc:
                msg = exc.errors(include_url=False, include_input=False)[0]["msg"]
                errors.append({"arg": p.name, "error": msg})
        if errors:
            summary = "; ".join(f"{e['arg']}: {e['error']}" for e in errors)
            raise ArgumentError(f"invalid arguments for {self.name!r}: {summary}", detail=errors)
        return out


def build_spec(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    method: str = "POST",
    path: str | None = None,
    requires_auth: bool = False,
    permissions: tuple[str, ...] | list[str] = (),
    roles: tuple[str, ...] | list[str] = (),
    owner_only: bool = False,
    owner_field: str | None = None,
    setter_field: str | None = None,
) -> EventSpec:
    method = method.upper()
    if method not in _METHODS:
        raise ConfigurationError(f"event {func.__name__}: unsupported HTTP method {method!r}")
    if path is not None and not path.startswith("/"):
        raise ConfigurationError(f"event {func.__name__}: path must start with '/'")
    sig = inspect.signature(func)
    hints = _type_hints(func)
    params: list[Param] = []
    for i, p in enumerate(sig.parameters.values()):
        if i == 0:
            continue  # self
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            raise ConfigurationError(
                f"event {func.__name__}: *args, **kwargs and positional-only parameters are "
                "not supported; name every argument"
            )
        anno = hints.get(p.name, Any)
        signal_name = setter_field if setter_field is not None else p.name
        params.append(Param(p.name, anno, p.default, TypeAdapter(anno), signal_name))
    return EventSpec(
        name=name or func.__name__,
        func=func,
        method=method,
        path=path,
        params=params,
        auth=_auth_rule(func, requires_auth, permissions, roles, owner_only, owner_field),
        setter_field=setter_field,
    )


def _auth_rule(
    func: Callable[..., Any],
    requires_auth: bool,
    permissions: tuple[str, ...] | list[str],
    roles: tuple[str, ...] | list[str],
    owner_only: bool,
    owner_field: str | None,
) -> AuthRule:
    rule = AuthRule(requires_auth, tuple(permissions), tuple(roles), owner_only, owner_field)
    stacked: AuthRule | None = getattr(func, "__faststate_auth__", None)  # @requires_auth below
    return rule if stacked is None else rule.merged(stacked)


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolved forward references
        raise ConfigurationError(
            f"event {func.__name__}: cannot resolve annotations: {exc}"
        ) from exc


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
    def __get__(self, obj: None, owner: type[State]) -> EventAction: ...
    @overload
    def __get__(self, obj: State, owner: type[State] | None = None) -> Callable[..., Any]: ...
    def __get__(self, obj: State | None, owner: type[State] | None = None) -> Any:
        if obj is None:
            assert owner is not None
            return EventAction(owner, self.spec)
        return types.MethodType(self.spec.func, obj)


class EventAction:
    """``MyState.my_event``: call it for the Datastar action string, or ask for its ``url()``.

    Made from an instance (``state.actions.my_event``) it is aimed at that instance: its
    component or record id rides in the URL, and ownership can be checked."""

    __slots__ = ("instance", "spec", "state_cls")

    def __init__(
        self, state_cls: type[State], spec: EventSpec, instance: State | None = None
    ) -> None:
        self.state_cls = state_cls
        self.spec = spec
        self.instance = instance

    def url(self, *args: Any, **kwargs: Any) -> str:
        """The event's URL with the given arguments in its query string."""
        from .registry import state_registry

        spec = self.spec
        if spec.path is not None:
            base = spec.path
        else:
            name = state_registry.name_of(self.state_cls)
            base = f"{state_registry.prefix}/{name}/{spec.name}"
        query = _query(spec, args, kwargs)
        ident = self.instance.identity if self.instance is not None else None
        if ident is not None:
            ident_name = state_registry.config_for(self.state_cls).rule.identity
            if ident_name is not None:
                pair = urlencode([(ident_name, ident)], quote_via=quote)
                query = f"{query}&{pair}" if query else pair
        return f"{base}?{query}" if query else base

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        """The Datastar action; an empty string when the current user may not use the event
        (see :attr:`allowed`)."""
        if not self.allowed:
            return ""
        return f"@{self.spec.method.lower()}('{self.url(*args, **kwargs)}')"

    @property
    def allowed(self) -> bool:
        """Whether the running request's user may call this event, as far as is cheap to know:
        sign-in, permissions and roles of the event and its state; ownership only when the
        action was made from an instance. True outside a request."""
        from .context import _current
        from .registry import state_registry

        ctx = _current.get()
        state_rule = state_registry.config_for(self.state_cls).auth
        if ctx is None or not (self.spec.auth.active or state_rule.active):
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

    def __init__(self, instance: State) -> None:
        self.instance = instance

    def __getattr__(self, name: str) -> EventAction:
        cls = type(self.instance)
        spec = cls.__faststate_events__.get(name)
        if spec is None:
            raise AttributeError(f"{cls.__name__} has no event {name!r}")
        return EventAction(cls, spec, self.instance)


def _query(spec: EventSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
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
    pairs = [(k, _url_value(v)) for k, v in values.items() if v is not None]
    return urlencode(pairs, quote_via=quote)


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
    """

    def wrap(f: Callable[..., Any]) -> EventDescriptor:
        if isinstance(f, EventDescriptor):
            raise ConfigurationError("@event applied twice")
        return EventDescriptor(build_spec(f, **options))

    return wrap(func) if func is not None else wrap


__all__ = ["ActionSet", "EventAction", "EventDescriptor", "EventSpec", "event"]
