"""The State base class: pydantic fields, events, change tracking, rendering and ``current()``."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from html import escape
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request

from .auth import resolve_owner_field
from .context import RequestContext, _current, current_context
from .events import ActionSet, EventDescriptor, EventSpec, build_spec
from .exceptions import ConfigurationError
from .registry import state_registry
from .scopes import StateScope, new_component_id

#: Mark a field as server-owned: ``count: Annotated[int, server_owned] = 0``. Client input never
#: writes it: it gets no generated setter and event arguments are never read from its signal.
server_owned = type("ServerOwned", (), {"__repr__": lambda self: "server_owned"})()

_IMMUTABLE = (int, float, str, bool, bytes, type(None), tuple, frozenset)
#: the signal that carries errors to the page (leading underscore: Datastar never sends it back)
ERROR_SIGNAL = "_faststate"
ERROR_SIGNAL_INITIAL: dict[str, Any] = {"error": "", "status": 0, "code": ""}


class hybridmethod:
    """A method that works on the class and on instances (receiving either)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[..., Any]:
        return functools.partial(self.func, owner if obj is None else obj)


class Meta:
    """What faststate knows of one instance (kept out of the model's fields)."""

    __slots__ = ("ident", "key", "last_changed", "lock", "ttl", "version")

    def __init__(self) -> None:
        self.key: str | None = None
        self.ident: str | None = None
        self.ttl: float | None = None
        self.lock: asyncio.Lock | None = None
        #: how many changes this instance has had (the per-key version streams carry)
        self.version = 0
        self.last_changed: list[str] = []


