"""The State classes the security suite attacks: example_app's, README's and a few of its own.

example_app is imported with its product table in a temporary SQLite file (EXAMPLE_DB), so the
suite never touches example_app/example.db. README's snippets are run once, in a namespace of
their own, and the classes they define are kept (their public names are given back).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

from faststate_mw import State, StateConfig, StateScope, Writable, event
from faststate_mw.testing import isolated_state_names

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"


def _example_app() -> Any:
    if "example_app.main" not in sys.modules:
        os.environ.setdefault(
            "EXAMPLE_DB", str(Path(tempfile.mkdtemp(prefix="fs-security-")) / "example.db")
        )
    with isolated_state_names():
        import example_app.main as main
    return main


EXAMPLE = _example_app()
EXAMPLE_STATES: list[type[State]] = [
    EXAMPLE.Counter,
    EXAMPLE.Visitors,
    EXAMPLE.Profile,
    EXAMPLE.Settings,
    EXAMPLE.Widget,
    EXAMPLE.ProductState,
    EXAMPLE.Wizard,
]


def _readme_states() -> list[type[State]]:
    found: dict[str, type[State]] = {}
    snippets = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    with isolated_state_names():
        for index, snippet in enumerate(snippets):
            namespace: dict[str, Any] = {"__name__": "readme"}
            code = compile(snippet, f"README.md snippet {index}", "exec", dont_inherit=True)
            exec(code, namespace)
            for value in namespace.values():
                if isinstance(value, type) and issubclass(value, State) and value is not State:
                    found[f"{value.__qualname__}@{index}"] = value
    return list(found.values())


README_STATES = _readme_states()


# -- the suite's own: every shape of signal a client can send --------------------------------
class FlatVault(State):
    """Flat signals (``$balance``): the seeds' style."""

    __faststate__ = StateConfig(flat_signals=True, writable=("note",))
    balance: int = 100
    owner_id: str = ""
    note: str = ""
    last: int = 0

    @event
    def take(self, balance: int = 0) -> None:
        self.last = balance

    @event
    def claim(self, owner_id: str = "") -> None:
        if owner_id:
            self.owner_id = owner_id


class NamedVault(State):
    """Namespaced signals (``$namedVault.balance``), GLOBAL."""

    __faststate__ = StateConfig(scope=StateScope.GLOBAL)
    balance: int = 100
    frozen: bool = False
    tags: list[str] = []

    @event
    def set_balance_to(self, balance: int = 0) -> None:
        self.balance = balance or self.balance

    @event
    def freeze(self, frozen: bool = False) -> None:
        self.frozen = frozen

    @event
    def tag(self, tags: list[str] | None = None) -> None:
        self.tags = tags or self.tags


class Ledger(State):
    """A field with rules of its own; a field only its owner may set."""

    __faststate__ = StateConfig(scope=StateScope.RECORD)
    owner_id: str = ""
    memo: Annotated[str, Writable(permissions=["ledger.edit"])] = ""
    motto: Annotated[str, Writable(owner_only=True)] = ""
    total: int = 0


OWN_STATES: list[type[State]] = [FlatVault, NamedVault, Ledger]
