"""The registry: which State classes exist, how each is configured, and the live instances."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError
from .scopes import SUPPORTED_SCOPES, StateConfig, StateScope, state_key

if TYPE_CHECKING:
    from .context import RequestContext
    from .events import EventSpec
    from .state import State

DEFAULT_PREFIX = "/_faststate"


class StateRegistry:
    """Holds State configurations and live instances, keyed by hierarchical string keys."""

    def __init__(self) -> None:
        #: URL prefix of event endpoints; FastStateMiddleware(prefix=...) sets it
        self.prefix = DEFAULT_PREFIX
        self._configs: dict[type[State], StateConfig] = {}
        self._classes: dict[str, type[State]] = {}
        self._instances: dict[str, State] = {}
        self._create_lock = threading.Lock()
        self._custom_routes: dict[str, tuple[type[State], EventSpec]] | None = None

    # -- classes and configuration -------------------------------------------------------
    def register(self, state_cls: type[State], config: StateConfig | None = None) -> StateConfig:
        """Configure ``state_cls`` (scope, auth, ttl, ...). Fails loudly on a bad config."""
        from .state import State

        if not (isinstance(state_cls, type) and issubclass(state_cls, State)):
            raise ConfigurationError(f"{state_cls!r} is not a State subclass")
        config = config or StateConfig()
        _validate(state_cls, config)
        self._configs[state_cls] = config
        self._add_class(state_cls, config)
        return config

    def _add_class(self, state_cls: type[State], config: StateConfig | None = None) -> None:
        name = (config or self.config_for(state_cls)).name or state_cls.__name__
        old = self._classes.get(name)
        if old is not None and old is not state_cls:
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
    def key_for(self, state_cls: type[State], ctx: RequestContext) -> str:
        return state_key(self.name_of(state_cls), self.config_for(state_cls), ctx)

    def resolve(self, state_cls: type[State], ctx: RequestContext) -> State:
        """The instance of ``state_cls`` this request reaches, created on first use."""
        key = self.key_for(state_cls, ctx)
        inst = self._instances.get(key)
        if inst is not None and type(inst) is state_cls:
            return inst
        with self._create_lock:  # sync handlers resolve from worker threads
            inst = self._instances.get(key)
            if inst is None or type(inst) is not state_cls:
                inst = state_cls()
                inst._fs_key = key
                self._instances[key] = inst
        return inst

    def get(self, key: str) -> State | None:
        """The live instance stored under ``key``, if any."""
        return self._instances.get(key)

    def keys(
        self, scope: StateScope | None = None, state_cls: type[State] | None = None
    ) -> list[str]:
        """Live keys, optionally only those of one scope and/or one class."""
        out = []
        for key, inst in list(self._instances.items()):
            if scope is not None and not key.startswith(scope.value + ":"):
                continue
            if state_cls is not None and type(inst) is not state_cls:
                continue
            out.append(key)
        return out

    def discard(self, key: str) -> None:
        self._instances.pop(key, None)

    def clear(self) -> None:
        """Forget every live instance (configurations stay)."""
        self._instances.clear()

    def _drop_instances_of(self, state_cls: type[State]) -> None:
        for key, inst in list(self._instances.items()):
            if type(inst) is state_cls:
                self._instances.pop(key, None)

    def __len__(self) -> int:
        return len(self._instances)

    def __repr__(self) -> str:
        return f"<StateRegistry {len(self._classes)} classes, {len(self._instances)} instances>"

    def stats(self) -> dict[str, Any]:
        by_scope: dict[str, int] = {}
        for key in list(self._instances):
            by_scope[key.split(":", 1)[0]] = by_scope.get(key.split(":", 1)[0], 0) + 1
        return {"instances": len(self._instances), "by_scope": by_scope}


def _validate(state_cls: type[State], config: StateConfig) -> None:
    if config.scope not in SUPPORTED_SCOPES:
        raise ConfigurationError(
            f"{state_cls.__name__}: scope {config.scope.value!r} is not available in this release"
        )
    if config.scope is StateScope.USER and not config.requires_auth:
        raise ConfigurationError(
            f"user-scoped state {state_cls.__name__} must set requires_auth=True"
        )


#: The default registry used by State classes and FastStateMiddleware.
state_registry = StateRegistry()

__all__ = ["DEFAULT_PREFIX", "StateRegistry", "state_registry"]
