"""The public API is explicit: __all__ is exactly the package's public names."""

from __future__ import annotations

import types

import faststate_mw


def test_all_equals_the_public_names() -> None:
    public = {
        name
        for name, value in vars(faststate_mw).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in {"annotations", "Any", "TypeVar"}
    }
    assert public == set(faststate_mw.__all__)
    assert len(faststate_mw.__all__) == len(set(faststate_mw.__all__))


def test_public_callables_have_docstrings() -> None:
    missing = [
        name
        for name in faststate_mw.__all__
        if callable(getattr(faststate_mw, name)) and not getattr(faststate_mw, name).__doc__
    ]
    assert missing == []


def test_documented_names_are_exported() -> None:
    for name in ("BackendUnavailable", "StoredStateError", "Backend", "StateStore"):
        assert name in faststate_mw.__all__
    # the seeds' helper stays importable, but is not part of the API reference
    assert callable(faststate_mw._get_state)
    assert "_get_state" not in faststate_mw.__all__
