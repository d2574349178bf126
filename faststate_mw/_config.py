"""How a State class is configured, and the frozen description of it computed once.

``StateConfig`` is what an app declares (``__faststate__ = StateConfig(...)``); ``StateInfo`` is
what the library derives from the class and its config when the class is defined (public name,
signal namespace, scope rule, auth rule, ttl, hooks, events, fields) and attaches to it as
``__faststate_info__``. Everything above this module reads the description, never a registry.
The catalog maps public names to classes (classes are process-wide, as Python makes them).
"""

from __future__ import annotations

import asyncio
import functools
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._auth import AuthRule
from ._eventspec import EventSpec
from ._exceptions import ConfigurationError
from ._scopes import RECORD_TTL_WITHOUT_LOAD, ScopeRule, StateScope, scope_rule
from ._writable import server_owned, writable_fields, writable_names

DEFAULT_PREFIX = "/_faststate"


@dataclass(frozen=True)
class StateConfig:
    """How a State class is shared and protected.

    Declare it on the class as ``__faststate__ = StateConfig(...)``. ``scope`` is a
    :class:`StateScope` or the name of a registered custom scope. ``ttl`` is the idle time to
    live in seconds (default: by scope, see ``DEFAULT_TTLS``).
    """

    #: who shares one instance: a StateScope or a registered custom scope's name
    scope: StateScope | str = StateScope.SESSION
    #: a signed-in user is needed to resolve the state, open its stream or call its events
    requires_auth: bool = False
    #: permissions a user needs, all of them (implies ``requires_auth``)
    permissions: tuple[str, ...] = ()
    #: roles of which a user needs at least one (implies ``requires_auth``)
    roles: tuple[str, ...] = ()
    #: seconds an instance may stay idle before it is dropped (default: by scope, DEFAULT_TTLS)
    ttl: float | None = None
    #: SQLite backend: save after every change, not only when the instance is evicted
    auto_persist: bool = False
    #: public name used in event URLs and keys (default: the class name)
    name: str | None = None
    #: signal namespace on the page (default: the name with a lower-case first letter)
    namespace: str | None = None
    #: put this state's signals at the top level (``$count``), as the seeds did
    flat_signals: bool = False
    #: ``load(id) -> State | dict | None`` reads the instance from the app's own store when it is
    #: first used (id: the record id, component id or None); sync or async
    load: Callable[[Any], Any] | None = None
    #: ``save(state)`` writes it back after every event that changed it; sync or async
    save: Callable[[Any], Any] | None = None
    #: ``on_evict(state)`` runs before an idle instance is dropped after its ttl; sync or async
    on_evict: Callable[[Any], Any] | None = None
    #: fields a client may write (each gets a ``set_<field>`` event); every other field is
    #: server-owned. Per field: ``Annotated[str, client_writable]`` or ``Writable(...)``
    writable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        scope = self.scope
        if not isinstance(scope, StateScope):
            try:
                scope = StateScope(scope)
            except ValueError:
                scope_rule(str(scope))  # a registered custom scope, or a clear error
        object.__setattr__(self, "scope", scope)
        object.__setattr__(self, "permissions", tuple(self.permissions))
        object.__setattr__(self, "roles", tuple(self.roles))
        object.__setattr__(self, "writable", writable_names(self.writable))
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigurationError("StateConfig.ttl must be a positive number of seconds")
        if self.name is not None and not (self.name.isidentifier() and self.name.isascii()):
            raise ConfigurationError(f"state name {self.name!r} must be a Python-style identifier")

    @functools.cached_property
    def auth(self) -> AuthRule:
        """The state-wide authorization rule (built once)."""
        return AuthRule(self.requires_auth, self.permissions, self.roles)

    @property
    def rule(self) -> ScopeRule:
        """The scope rule that builds this state's keys."""
        return scope_rule(str(self.scope))

    @property
    def effective_ttl(self) -> float | None:
        """The idle time to live: the config's, else the scope's default (a RECORD state
        without a ``load`` hook: ``RECORD_TTL_WITHOUT_LOAD``)."""
        if self.ttl is not None:
            return self.ttl
        if self.scope == StateScope.RECORD and self.load is None:
            return RECORD_TTL_WITHOUT_LOAD
        return self.rule.default_ttl


