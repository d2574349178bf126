"""What is known of one event, read from its method's signature once when the class is made."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter, ValidationError

from . import _untrusted as untrusted
from ._auth import AuthRule
from ._exceptions import ArgumentError, ConfigurationError

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_MISSING: Any = inspect.Parameter.empty


@dataclass(eq=False)
class Param:
    """One argument of an event, with its validator built once."""

    name: str
    annotation: Any
    default: Any
    #: None until the State class is made, when the type needs the model's config
    #: (``arbitrary_types_allowed``); see :meth:`EventSpec.complete`
    adapter: TypeAdapter[Any] | None
    #: where a value missing from the URL is read in the state's signals (setters: the field)
    signal_name: str
    #: its value from a given URL text is always the same (a plain type: no validator of the
    #: app's own runs, which might not be), so it may be kept (see ``EventSpec.url_args``)
    pure: bool = field(init=False)

    def __post_init__(self) -> None:
        self.pure = any(self.annotation is t for t in _PURE)

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def validate(self, raw: Any) -> Any:
        """The argument's value; a number JSON cannot carry (NaN, Infinity) is an
        InvalidPayload (400), whether it came as JSON or as text such as ``?x=nan``."""
        adapter = self.adapter
        if adapter is None:
            raise ConfigurationError(f"argument {self.name!r}: its event belongs to no State")
        try:
            # the adapter's validator itself: TypeAdapter.validate_python only passes it its
            # (here default) options, at three times the cost of the validation
            value = adapter.validator.validate_python(raw)
        except ValidationError:
            if not isinstance(raw, str) or raw[:1] not in ("[", "{", '"'):
                raise
            # URL values arrive as text: lists, dicts and models come as JSON (read strictly
            # first: bounded depth, finite numbers, valid unicode).
            untrusted.loads(raw, f"argument {self.name!r}")
            value = adapter.validate_json(raw)
        kind = type(value)
        if kind not in _NOTHING_TO_CHECK and (
            kind is not int or not _MIN_SAFE_INTEGER <= value <= untrusted.MAX_SAFE_INTEGER
        ):
            untrusted.check_finite(value, f"argument {self.name!r}")
        return value


#: annotations whose validation from a URL text depends on nothing else
_PURE = (int, float, str, bool, Any)
#: values that can be handed to any number of events (none can change the others')
_IMMUTABLE = frozenset({int, float, str, bool})
#: the most query strings one event keeps the arguments of
URL_ARGS_KEPT = 64
#: value types that hold no number, or no float (so no NaN or infinity; ints are range-checked)
_NOTHING_TO_CHECK = frozenset({str, bool, type(None)})
#: the smallest whole number a client may send (not worked out on every argument)
_MIN_SAFE_INTEGER = -untrusted.MAX_SAFE_INTEGER


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
        #: query strings (raw bytes) -> the id name they were checked with, the values of the
        #: arguments they carry, and the arguments they do not (read from the signals); see
        #: ``bind_arguments``. Bounded: emptied when ``URL_ARGS_KEPT`` are kept
        self.url_args: dict[bytes, tuple[str | None, dict[str, Any], tuple[Param, ...]]] = {}

    def complete(self, state_name: str, arbitrary_types: bool) -> None:
        """Build the validators left for the State's config (called when the class is made)."""
        for p in self.params:
            if p.adapter is None:
                p.adapter = _adapter(p.annotation, arbitrary_types, f"{state_name}.{self.name}")

    def check_names(self, given: Iterable[str], also: Iterable[str] = ()) -> None:
        """Raise ArgumentError (422) for an argument name the event does not take (a typo such
        as ``?amout=5`` must not silently fall back to the default). ``also``: other names the
        URL may carry (the component or record id)."""
        names = self.param_names
        for n in given:  # the common case: all known, without building a set per request
            if n not in names and n not in also:
                break
        else:
            return
        known = names.union(also)
        # client text: at most a few names, each cut short, go back into the error
        unknown = sorted(n[:40] for n in given if n not in known)[:5]
        if unknown:
            expected = ", ".join(sorted(known)) or "none"
            raise ArgumentError(
                f"unknown argument(s) for {self.name!r}: {', '.join(unknown)} "
                f"(it takes: {expected})",
                detail=[{"arg": n, "error": "unknown argument"} for n in unknown],
            )

    def keep_url_args(
        self, qs: bytes, identity: str | None, query: Mapping[str, str], kwargs: dict[str, Any]
    ) -> None:
        """Keep the values ``kwargs`` took from ``query`` (parsed from ``qs``, its names checked
        with the id name ``identity``): when every one is a pure argument's immutable value,
        the same URL binds them again without a check or a validation."""
        values: dict[str, Any] = {}
        rest: list[Param] = []
        for p in self.params:
            if p.name not in query:
                rest.append(p)
                continue
            value = kwargs[p.name]
            if not p.pure or type(value) not in _IMMUTABLE:
                return
            values[p.name] = value
        kept = self.url_args
        if len(kept) >= URL_ARGS_KEPT:
            kept.clear()  # (one step, safe between threads)
        kept[qs] = (identity, values, tuple(rest))

    def validate_args(
        self, raw: dict[str, Any], params: Iterable[Param] | None = None
    ) -> dict[str, Any]:
        """Validate raw argument values; raise ArgumentError listing every problem.
        ``params``: only these of the event's (default: all)."""
        out: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for p in self.params if params is None else params:
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
    arbitrary_types: bool | None = None,
) -> EventSpec:
    """The spec of one event. ``arbitrary_types``: the State's ``arbitrary_types_allowed``
    (None: not known yet; a type that needs it is then validated once the class is made)."""
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
        adapter = _adapter(anno, arbitrary_types, func.__qualname__)
        params.append(Param(p.name, anno, p.default, adapter, signal_name))
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


def _adapter(anno: Any, arbitrary_types: bool | None, where: str) -> TypeAdapter[Any] | None:
    """A validator for ``anno``; None when it needs the State's config, not known yet."""
    try:
        return TypeAdapter(anno)
    except PydanticSchemaGenerationError as exc:
        if arbitrary_types is None:
            return None
        if arbitrary_types:
            return TypeAdapter(anno, config=ConfigDict(arbitrary_types_allowed=True))
        raise ConfigurationError(
            f"{where}: pydantic cannot validate the type {anno!r}; allow it on the State with "
            "model_config = ConfigDict(arbitrary_types_allowed=True), or use a pydantic type"
        ) from exc


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as exc:  # unresolved forward references
        raise ConfigurationError(
            f"event {func.__name__}: cannot resolve annotations: {exc}"
        ) from exc


__all__ = ["EventSpec", "Param", "build_spec"]
