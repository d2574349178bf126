"""The registry: which State classes exist, how each is configured, and the live instances.

Live instances are keyed by hierarchical keys (see :mod:`faststate_mw.scopes`). Each instance whose
scope has a time to live is tracked in an access-ordered list per ttl, so a sweep touches only
what has expired and never walks every instance.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import OWNER_FIELDS
from .backends.base import Backend, MemoryBackend, Stored
from .broadcast import Hub
from .exceptions import (
    ConfigurationError,
    FastStateError,
    NoRequestContextError,
    StoredStateError,
)
from .scopes import StateConfig, StateScope

if TYPE_CHECKING:
    from .context import RequestContext
    from .events import EventSpec
    from .state import State

DEFAULT_PREFIX = "/_faststate"
log = logging.getLogger("faststate_mw")


class StateRegistry:
    """Holds State configurations and live instances, keyed by hierarchical string keys."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        #: URL prefix of event endpoints; FastStateMiddleware(prefix=...) sets it
        self.prefix = DEFAULT_PREFIX
        #: the clock ttls are measured with (tests substitute their own)
        self.clock = clock
        self._configs: dict[type[State], StateConfig] = {}
        self._namespaces: dict[type[State], str | None] = {}
        self._classes: dict[str, type[State]] = {}
        self._instances: dict[str, State] = {}
        self._expiry: dict[float, OrderedDict[str, float]] = {}
        self._create_lock = threading.Lock()
        self._custom_routes: dict[str, tuple[type[State], EventSpec]] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        #: live streams subscribed to keys of this registry
        self.hub = Hub()
        #: where states are stored and how changes reach other workers (default: memory)
        self.backend: Backend = MemoryBackend()
        self._backend_started = False
        self._backend_task: asyncio.Task[None] | None = None

    # -- classes and configuration -------------------------------------------------------
    def register(self, state_cls: type[State], config: StateConfig | None = None) -> StateConfig:
        """Configure ``state_cls`` (scope, auth, ttl, ...). Fails loudly on a bad config."""
        from .state import State

        if not (isinstance(state_cls, type) and issubclass(state_cls, State)):
            raise ConfigurationError(f"{state_cls!r} is not a State subclass")
        config = config or StateConfig()
        _validate(state_cls, config)
        self._configs[state_cls] = config
        self._namespaces.pop(state_cls, None)
        self._add_class(state_cls, config)
        return config

    def _add_class(self, state_cls: type[State], config: StateConfig | None = None) -> None:
        name = (config or self.config_for(state_cls)).name or state_cls.__name__
        old = self._classes.get(name)
        if old is not None and old is not state_cls:
            if (old.__module__, old.__qualname__) != (state_cls.__module__, state_cls.__qualname__):
                warnings.warn(
                    f"two State classes are named {name!r} ({old.__module__}.{old.__qualname__} "
                    f"and {state_cls.__module__}.{state_cls.__qualname__}); the newer one now "
                    "owns the name's URLs and keys: set StateConfig(name=...) to tell them apart",
                    stacklevel=4,
                )
            # A redefinition (reload, tests): the newest class owns the name and its instances.
            self._drop_instances_of(old)
        self._classes[name] = state_cls
        self._custom_routes = None

    def config_for(self, state_cls: type[State]) -> StateConfig:
        """The config of ``state_cls``: registered, else ``__faststate__``, else the default."""
        config = self._configs.get(state_cls)
        if config is None:
            declared = state_cls.__dict__.get("__faststate__")
            if declared is not None and not isinstance(declared, StateConfig):
                raise ConfigurationError(
                    f"{state_cls.__name__}.__faststate__ must be a StateConfig"
                )
            config = declared or StateConfig()
            _validate(state_cls, config)
            self._configs[state_cls] = config
        return config

    def namespace_of(self, state_cls: type[State]) -> str | None:
        """The signal namespace of ``state_cls`` (cached; None when its signals are flat)."""
        try:
            return self._namespaces[state_cls]
        except KeyError:
            pass
        config = self.config_for(state_cls)
        if config.flat_signals:
            ns = None
        elif config.namespace:
            ns = config.namespace
        else:
            name = self.name_of(state_cls)
            ns = name[:1].lower() + name[1:]
        self._namespaces[state_cls] = ns
        return ns

    def name_of(self, state_cls: type[State]) -> str:
        return self.config_for(state_cls).name or state_cls.__name__

    def class_named(self, name: str) -> type[State] | None:
        return self._classes.get(name)

    def route(self, state_name: str, event_name: str) -> tuple[type[State], EventSpec] | None:
        """The (class, event) served at ``<prefix>/<state_name>/<event_name>``."""
        cls = self._classes.get(state_name)
        if cls is None:
            return None
        spec = cls.__faststate_events__.get(event_name)
        return None if spec is None or spec.path is not None else (cls, spec)

    def custom_routes(self) -> dict[str, tuple[type[State], EventSpec]]:
        """Events declared with an explicit ``path=`` (computed once per set of classes)."""
        out = self._custom_routes
        if out is None:
            out = {}
            for cls in list(self._classes.values()):
                for spec in cls.__faststate_events__.values():
                    if spec.path is not None:
                        if spec.path in out:
                            raise ConfigurationError(f"two events are served at {spec.path}")
                        out[spec.path] = (cls, spec)
            self._custom_routes = out
        return out

    # -- instances --------------------------------------------------------------------------
    def key_for(
        self, state_cls: type[State], ctx: RequestContext | None, ident: str | None = None
    ) -> str:
        config = self.config_for(state_cls)
        name = self.name_of(state_cls)
        rule = config.auth
        if rule.active and ctx is not None:
            rule.check(ctx.user, key=_safe_key(config, name, ctx, ident))
        return config.rule.key(name, ctx, ident)

    def resolve(
        self,
        state_cls: type[State],
        ctx: RequestContext | None,
        ident: str | None = None,
        refresh: bool = True,
    ) -> State:
        """The instance of ``state_cls`` for this request (and id), created on first use: read
        from the backend if stored there, else from the ``load`` hook, else defaults. With a
        shared backend (Redis) a cached instance is refreshed when ``refresh``."""
        key = self.key_for(state_cls, ctx, ident)
        inst = self._hit(key, state_cls)
        backend = self.backend
        if inst is not None:
            if refresh and backend.shared:
                self._apply_stored(inst, backend.load_sync(key))
            return inst
        stored = backend.load_sync(key) if backend.durable else None
        data: Any = None
        config = self.config_for(state_cls)
        if stored is None and config.load is not None:
            data = config.load(ident)
            if inspect.isawaitable(data):
                close = getattr(data, "close", None)
                if close is not None:
                    close()
                raise NoRequestContextError(
                    f"{state_cls.__name__} has an async load hook: use `await "
                    f"{state_cls.__name__}.dependency()` (or FastHTML injection) instead"
                )
        return self._store(key, state_cls, ident, data, ctx, stored)

    async def aresolve(
        self,
        state_cls: type[State],
        ctx: RequestContext | None,
        ident: str | None = None,
        refresh: bool = True,
    ) -> State:
        """:meth:`resolve` for async code: awaits the backend and an async ``load`` hook."""
        key = self.key_for(state_cls, ctx, ident)
        inst = self._hit(key, state_cls)
        backend = self.backend
        if inst is not None:
            if refresh and backend.shared:
                self._apply_stored(inst, await backend.load(key))
            return inst
        stored = await backend.load(key) if backend.durable else None
        data: Any = None
        config = self.config_for(state_cls)
        if stored is None and config.load is not None:
            data = config.load(ident)
            if inspect.isawaitable(data):
                data = await data
        return self._store(key, state_cls, ident, data, ctx, stored)

    def _hit(self, key: str, state_cls: type[State]) -> State | None:
        inst = self._instances.get(key)
        if inst is not None and type(inst) is state_cls:
            ttl = inst._fs.ttl
            if ttl is not None:
                order = self._expiry[ttl]
                order[key] = self.clock()
                order.move_to_end(key)
            return inst
        return None

    def _store(
        self,
        key: str,
        state_cls: type[State],
        ident: str | None,
        data: Any,
        ctx: RequestContext | None,
        stored: Stored | None = None,
    ) -> State:
        with self._create_lock:  # sync handlers resolve from worker threads
            inst = self._instances.get(key)
            if inst is not None and type(inst) is state_cls:
                return inst
            if stored is not None:
                inst = from_stored(state_cls, key, stored.data)
                inst._fs.version = stored.version
            elif data is None:
                inst = state_cls()
            elif isinstance(data, state_cls):
                inst = data
            else:
                inst = state_cls.model_validate(data)
            inst._fs.key = key
            inst._fs.ident = ident
            config = self.config_for(state_cls)
            if config.scope == StateScope.USER and ctx is not None and ctx.user is not None:
                _fill_owner(inst, ctx.user.id)
            ttl = config.effective_ttl
            inst._fs.ttl = ttl
            self._instances[key] = inst
            if ttl is not None:
                self._expiry.setdefault(ttl, OrderedDict())[key] = self.clock()
        return inst

    def _apply_stored(self, inst: State, stored: Stored | None) -> bool:
        """Bring a cached instance up to a newer stored version (in place: holders of the
        instance see it). Skipped while an event runs on it: its commit will notice."""
        if stored is None or stored.version <= inst._fs.version:
            return False
        if inst._fs.lock is not None and inst._fs.lock.locked():
            return False
        load_into(inst, stored)
        return True

    def apply_remote(self, key: str, version: int, data: str, sse: bytes) -> None:
        """A change made by another worker: update the cached copy, tell local streams."""
        inst = self._instances.get(key)
        if inst is not None:
            self._apply_stored(inst, Stored(version, data))
        self.hub.publish(key, version, sse)

    async def refreshed(self, key: str) -> State | None:
        """The cached instance under ``key``, brought up to date from a shared backend."""
        inst = self._instances.get(key)
        if inst is not None and self.backend.shared:
            self._apply_stored(inst, await self.backend.load(key))
        return inst

    # -- backend ------------------------------------------------------------------------------
    def use_backend(self, backend: Backend | str | None) -> Backend:
        """Store states in ``backend`` (a URL or a Backend); call before serving requests."""
        from .backends import backend_from_url

        self.backend = backend_from_url(backend)
        self._backend_started = False
        return self.backend

    def ensure_running(self, sweep_interval: float) -> None:
        """Start the ttl sweeper and the backend's listener in the running loop (once)."""
        self.ensure_sweeper(sweep_interval)
        if not self._backend_started:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._backend_started = True
            backend = self.backend
            resubscribed = getattr(backend, "on_resubscribed", None)
            if resubscribed is not None:
                resubscribed(self.hub.resync_keys)
            self.hub.watch(backend.subscribe, backend.unsubscribe)
            self._backend_task = loop.create_task(backend.start(self.apply_remote, self.hub.epoch))

    def get(self, key: str) -> State | None:
        """The live instance stored under ``key``, if any."""
        return self._instances.get(key)

    def keys(
        self, scope: StateScope | str | None = None, state_cls: type[State] | None = None
    ) -> list[str]:
        """Live keys, optionally only those of one scope and/or one class."""
        prefix = None if scope is None else f"{scope}:"
        out = []
        for key, inst in list(self._instances.items()):
            if prefix is not None and not key.startswith(prefix):
                continue
            if state_cls is not None and type(inst) is not state_cls:
                continue
            out.append(key)
        return out

    def discard(self, key: str) -> State | None:
        """Forget the instance under ``key`` (no hooks run); returns it."""
        inst = self._instances.pop(key, None)
        if inst is not None and inst._fs.ttl is not None:
            self._expiry.get(inst._fs.ttl, OrderedDict()).pop(key, None)
        return inst

    def clear(self) -> None:
        """Forget every live instance (configurations stay)."""
        self._instances.clear()
        self._expiry.clear()

    def _drop_instances_of(self, state_cls: type[State]) -> None:
        for key, inst in list(self._instances.items()):
            if type(inst) is state_cls:
                self.discard(key)

    # -- time to live ---------------------------------------------------------------------------
    async def sweep(self, batch: int = 1000) -> list[str]:
        """Drop every instance idle longer than its ttl, after its ``on_evict`` hook (e.g. a
        save). Yields to the event loop every ``batch`` evictions so requests never stall."""
        now = self.clock()
        evicted: list[str] = []
        for ttl, order in list(self._expiry.items()):
            while order:
                key, last = next(iter(order.items()))
                if now - last <= ttl:
                    break
                order.popitem(last=False)
                inst = self._instances.get(key)
                if inst is None:
                    continue
                if inst._fs.lock is not None and inst._fs.lock.locked():
                    order[key] = now  # an event is running on it: keep it for another ttl
                    continue
                try:
                    await self._before_evict(inst)
                except Exception:
                    log.exception("saving %s before eviction failed; instance kept", key)
                    order[key] = now
                    continue
                self._instances.pop(key, None)
                evicted.append(key)
                if len(evicted) % batch == 0:
                    await asyncio.sleep(0)
        if len(evicted) > 1000 and len(evicted) > len(self._instances):
            self._compact()
        return evicted

    def _compact(self) -> None:
        """Dicts never shrink their tables: after a large eviction, copy them so the memory of
        the dropped entries is returned."""
        with self._create_lock:
            self._instances = dict(self._instances)
            self._expiry = {ttl: OrderedDict(order) for ttl, order in self._expiry.items()}

    async def _before_evict(self, inst: State) -> None:
        """Save an idle instance before it is dropped: its hooks, and a durable backend that
        does not already hold every change (sqlite without auto_persist)."""
        config = self.config_for(type(inst))
        hook = config.on_evict or config.save
        if hook is not None:
            result = hook(inst)
            if inspect.isawaitable(result):
                await result
        backend = self.backend
        if backend.durable and not backend.shared and not config.auto_persist:
            await backend.save(
                inst._fs.key or "", inst._fs.version, inst.model_dump_json(), config.effective_ttl
            )

    def ensure_sweeper(self, interval: float = 30.0) -> None:
        """Start the periodic sweep in the running event loop, once (the middleware calls it)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = self._sweeper
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._sweeper = loop.create_task(self._sweep_forever(interval))

    async def _sweep_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # never let the sweeper die silently
                log.exception("state sweep failed")

    # -- introspection ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._instances)

    def __repr__(self) -> str:
        return f"<StateRegistry {len(self._classes)} classes, {len(self._instances)} instances>"

    def stats(self) -> dict[str, Any]:
        """Counts of live instances, in all and by scope."""
        by_scope: dict[str, int] = {}
        for key in list(self._instances):
            scope = key.split(":", 1)[0]
            by_scope[scope] = by_scope.get(scope, 0) + 1
        return {"instances": len(self._instances), "by_scope": by_scope}


def load_into(inst: State, stored: Stored) -> None:
    """Replace ``inst``'s fields and version with a stored state's, in place."""
    fresh = from_stored(type(inst), inst._fs.key or "", stored.data)
    inst.__dict__.update({k: fresh.__dict__[k] for k in type(inst).model_fields})
    inst._fs.version = stored.version


def from_stored(state_cls: type[State], key: str, data: str) -> State:
    """Rebuild a state from its stored JSON, tolerating a class that changed since: unknown
    fields are dropped, fields that no longer validate (or are new) take their defaults, with a
    warning naming the key. Unreadable JSON is a StoredStateError naming the key."""
    from pydantic import ValidationError

    try:
        return state_cls.model_validate_json(data)
    except ValidationError:
        pass
    try:
        raw = json.loads(data)
    except ValueError:
        raise StoredStateError(f"stored state {key!r} is not valid JSON") from None
    if not isinstance(raw, dict):
        raise StoredStateError(f"stored state {key!r} is not a JSON object")
    kept = {k: v for k, v in raw.items() if k in state_cls.model_fields}
    dropped: list[str] = []
    while True:
        try:
            inst = state_cls.model_validate(kept)
            break
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad & set(kept):
                raise StoredStateError(f"stored state {key!r} cannot be loaded: {exc}") from None
            for name in bad & set(kept):
                kept.pop(name)
                dropped.append(name)
    log.warning(
        "stored state %s no longer matches %s: reset to defaults: %s",
        key,
        state_cls.__name__,
        ", ".join(sorted(dropped)) or "-",
    )
    return inst


def _fill_owner(inst: State, user_id: str) -> None:
    """A new USER-scoped instance belongs to its user: fill an empty owner field."""
    for name in OWNER_FIELDS:
        if name in type(inst).model_fields and getattr(inst, name) in (None, "", 0):
            setattr(inst, name, user_id)
            return


def _safe_key(config: StateConfig, name: str, ctx: RequestContext, ident: str | None) -> str:
    """The key for the audit log; the state name where no key can be built (no user yet)."""
    try:
        return config.rule.key(name, ctx, ident)
    except FastStateError:
        return name


def _validate(state_cls: type[State], config: StateConfig) -> None:
    if config.scope == StateScope.USER and not config.requires_auth:
        raise ConfigurationError(
            f"user-scoped state {state_cls.__name__} must set requires_auth=True"
        )
    ident = config.rule.identity
    if ident is not None:
        for spec in state_cls.__faststate_events__.values():
            if ident in spec.param_names:
                raise ConfigurationError(
                    f"{state_cls.__name__}.{spec.name}: the argument name {ident!r} is reserved "
                    f"for the {config.scope} id"
                )


#: The default registry used by State classes and FastStateMiddleware.
state_registry = StateRegistry()

__all__ = ["DEFAULT_PREFIX", "StateRegistry", "state_registry"]
