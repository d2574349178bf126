"""docs/api.md documents every public name and is what docs/gen_api.py generates today."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import faststate_mw

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sections(text: str) -> dict[str, str]:
    """The text under each ``### `name` `` heading, up to the next heading of that level."""
    parts = re.split(r"^### `([^`]+)`\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_api_md_is_up_to_date() -> None:
    assert API_MD.read_text() == load_generator().render(), "docs/api.md is stale: run `make docs`"


def test_every_public_name_has_an_entry_with_a_description() -> None:
    entries = sections(API_MD.read_text())
    assert set(entries) == set(faststate_mw.__all__)
    for name, body in entries.items():
        prose = [
            line
            for line in body.split("####")[0].splitlines()
            if line.strip() and not line.startswith(("*", "```", "    ", name, "- `"))
        ]
        assert prose, f"{name}: no description in docs/api.md"


def test_an_undocumented_public_name_stops_the_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = load_generator()

    def undocumented() -> None:
        pass

    monkeypatch.setattr(faststate_mw, "undocumented", undocumented, raising=False)
    monkeypatch.setattr(faststate_mw, "__all__", [*faststate_mw.__all__, "undocumented"])
    with pytest.raises(ValueError, match="undocumented has no docstring"):
        gen.render()

    monkeypatch.setattr(faststate_mw, "UNCOMMENTED", 3, raising=False)
    monkeypatch.setattr(faststate_mw, "__all__", [*faststate_mw.__all__[:-1], "UNCOMMENTED"])
    with pytest.raises(ValueError, match="UNCOMMENTED has no `#:` comment"):
        gen.render()


def test_check_mode_exits_zero_when_current() -> None:
    done = subprocess.run(
        [sys.executable, "docs/gen_api.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
