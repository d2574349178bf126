"""The State base class: pydantic fields, events, rendering, and finding the instance."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, cast

import pydantic.main
from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from ._auth import resolve_owner_field
from ._changes import Mutation, locked, run_change
from ._config import Meta, StateInfo, catalog, describe, info_of, meta_of
from ._context import RequestContext, _current, current_context
from ._events import ActionSet, EventDescriptor
from ._eventspec import EventSpec, build_spec
from ._exceptions import ConfigurationError
from ._http import ERROR_SIGNAL, ERROR_SIGNAL_INITIAL
from ._scopes import StateScope, new_component_id
from ._store import StateStore, current_store
from ._viewspec import ViewDescriptor, ViewSpec, collect_views


class hybridmethod:
    """A method that works on the class and on instances (receiving either)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[..., Any]:
        return functools.partial(self.func, owner if obj is None else obj)


#: pydantic's setter of a field that validates assignments (memoized per class and name in
#: ``__pydantic_setattr_handlers__``); an object no handler is if this pydantic names it otherwise
_VALIDATED: Any = getattr(pydantic.main, "_SIMPLE_SETATTR_HANDLERS", {}).get(
    "validate_assignment", object()
)
#: the core schemas whose validation returns a value of exactly their type as it is
_PLAIN_SCHEMAS: dict[str, type] = {"int": int, "bool": bool, "float": float, "str": str}
#: config that makes pydantic change or refuse such a value (a float's inf, a str's spaces)
_VALUE_CONFIG = {
    "float": ("allow_inf_nan",),
    "str": (
        "str_strip_whitespace",
        "str_to_lower",
        "str_to_upper",
        "str_min_length",
        "str_max_length",
    ),
}


def _plain_fields(cls: type[BaseModel]) -> dict[str, type]:
    """The fields of ``cls`` whose assignment of a value of exactly the type returned here
    validates to that value, unchanged: a bare ``int``, ``bool``, ``float`` or ``str``
    field, not frozen, in a model with no model validator, no extra fields and no config that
    changes such a value. Assigning one is what ``validate_assignment`` would do (the value
    set and the field marked set), without copying the model's dict."""
    if not cls.__pydantic_complete__:
        return {}
    model: Any = cls.__pydantic_core_schema__
    config = model.get("config", {})
    inner = model.get("schema", {})
    if (
        model.get("type") != "model"
        or model.get("root_model")
        or inner.get("type") != "model-fields"
        or cls.model_config.get("frozen")  # BaseModel.__setattr__ checks it: not in the core config
        or config.get("extra_fields_behavior") == "allow"
        or inner.get("extra_behavior") == "allow"
    ):
        return {}
    plain = {}
    for name, field in inner["fields"].items():
        schema = field["schema"]
        if schema.get("type") == "default" and schema.keys() <= {"type", "schema", "default"}:
            schema = schema["schema"]
        kind = schema.get("type")
        if (
            field.get("type") == "model-field"
            and not field.get("frozen")
            and schema.keys() == {"type"}
            and kind in _PLAIN_SCHEMAS
            and not any(config.get(key) is not None for key in _VALUE_CONFIG.get(kind, ()))
        ):
            plain[name] = _PLAIN_SCHEMAS[kind]
    return plain


def _dumped_as_is(cls: type[BaseModel], plain: dict[str, type]) -> dict[str, type]:
    """The fields of ``plain`` whose JSON value (``model_dump(mode="json")``) is their value
    itself when it is exactly an ``int``, ``bool`` or ``str`` (the type returned here): no
    serializer, alias or exclusion of theirs, no serializer of the model's."""
    if not plain:
        return {}
    model: Any = cls.__pydantic_core_schema__
    inner = model["schema"]
    if "serialization" in model or "serialization" in inner:
        return {}
    fields = inner["fields"]
    return {
        name: kind
        for name, kind in plain.items()
        if kind is not float and fields[name].keys() <= {"type", "schema", "metadata"}
    }


