"""Which fields a client may write: declared per field or per state, never assumed.

Every public field is a signal on the page, but only a field declared client-writable
can be changed by a client's input:

- per field, with a marker: ``title: Annotated[str, client_writable] = ""``, or with rules of its
  own: ``body: Annotated[str, Writable(permissions=["editor"])] = ""``;
- per state: ``StateConfig(writable=("title", "body"))``.

A writable field gets a generated ``set_<field>`` event carrying the state's rules plus the
field's own (permissions, roles, owner_only), and its signal may be read as the value of an
event argument of the same name. Every other field is server-owned (the default): no setter,
and an event argument named like it is taken from the action URL only, never from signals.
Owner and identity fields (``user_id``, ``owner_id``, the ``owner_field`` of any owner_only
rule, the scope's ``record_id`` / ``component_id``) can never be declared writable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._auth import OWNER_FIELDS, AuthRule, resolve_owner_field
from ._eventspec import EventSpec
from ._exceptions import ConfigurationError

#: the ids that pick an instance; never fields a client may set
IDENTITY_FIELDS = ("record_id", "component_id")


def _strings(values: Iterable[str] | str) -> tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


@dataclass(frozen=True)
class Writable:
    """Declares a field client-writable, with optional rules of its own:
    ``Annotated[str, Writable(permissions=["editor"], owner_only=True)]``.

    The rules (as for ``@requires_auth``) are added to the state's for the field's generated
    setter; naming any permission, role or ``owner_only`` implies ``requires_auth``.
    """

    requires_auth: bool = False
    permissions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    owner_only: bool = False
    owner_field: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "permissions", _strings(self.permissions))
        object.__setattr__(self, "roles", _strings(self.roles))

    @property
    def rule(self) -> AuthRule:
        """The field's own rule (the state's is applied too)."""
        return AuthRule(
            self.requires_auth, self.permissions, self.roles, self.owner_only, self.owner_field
        )


#: Mark a field client-writable with no rules beyond the state's:
#: ``message: Annotated[str, client_writable] = ""``.
client_writable = CLIENT_WRITABLE = Writable()

#: The default, so marking a field with it changes nothing; kept as explicit documentation
#: (``balance: Annotated[int, server_owned] = 0``). Declaring such a field writable as well is a
#: ConfigurationError.
server_owned = type("ServerOwned", (), {"__repr__": lambda self: "server_owned"})()


def writable_names(value: Iterable[str] | str) -> tuple[str, ...]:
    """``StateConfig(writable=...)`` as a tuple of names (a single name may be a string)."""
    names = _strings(value)
    if not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError("StateConfig.writable must name fields (non-empty strings)")
    return names


def _marker(metadata: Iterable[Any]) -> Writable | None:
    for m in metadata:
        if m is Writable:
            return CLIENT_WRITABLE
        if isinstance(m, Writable):
            return m
    return None


def writable_fields(
    state_name: str,
    fields: Mapping[str, Any],
    public: tuple[str, ...],
    declared: tuple[str, ...],
    events: Mapping[str, EventSpec],
) -> dict[str, AuthRule]:
    """Field -> the field's own rule, for every field declared client-writable (by marker in
    ``fields``' metadata or by name in ``declared``); a ConfigurationError for a declaration
    that names no public field, names one twice, or names an owner or identity field."""
    markers: dict[str, Writable] = {}
    for name, info in fields.items():
        marker = _marker(info.metadata)
        if marker is None:
            continue
        if any(m is server_owned for m in info.metadata):
            raise ConfigurationError(
                f"{state_name}.{name} is marked both server_owned and client-writable"
            )
        markers[name] = marker
    for name in declared:
        if name in markers:
            raise ConfigurationError(f"{state_name}.{name} is declared client-writable twice")
        if name in fields and any(m is server_owned for m in fields[name].metadata):
            raise ConfigurationError(
                f"{state_name}.{name} is marked server_owned and listed in StateConfig.writable"
            )
        markers[name] = CLIENT_WRITABLE
    protected = _protected_fields(state_name, fields, events, markers)
    out: dict[str, AuthRule] = {}
    for name, marker in markers.items():
        if name not in public:
            raise ConfigurationError(
                f"{state_name}: {name!r} is not a public field, so it cannot be client-writable"
            )
        if name in protected:
            raise ConfigurationError(
                f"{state_name}.{name} is an owner or identity field: it can never be "
                "client-writable (set it on the server)"
            )
        rule = marker.rule
        if rule.owner_only:
            owner = resolve_owner_field(state_name, fields, rule, f"set_{name}")
            rule = AuthRule(rule.requires_auth, rule.permissions, rule.roles, True, owner)
        out[name] = rule
    return out


def _protected_fields(
    state_name: str,
    fields: Mapping[str, Any],
    events: Mapping[str, EventSpec],
    markers: Mapping[str, Writable],
) -> set[str]:
    """Fields that say whose an instance is, or which one it is."""
    protected = {*OWNER_FIELDS, *IDENTITY_FIELDS}
    for spec in events.values():
        if spec.auth.owner_only and spec.auth.owner_field:
            protected.add(spec.auth.owner_field)
    for name, marker in markers.items():
        if marker.owner_only:
            protected.add(resolve_owner_field(state_name, fields, marker.rule, f"set_{name}"))
    return protected


__all__ = [
    "IDENTITY_FIELDS",
    "Writable",
    "client_writable",
    "server_owned",
    "writable_fields",
    "writable_names",
]
