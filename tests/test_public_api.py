"""The public API is explicit: __all__ lists every public name and each one exists."""

from __future__ import annotations

import faststate_mw


def test_all_is_complete_and_importable() -> None:
    public = {
        name
        for name, value in vars(faststate_mw).items()
        if not name.startswith("_")
        and not isinstance(value, type(faststate_mw))  # submodules
        and name not in {"annotations", "Any", "TypeVar", "S"}
    }
    assert public <= set(faststate_mw.__all__), public - set(faststate_mw.__all__)
    for name in faststate_mw.__all__:
        assert hasattr(faststate_mw, name), name


def test_public_callables_have_docstrings() -> None:
    missing = [
        name
        for name in faststate_mw.__all__
        if callable(getattr(faststate_mw, name)) and not getattr(faststate_mw, name).__doc__
    ]
    assert missing == []