class _Undescribed:
    """The description of a State subclass that was never described: any use is a clear error."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # probes such as abc's __isabstractmethod__: not a use
            raise AttributeError(attr)
        raise ConfigurationError(
            f"{self.name} was never described: a __pydantic_init_subclass__ of its own must call "
            "super().__pydantic_init_subclass__(**kwargs)"
        )


class State(BaseModel):
    """Base class of reactive server-side state.

    Fields are pydantic fields; methods decorated with :func:`event` become endpoints. Every public
    field (public = no leading underscore and not ``Field(exclude=True)``) is a Datastar signal,
    namespaced under the state's name on the page. Only fields declared client-writable
    (``Annotated[str, client_writable]``, ``Writable(...)`` or ``StateConfig(writable=...)``)
    get a generated ``set_<field>`` event; every other field is server-owned. Configure sharing
    and protection with ``__faststate__ = StateConfig(...)``.
    """

    model_config = ConfigDict(
        ignored_types=(EventDescriptor, ViewDescriptor, hybridmethod), validate_assignment=True
    )

    __faststate_info__: ClassVar[StateInfo]
    __faststate_events__: ClassVar[dict[str, EventSpec]] = {}
    __faststate_fields__: ClassVar[tuple[str, ...]] = ()
    __faststate_views__: ClassVar[dict[str, ViewSpec]] = {}
    #: pydantic's memo of how each name is set (its own dict), or an empty one when a class
    #: between State and BaseModel has a __setattr__ of its own, which must not be skipped
    __faststate_setters__: ClassVar[dict[str, Any]] = {}
    #: the fields a value of exactly their type is assigned to as it is (``_plain_fields``)
    __faststate_plain__: ClassVar[dict[str, type]] = {}
    #: the fields a value of exactly their type is dumped as (``_dumped_as_is``)
    __faststate_dumped__: ClassVar[dict[str, type]] = {}

    # faststate's bookkeeping lives in a slot, not in pydantic private attributes: a slot read
    # costs ~0.1 us where a private attribute costs ~2.5 us, and events read it many times
    __slots__ = ("_fs",)
    if TYPE_CHECKING:  # an instance slot; ClassVar only keeps type checkers from seeing a field
        _fs: ClassVar[Meta]

    def model_post_init(self, context: Any, /) -> None:
        object.__setattr__(self, "_fs", Meta())

    def __getattr__(self, name: str) -> Any:
        if name == "_fs":  # a copy made without __init__ (copy.copy, model_copy)
            meta = Meta()
            object.__setattr__(self, "_fs", meta)
            return meta
        return super().__getattr__(name)  # type: ignore[misc]

    def __setattr__(self, name: str, value: Any) -> None:
        if type(value) is self.__faststate_plain__.get(name):
            # validation would return it unchanged: what it does, without its copy of the dict
            self.__dict__[name] = value
            self.__pydantic_fields_set__.add(name)
        elif self.__faststate_setters__.get(name) is _VALIDATED:
            # what pydantic's __setattr__ calls for it, without its two Python frames
            self.__pydantic_validator__.validate_assignment(self, name, value)
        else:
            super().__setattr__(name, value)
        assigned = self._fs.assigned
        if assigned is not None:  # a change is running: the sender hears of this field
            assigned.add(name)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # until __pydantic_init_subclass__ describes it: a class whose description was never
        # made (an override that skips super()) must not read its parent's scope and rules
        cls.__faststate_info__ = cast(StateInfo, _Undescribed(cls.__name__))

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        events = _collect_events(cls)
        arbitrary = bool(cls.model_config.get("arbitrary_types_allowed", False))
        for spec in events.values():
            spec.complete(cls.__name__, arbitrary)
        info = describe(cls, dict(cls.model_fields), events)
        for name, rule in info.writable.items():  # only declared fields get a setter
            setter = f"set_{name}"
            if setter in events or _defined_by_app(cls, setter):
                continue
            spec = build_spec(
                _make_setter(cls, name), name=setter, setter_field=name, arbitrary_types=arbitrary
            )
            spec.auth = rule
            events[setter] = spec
            type.__setattr__(cls, setter, EventDescriptor(spec))
        cls.__faststate_info__ = info
        cls.__faststate_events__ = events
        cls.__faststate_fields__ = info.fields
        cls.__faststate_views__ = collect_views(cls, cls.model_fields)
        mro = cls.__mro__
        between = mro[mro.index(State) + 1 : mro.index(BaseModel)]
        own = any("__setattr__" in base.__dict__ for base in between)
        cls.__faststate_setters__ = {} if own else cls.__pydantic_setattr_handlers__
        plain = _plain_fields(cls)
        cls.__faststate_plain__ = {} if own else plain
        cls.__faststate_dumped__ = _dumped_as_is(cls, plain)
        catalog.add(cls, info.name)

    # -- finding the instance -------------------------------------------------------------------
    @classmethod
    def current(cls) -> Self:
        """The instance of this state for the running request's scope.

        Works in any handler under FastStateMiddleware (Starlette, FastHTML, FastAPI's
        ``Depends(MyState.current)``); raises NoRequestContextError elsewhere. RECORD states take
        their id from the path (``record_id`` or ``id``) or the query; COMPONENT states from
        ``component_id``, or get a new id.
        """
        ctx = current_context()
        return current_store().resolve_now(cls, ctx, _request_ident(cls, ctx))

    @classmethod
    async def dependency(cls) -> Self:
        """Like :meth:`current`, but awaits an async ``user_loader`` and ``load`` hook first
        (for FastAPI: ``Depends(MyState.dependency)``)."""
        ctx = current_context()
        await ctx.load_user()
        return await current_store().resolve(cls, ctx, _request_ident(cls, ctx))

    @classmethod
    async def __from_request__(cls, req: Request) -> Self:
        """FastHTML's public injection hook: ``def page(counter: Counter)``."""
        return await cls.dependency()

    @classmethod
    async def resolve(cls, ident: Any = None, *, store: StateStore | None = None) -> Self:
        """The instance for ``ident`` (a record or component id; None for other scopes), from a
        request or from background code: ``await Product.resolve(7)``. Outside a request the
        store is ``store``, else the active one (see :func:`current_store`)."""
        ctx = _current.get()
        if ctx is not None:
            await ctx.load_user()
        target = store if store is not None else current_store()
        return await target.resolve(cls, ctx, None if ident is None else str(ident))

    @classmethod
    def component(cls, component_id: str | None = None) -> Self:
        """The COMPONENT instance ``component_id`` of this session (a new id when None)."""
        if info_of(cls).scope != StateScope.COMPONENT:
            raise ConfigurationError(f"{cls.__name__} is not a COMPONENT state")
        ctx = current_context()
        return current_store().resolve_now(cls, ctx, component_id or new_component_id())

    @classmethod
    def for_record(cls, record_id: Any) -> Self:
        """The RECORD instance for ``record_id`` (usable outside a request, e.g. in a task)."""
        if info_of(cls).scope != StateScope.RECORD:
            raise ConfigurationError(f"{cls.__name__} is not a RECORD state")
        return current_store().resolve_now(cls, _current.get(), str(record_id))

    @property
    def key(self) -> str | None:
        """The store key of this instance (None for an instance made by hand)."""
        return self._fs.key

    @property
    def identity(self) -> str | None:
        """The component or record id of this instance, if its scope has one."""
        return self._fs.ident

    @property
    def version(self) -> int:
        """How many changes this instance has had (the per-key version live streams carry)."""
        return self._fs.version

    @property
    def actions(self) -> ActionSet:
        """Action strings aimed at this very instance: ``widget.actions.increment(1)``
        (carries the component or record id; the same as ``Cls.increment`` otherwise)."""
        return ActionSet(self)

    # -- signals --------------------------------------------------------------------------------
    @classmethod
    def signal_namespace(cls) -> str | None:
        """The object this state's signals live under on the page; None when flat."""
        return info_of(cls).namespace

    @hybridmethod
    def signal_path(self_or_cls: Any, field: str) -> str:
        """The signal path of ``field`` (``counter.count``), as ``data-bind`` wants it. On a
        component instance it includes the component id (``widget.c1.count``)."""
        cls: type[State] = self_or_cls if isinstance(self_or_cls, type) else type(self_or_cls)
        info = info_of(cls)
        if field not in info.fields:
            raise AttributeError(f"{cls.__name__} has no public field {field!r}")
        if isinstance(self_or_cls, type):
            if info.is_component:
                raise ConfigurationError(
                    f"{cls.__name__} is a COMPONENT state: ask the instance (widget.ref(...))"
                )
            ns = info.namespace
        else:
            ns = info.namespace_for(meta_of(self_or_cls).ident)
        return f"{ns}.{field}" if ns else field

    @hybridmethod
    def ref(self_or_cls: Any, field: str) -> str:
        """The Datastar expression of ``field`` (``$counter.count``) for data-text / data-show."""
        return "$" + str(self_or_cls.signal_path(field))

    def public_data(self) -> dict[str, Any]:
        """The public fields, JSON-ready."""
        return self.model_dump(mode="json", include=set(info_of(type(self)).fields))

    def signals(self, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """Signals of this state (or of ``fields`` only), wrapped in the namespace."""
        data = self.public_data() if fields is None else fields
        return info_of(type(self)).wrap(data, self._fs.ident)

    def signals_json(self) -> str:
        """The signals of this state as JSON."""
        return json.dumps(self.signals(), separators=(",", ":"))

    def signal_attrs(self) -> dict[str, str]:
        """Attributes that put this state's signals on the page: ``{"data-signals": "..."}``."""
        signals = self.signals()
        signals[ERROR_SIGNAL] = dict(ERROR_SIGNAL_INITIAL)
        self._rendered()
        return {"data-signals": signals_attribute(signals)}

    def _rendered(self) -> None:
        """This state is on the page being rendered: the page's live stream subscribes to it.
        The stream's token records [state name, id, version]; the key is rebuilt from the
        stream request (same session, same user) when it opens."""
        ctx = _current.get()
        meta = self._fs
        if ctx is not None and meta.key is not None:
            entry = [info_of(type(self)).name, meta.ident, meta.version]
            previous = ctx.page_states.get(meta.key)
            if previous is not None and len(previous) > 3:
                entry.append(previous[3])  # the views shown of it (see _viewspec.BoundView)
            ctx.page_states[meta.key] = entry

    def to_html(self, tag: str = "div", **attrs: str) -> str:
        """An HTML element carrying the signals, for Jinja or plain Starlette pages."""
        all_attrs = {**self.signal_attrs(), **attrs}
        rendered = " ".join(f'{k}="{escape(str(v), quote=True)}"' for k, v in all_attrs.items())
        return f"<{tag} {rendered}></{tag}>"

    def __ft__(self) -> Any:
        """FastHTML rendering: a hidden ``div`` that declares this state's signals."""
        from fastcore.xml import ft  # optional: FastHTML apps have it

        return ft("div", **self.signal_attrs(), style="display:none")

    # -- changes from outside events ----------------------------------------------------------
    async def update(self, **fields: Any) -> list[str]:
        """Change fields from anywhere (a background task, another route, a worker): validated,
        serialized with events, saved, and pushed to every live subscriber. Returns the names
        of the fields that changed."""
        unknown = set(fields) - set(type(self).model_fields)
        if unknown:
            raise AttributeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")

        def assign() -> None:
            for name, value in fields.items():
                setattr(self, name, value)

        async with locked(self):
            await run_change(self, assign)
        return self._fs.last_changed

    def mutate(self) -> Mutation:
        """``async with state.mutate(): state.x = 1`` changes the state like an event does:
        under its lock, rolled back on an exception, then saved and broadcast."""
        return Mutation(self)


def _collect_events(cls: type[State]) -> dict[str, EventSpec]:
    events: dict[str, EventSpec] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, EventDescriptor):
                if value.spec.setter_field is not None:
                    continue  # a generated setter: each class makes its own, if declared
                value.spec.name = attr
                events[value.spec.name] = value.spec
    for spec in events.values():
        if spec.auth.owner_only:
            owner = resolve_owner_field(cls.__name__, cls.model_fields, spec.auth, spec.name)
            spec.auth = dataclasses.replace(spec.auth, owner_field=owner)
    return events