class State(BaseModel):
    """Base class of reactive server-side state.

    Fields are pydantic fields; methods decorated with :func:`event` become endpoints. Every public
    field (public = no leading underscore and not ``Field(exclude=True)``) is a Datastar signal,
    namespaced under the state's name on the page, and gets a generated ``set_<field>`` event
    unless it is :data:`server_owned`.
    """

    model_config = ConfigDict(
        ignored_types=(EventDescriptor, hybridmethod), validate_assignment=True
    )

    __faststate_events__: ClassVar[dict[str, EventSpec]] = {}
    __faststate_fields__: ClassVar[tuple[str, ...]] = ()
    __faststate_server_owned__: ClassVar[frozenset[str]] = frozenset()

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

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        public = tuple(
            name
            for name, info in cls.model_fields.items()
            if not name.startswith("_") and not info.exclude
        )
        owned = frozenset(
            name
            for name, info in cls.model_fields.items()
            if any(m is server_owned for m in info.metadata)
        )
        cls.__faststate_fields__ = public
        cls.__faststate_server_owned__ = owned
        events: dict[str, EventSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                if isinstance(value, EventDescriptor):
                    value.spec.name = attr if value.spec.setter_field is None else value.spec.name
                    events[value.spec.name] = value.spec
        for spec in events.values():
            if spec.auth.owner_only:
                owner = resolve_owner_field(cls, spec.auth, spec.name)
                spec.auth = dataclasses.replace(spec.auth, owner_field=owner)
        for name in public:
            setter = f"set_{name}"
            if name in owned or setter in events or hasattr(cls, setter):
                continue
            spec = build_spec(_make_setter(cls, name), name=setter, setter_field=name)
            events[setter] = spec
            type.__setattr__(cls, setter, EventDescriptor(spec))
        cls.__faststate_events__ = events
        state_registry._add_class(cls)

    # -- resolution ---------------------------------------------------------------------------
    @classmethod
    def current(cls) -> Self:
        """The instance of this state for the running request's scope.

        Works in any handler under FastStateMiddleware (Starlette, FastHTML, FastAPI's
        ``Depends(MyState.current)``); raises NoRequestContextError elsewhere. RECORD states take
        their id from the path (``record_id`` or ``id``) or the query; COMPONENT states from
        ``component_id``, or get a new id.
        """
        ctx = current_context()
        inst = state_registry.resolve(cls, ctx, _request_ident(cls, ctx))
        assert isinstance(inst, cls)
        return inst

    @classmethod
    async def dependency(cls) -> Self:
        """Like :meth:`current`, but awaits an async ``user_loader`` and ``load`` hook first
        (for FastAPI: ``Depends(MyState.dependency)``)."""
        ctx = current_context()
        await ctx.load_user()
        inst = await state_registry.aresolve(cls, ctx, _request_ident(cls, ctx))
        assert isinstance(inst, cls)
        return inst

    @classmethod
    async def __from_request__(cls, req: Request) -> Self:
        """FastHTML's public injection hook: ``def page(counter: Counter)``."""
        return await cls.dependency()

    @classmethod
    def component(cls, component_id: str | None = None) -> Self:
        """The COMPONENT instance ``component_id`` of this session (a new id when None)."""
        if state_registry.config_for(cls).scope != StateScope.COMPONENT:
            raise ConfigurationError(f"{cls.__name__} is not a COMPONENT state")
        ctx = current_context()
        inst = state_registry.resolve(cls, ctx, component_id or new_component_id())
        assert isinstance(inst, cls)
        return inst

    @classmethod
    def for_record(cls, record_id: Any) -> Self:
        """The RECORD instance for ``record_id`` (usable outside a request, e.g. in a task)."""
        if state_registry.config_for(cls).scope != StateScope.RECORD:
            raise ConfigurationError(f"{cls.__name__} is not a RECORD state")
        inst = state_registry.resolve(cls, _current.get(), str(record_id))
        assert isinstance(inst, cls)
        return inst

    @property
    def key(self) -> str | None:
        """The registry key of this instance (None for an instance made by hand)."""
        return self._fs.key

    @property
    def identity(self) -> str | None:
        """The component or record id of this instance, if its scope has one."""
        return self._fs.ident

    @property
    def actions(self) -> ActionSet:
        """Action strings aimed at this very instance: ``widget.actions.increment(1)``
        (carries the component or record id; the same as ``Cls.increment`` otherwise)."""
        return ActionSet(self)

    # -- signals --------------------------------------------------------------------------------
    @classmethod
    def signal_namespace(cls) -> str | None:
        """The object this state's signals live under on the page; None when flat."""
        return state_registry.namespace_of(cls)

    def _namespace(self) -> str | None:
        """The namespace of this instance: components nest under their id."""
        ns = type(self).signal_namespace()
        if self._fs.ident is not None and ns and _is_component(type(self)):
            return f"{ns}.{self._fs.ident}"
        return ns

    @hybridmethod
    def signal_path(self_or_cls: Any, field: str) -> str:
        """The signal path of ``field`` (``counter.count``), as ``data-bind`` wants it. On a
        component instance it includes the component id (``widget.c1.count``)."""
        cls: type[State] = self_or_cls if isinstance(self_or_cls, type) else type(self_or_cls)
        if field not in cls.__faststate_fields__:
            raise AttributeError(f"{cls.__name__} has no public field {field!r}")
        if isinstance(self_or_cls, type):
            if _is_component(cls):
                raise ConfigurationError(
                    f"{cls.__name__} is a COMPONENT state: ask the instance (widget.ref(...))"
                )
            ns = cls.signal_namespace()
        else:
            ns = self_or_cls._namespace()
        return f"{ns}.{field}" if ns else field

    @hybridmethod
    def ref(self_or_cls: Any, field: str) -> str:
        """The Datastar expression of ``field`` (``$counter.count``) for data-text / data-show."""
        return "$" + str(self_or_cls.signal_path(field))

    def public_data(self) -> dict[str, Any]:
        """The public fields, JSON-ready."""
        return self.model_dump(mode="json", include=set(self.__faststate_fields__))

    def signals(self, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """Signals of this state (or of ``fields`` only), wrapped in the namespace."""
        data = self.public_data() if fields is None else fields
        ns = self._namespace()
        if not ns:
            return data
        for part in reversed(ns.split(".")):
            data = {part: data}
        return data

    def signals_json(self) -> str:
        return json.dumps(self.signals(), separators=(",", ":"))

    def signal_attrs(self) -> dict[str, str]:
        """Attributes that put this state's signals on the page: ``{"data-signals": "..."}``."""
        signals = self.signals()
        signals[ERROR_SIGNAL] = dict(ERROR_SIGNAL_INITIAL)
        self._rendered()
        return {"data-signals": signals_attribute(signals)}

    def _rendered(self) -> None:
        """This state is on the page being rendered: the page's live stream subscribes to it."""
        ctx = _current.get()
        if ctx is not None and self._fs.key is not None:
            from .stream import page_entry

            entry = page_entry(self)
            if entry is not None:
                ctx.page_states[self._fs.key] = entry

    def to_html(self, tag: str = "div", **attrs: str) -> str:
        """An HTML element carrying the signals, for Jinja or plain Starlette pages."""
        all_attrs = {**self.signal_attrs(), **attrs}
        rendered = " ".join(f'{k}="{escape(str(v), quote=True)}"' for k, v in all_attrs.items())
        return f"<{tag} {rendered}></{tag}>"

    def __ft__(self) -> Any:
        """FastHTML rendering: a hidden ``div`` that declares this state's signals."""
        from fastcore.xml import ft

        return ft("div", **self.signal_attrs(), style="display:none")

    @property
    def version(self) -> int:
        """How many changes this instance has had (the per-key version live streams carry)."""
        return self._fs.version

    # -- changes from outside events ----------------------------------------------------------
    async def update(self, **fields: Any) -> list[str]:
        """Change fields from anywhere (a background task, another route, a worker): validated,
        serialized with events, saved, and pushed to every live subscriber. Returns the names
        of the fields that changed."""
        unknown = set(fields) - set(type(self).model_fields)
        if unknown:
            raise AttributeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        async with self.mutate() as state:
            for name, value in fields.items():
                setattr(state, name, value)
        return self._fs.last_changed

    def mutate(self) -> _Mutation:
        """``async with state.mutate(): state.x = 1`` changes the state like an event does:
        under its lock, rolled back on an exception, then saved and broadcast."""
        return _Mutation(self)

    # -- change tracking ------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, Any]:
        d = self.__dict__
        return {
            k: v if isinstance(v, _IMMUTABLE) else copy.deepcopy(v)
            for k, v in d.items()
            if k in type(self).model_fields
        }

    def _changed_since(self, before: dict[str, Any]) -> list[str]:
        d = self.__dict__
        return [k for k in self.__faststate_fields__ if d.get(k) != before.get(k)]

    def _restore(self, before: dict[str, Any]) -> None:
        self.__dict__.update(before)


class _Mutation:
    __slots__ = ("before", "state")

    def __init__(self, state: State) -> None:
        self.state = state
        self.before: dict[str, Any] = {}

    async def __aenter__(self) -> State:
        state = self.state
        if state._fs.lock is None:
            state._fs.lock = asyncio.Lock()
        await state._fs.lock.acquire()
        self.before = state._snapshot()
        return state

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        from .dispatch import commit

        state = self.state
        try:
            if exc_type is not None:
                state._restore(self.before)
                return
            changed = state._changed_since(self.before)
            state._fs.last_changed = changed
            if changed:
                try:
                    await commit(state, changed)
                except BaseException:
                    state._restore(self.before)
                    raise
        finally:
            assert state._fs.lock is not None
            state._fs.lock.release()


def _is_component(cls: type[State]) -> bool:
    return state_registry.config_for(cls).scope == StateScope.COMPONENT


def _request_ident(cls: type[State], ctx: RequestContext) -> str | None:
    """The record or component id a page request names (path first, then query)."""
    rule = state_registry.config_for(cls).rule
    if rule.identity is None:
        return None
    path_params = ctx.scope.get("path_params") or {}
    query = ctx.request.query_params
    names = ("record_id", "id") if rule.identity == "record_id" else ("component_id",)
    for source in (path_params, query):
        for name in names:
            value = source.get(name)
            if value not in (None, ""):
                return str(value)
    if rule.identity == "component_id":
        return new_component_id()
    return None


def signals_attribute(signals: dict[str, Any]) -> str:
    """JSON for a ``data-signals`` attribute. Datastar evaluates that attribute as an expression
    and rewrites ``@name(`` even inside strings, so ``@`` is written as its JSON escape."""
    return json.dumps(signals, separators=(",", ":")).replace("@", "\\u0040")


def _make_setter(cls: type[State], field: str) -> Any:
    anno = cls.model_fields[field].annotation

    def setter(self: State, value: Any) -> None:
        setattr(self, field, value)

    setter.__annotations__ = {"value": anno, "return": None}
    setter.__name__ = f"set_{field}"
    setter.__qualname__ = f"{cls.__name__}.set_{field}"
    setter.__doc__ = f"Set {field!r} (generated)."
    return setter


__all__ = ["ERROR_SIGNAL", "State", "server_owned"]