@dataclass(frozen=True, eq=False)
class StateInfo:
    """The description of one State class, computed once when the class is defined."""

    cls: type
    config: StateConfig
    #: public name used in event URLs and keys
    name: str
    #: signal namespace (None: flat signals)
    namespace: str | None
    events: dict[str, EventSpec]
    #: public fields (signals on the page)
    fields: tuple[str, ...]
    #: client-writable fields -> the field's own rule (the state's applies too)
    writable: dict[str, AuthRule]
    #: every field a client may not write (never read from signals)
    server_owned: frozenset[str]
    #: a built-in scope's rule (they cannot be registered again); None for a custom scope
    _builtin_rule: ScopeRule | None = field(init=False, repr=False, default=None)
    #: every model field, public or not (pydantic's ``model_fields`` costs a descriptor call)
    all_fields: frozenset[str] = field(init=False, repr=False, default=frozenset())
    #: the state-wide authorization rule (the config's, read on every event)
    auth: AuthRule = field(init=False, repr=False, default_factory=AuthRule)
    #: the parts of the namespace, innermost first (what :meth:`wrap` nests under)
    _nesting: tuple[str, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        scope = self.config.scope
        builtin = scope_rule(scope) if isinstance(scope, StateScope) else None
        object.__setattr__(self, "_builtin_rule", builtin)
        object.__setattr__(self, "all_fields", self.server_owned | self.writable.keys())
        object.__setattr__(self, "auth", self.config.auth)
        nesting = tuple(reversed(self.namespace.split("."))) if self.namespace else ()
        object.__setattr__(self, "_nesting", nesting)

    @property
    def scope(self) -> StateScope | str:
        return self.config.scope

    @property
    def rule(self) -> ScopeRule:
        # a custom scope's is looked up each time: it may be registered again (tests, reloads)
        builtin = self._builtin_rule
        return builtin if builtin is not None else self.config.rule

    @property
    def ttl(self) -> float | None:
        return self.config.effective_ttl

    @property
    def is_component(self) -> bool:
        return self.config.scope == StateScope.COMPONENT

    @property
    def identity(self) -> str | None:
        """The id that selects an instance ("component_id", "record_id"), if the scope has one."""
        builtin = self._builtin_rule  # not self.rule: one property call less, on every event
        return (builtin if builtin is not None else self.config.rule).identity

    @property
    def needs_user(self) -> bool:
        """Whether resolving this state may ask for the user (its rule, or a user-keyed scope)."""
        if self.auth.requires_auth:
            return True
        builtin = self._builtin_rule
        return (builtin if builtin is not None else self.config.rule).needs_user

    def namespace_for(self, ident: str | None) -> str | None:
        """The namespace of one instance: components nest under their id."""
        ns = self.namespace
        if ident is not None and ns and self.is_component:
            return f"{ns}.{ident}"
        return ns

    def wrap(self, data: dict[str, Any], ident: str | None) -> dict[str, Any]:
        """``data`` (field -> JSON value) nested under the instance's namespace."""
        nesting: Iterable[str] = self._nesting  # the class's: every instance but a component's
        if ident is not None and self.is_component:
            ns = self.namespace_for(ident)
            nesting = reversed(ns.split(".")) if ns else ()
        for part in nesting:
            data = {part: data}
        return data


class Meta:
    """What faststate knows of one instance (kept out of the model's fields)."""

    __slots__ = (
        "assigned",
        "echoed",
        "group",
        "ident",
        "key",
        "last_changed",
        "lock",
        "now",
        "store",
        "ttl",
        "version",
    )

    def __init__(self) -> None:
        self.key: str | None = None
        self.ident: str | None = None
        self.ttl: float | None = None
        self.lock: asyncio.Lock | None = None
        #: events waiting to run together in the next group commit (None: no group open)
        self.group: list[Any] | None = None
        #: the StateStore holding this instance (None for an instance made by hand)
        self.store: Any = None
        #: its changes commit without waiting for anything (``_changes.commits_now``)
        self.now = False
        #: how many changes this instance has had (the per-key version streams carry)
        self.version = 0
        self.last_changed: list[str] = []
        #: fields assigned while a change runs (None: not recording)
        self.assigned: set[str] | None = None
        #: the fields the last change assigned (changed or not), for the sender's reply
        self.echoed: set[str] = set()

    def locked(self) -> bool:
        return self.lock is not None and self.lock.locked()


#: ``meta_of(inst)``: the bookkeeping slot of a State instance (a C attribute getter: it
#: runs several times per event, and a Python function's call costs more than the read)
meta_of: Callable[[Any], Meta] = operator.attrgetter("_fs")


def describe(cls: type, fields: dict[str, Any], events: dict[str, EventSpec]) -> StateInfo:
    """Build (and validate) the description of ``cls`` from its ``__faststate__`` config."""
    declared = cls.__dict__.get("__faststate__")
    if declared is not None and not isinstance(declared, StateConfig):
        raise ConfigurationError(f"{cls.__name__}.__faststate__ must be a StateConfig")
    config = declared or StateConfig()
    name = config.name or cls.__name__
    if config.flat_signals:
        namespace = None
    elif config.namespace:
        namespace = config.namespace
    else:
        namespace = name[:1].lower() + name[1:]
    public = tuple(n for n, info in fields.items() if not n.startswith("_") and not info.exclude)
    writable = writable_fields(cls.__name__, fields, public, config.writable, events)
    owned = frozenset(n for n in fields if n not in writable)
    info = StateInfo(cls, config, name, namespace, events, public, writable, owned)
    _validate(info)
    return info


def _validate(info: StateInfo) -> None:
    config = info.config
    if config.scope == StateScope.USER and not config.requires_auth:
        raise ConfigurationError(f"user-scoped state {info.name} must set requires_auth=True")
    ident = config.rule.identity
    if ident is not None:
        for spec in info.events.values():
            if ident in spec.param_names:
                raise ConfigurationError(
                    f"{info.name}.{spec.name}: the argument name {ident!r} is reserved "
                    f"for the {config.scope} id"
                )


#: ``info_of(cls)``: the description attached to a State class (each subclass gets its own
#: when defined, so the class attribute is the class's own; a C attribute getter, as meta_of)
info_of: Callable[[type], StateInfo] = operator.attrgetter("__faststate_info__")


class Catalog:
    """Public state names -> classes, and the events served at explicit paths."""

    def __init__(self) -> None:
        self._classes: dict[str, type] = {}
        self._custom_routes: dict[str, tuple[type, EventSpec]] | None = None
        #: changes whenever a name is given or the table restored (routes cached elsewhere
        #: are then stale)
        self.version = 0

    def add(self, cls: type, name: str) -> None:
        """Give ``name`` to ``cls``. Another class (another module or qualified name) already
        holding it is a ConfigurationError: both would share URLs and keys. The same class
        defined again (a reload, a test) takes the name over."""
        old = self._classes.get(name)
        if (
            old is not None
            and old is not cls
            and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__)
        ):
            raise ConfigurationError(
                f"two State classes are named {name!r}: {old.__module__}.{old.__qualname__} "
                f"and {cls.__module__}.{cls.__qualname__}; they would share event URLs and "
                f"keys. Give one a distinct name: __faststate__ = StateConfig(name=...)"
            )
        self._classes[name] = cls
        self._custom_routes = None
        self.version += 1

    def class_named(self, name: str) -> type | None:
        return self._classes.get(name)

    def route(self, state_name: str, event_name: str) -> tuple[type, EventSpec] | None:
        """The (class, event) served at ``<prefix>/<state_name>/<event_name>``."""
        cls = self._classes.get(state_name)
        if cls is None:
            return None
        spec = info_of(cls).events.get(event_name)
        return None if spec is None or spec.path is not None else (cls, spec)

    def custom_routes(self) -> dict[str, tuple[type, EventSpec]]:
        """Events declared with an explicit ``path=`` (computed once per set of classes)."""
        out = self._custom_routes
        if out is None:
            out = {}
            for cls in list(self._classes.values()):
                for spec in info_of(cls).events.values():
                    if spec.path is not None:
                        if spec.path in out:
                            raise ConfigurationError(f"two events are served at {spec.path}")
                        out[spec.path] = (cls, spec)
            self._custom_routes = out
        return out

    def snapshot(self) -> dict[str, type]:
        """A copy of the name table (tests restore it with :meth:`restore`)."""
        return dict(self._classes)

    def restore(self, classes: dict[str, type]) -> None:
        self._classes = dict(classes)
        self._custom_routes = None
        self.version += 1


#: every State class of the process, by public name
catalog = Catalog()

__all__ = [
    "DEFAULT_PREFIX",
    "Meta",
    "StateConfig",
    "StateInfo",
    "catalog",
    "describe",
    "info_of",
    "meta_of",
    "server_owned",
]