def _request_ident(cls: type[State], ctx: RequestContext) -> str | None:
    """The record or component id a page request names (path first, then query)."""
    identity = info_of(cls).identity
    if identity is None:
        return None
    path_params = ctx.scope.get("path_params") or {}
    query = ctx.request.query_params
    names = ("record_id", "id") if identity == "record_id" else ("component_id",)
    for source in (path_params, query):
        for name in names:
            value = source.get(name)
            if value not in (None, ""):
                return str(value)
    if identity == "component_id":
        return new_component_id()
    return None


def signals_attribute(signals: dict[str, Any]) -> str:
    """JSON for a ``data-signals`` attribute, readable by Datastar whatever the strings hold.

    Datastar 1.0 does not JSON-parse that attribute: it compiles it as a JavaScript expression,
    after splitting it into statements on ``;`` with a string pattern that takes ``\\"`` for an
    escaped quote (so a string ending in a backslash swallows the next string's quote), and after
    rewriting ``$name`` and ``@name(`` and its ``🖕JS_DS🚀`` markers. So the JSON is written in
    plain ASCII with every character those passes could misread as a ``\\uXXXX`` escape:
    backslashes and quotes inside strings, ``; $ @ ' ` /`` and ``< > &``. The only backslashes
    left start a ``\\u`` escape, and the only ``"`` delimit strings.
    """
    text = json.dumps(signals, separators=(",", ":"), ensure_ascii=True)
    return _ATTR_UNSAFE.sub(_escape_unsafe, text)


# In json.dumps output a backslash always starts an escape, so scanning left to right takes
# ``\\`` and ``\"`` whole; the other characters only occur inside strings.
_ATTR_UNSAFE = re.compile(r'\\\\|\\"|[;$@\'`/<>&]')


def _escape_unsafe(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()[-1]):04x}"


def _defined_by_app(cls: type, name: str) -> bool:
    """Whether ``name`` is an attribute the app wrote (not a generated setter)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            value = vars(klass)[name]
            return not (isinstance(value, EventDescriptor) and value.spec.setter_field)
    return False


def _make_setter(cls: type[State], field: str) -> Any:
    info = cls.model_fields[field]
    # the field's constraints (max_length, ge, ...) validate the argument before the event runs
    anno: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation

    def setter(self: State, value: Any) -> None:
        setattr(self, field, value)

    setter.__annotations__ = {"value": anno, "return": None}
    setter.__name__ = f"set_{field}"
    setter.__qualname__ = f"{cls.__name__}.set_{field}"
    setter.__doc__ = f"Set {field!r} (generated)."
    return setter


__all__ = ["State", "signals_attribute"]
