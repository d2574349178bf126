"""Reading stored state back: JSON validated by pydantic, tolerant of classes that changed."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError

from . import _untrusted as untrusted
from ._config import meta_of
from ._exceptions import InvalidPayload, StoredStateError
from .backends.base import Stored

log = logging.getLogger("faststate_mw")


def from_stored(state_cls: type[BaseModel], key: str, data: str) -> Any:
    """Rebuild a state from its stored JSON, tolerating a class that changed since: unknown
    fields are dropped, fields that no longer validate (or are new) take their defaults, with a
    warning naming the key. Unreadable JSON, and JSON that no client could have sent (nested
    deeper than MAX_JSON_DEPTH, NaN or Infinity, lone surrogates), is a StoredStateError naming
    the key."""
    try:
        untrusted.screen(data, f"stored state {key!r}")
    except InvalidPayload as exc:
        raise StoredStateError(exc.message) from None
    try:
        return state_cls.model_validate_json(data)
    except ValidationError:
        pass
    except (ValueError, RecursionError):
        raise StoredStateError(f"stored state {key!r} is not valid JSON") from None
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError):
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
                raise StoredStateError(f"stored state {key!r} cannot be loaded") from None
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


def load_into(inst: BaseModel, stored: Stored) -> None:
    """Replace ``inst``'s fields and version with a stored state's, in place (holders of the
    instance see the change)."""
    meta = meta_of(inst)
    fresh = from_stored(type(inst), meta.key or "", stored.data)
    inst.__dict__.update({k: fresh.__dict__[k] for k in type(inst).model_fields})
    meta.version = stored.version


def apply_stored(inst: BaseModel, stored: Stored | None) -> bool:
    """Bring a cached instance up to a newer stored version (in place). Skipped while a change
    runs on it: its commit will notice the newer version."""
    meta = meta_of(inst)
    if stored is None or stored.version <= meta.version or meta.locked():
        return False
    load_into(inst, stored)
    return True


def stored_copy(inst: BaseModel, key: str, stored: Stored) -> Any:
    """A detached instance of ``stored`` (to read from) beside the cached ``inst``."""
    copy = from_stored(type(inst), key, stored.data)
    meta, copy_meta = meta_of(inst), meta_of(copy)
    copy_meta.key, copy_meta.ident, copy_meta.version = key, meta.ident, stored.version
    return copy


__all__ = ["apply_stored", "from_stored", "load_into", "stored_copy"]
