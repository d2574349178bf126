"""The shared list page's state: a RECORD per list id, live in every tab through views.

Every tab on ``/list/{id}`` shows the same list; ``items_view`` is re-rendered once per change
and morphed into each of them. ``you_view`` depends on who is looking, so it is rendered per
user. Nothing here writes a patch by hand.
"""

from __future__ import annotations

from typing import Annotated, Any

from fasthtml.common import Button, Li, P, Span, Ul
from pydantic import Field

from faststate_mw import (
    ArgumentError,
    RecordNotFound,
    State,
    StateConfig,
    StateScope,
    current_user,
    event,
    on,
    view,
)

#: the lists that exist (a client cannot create more by visiting new ids)
LIST_IDS = frozenset(str(n) for n in range(1, 11))
#: how many items one list holds
MAX_ITEMS = 100


def load_list(record_id: str) -> dict[str, Any]:
    if record_id not in LIST_IDS:
        raise RecordNotFound(f"no list {record_id!r}")
    return {}


class TodoList(State):
    """A shared list: everyone on ``/list/{id}`` sees and edits the same items."""

    __faststate__ = StateConfig(scope=StateScope.RECORD, load=load_list, auto_persist=True)
    items: list[str] = []
    draft: str = ""

    @event
    def add(self, text: Annotated[str, Field(min_length=1, max_length=200)]) -> None:
        if len(self.items) >= MAX_ITEMS:
            raise ArgumentError(f"a list holds at most {MAX_ITEMS} items")
        self.items.append(text.strip() or text)
        self.draft = ""  # clears the sender's input, even when the server's draft was empty

    @event
    def remove(self, index: int) -> None:
        if not 0 <= index < len(self.items):
            raise ArgumentError("no such item")
        del self.items[index]

    @event
    def move_up(self, index: int) -> None:
        if not 0 < index < len(self.items):
            raise ArgumentError("no such item")
        items = self.items
        items[index - 1], items[index] = items[index], items[index - 1]

    @view(fields=["items"])
    def items_view(self) -> Any:
        return Ul(
            *[
                Li(
                    Span(item, cls="item"),
                    Button("↑", on("click", self.actions.move_up(i)), cls="up"),
                    Button("✕", on("click", self.actions.remove(i)), cls="remove"),
                )
                for i, item in enumerate(self.items)
            ],
            id="items",
        )

    @view(per_viewer=True, fields=["items"])
    def you_view(self) -> Any:
        user = current_user()
        who = user.username or user.id if user is not None else "anonymous"
        count = len(self.items)
        items = "1 item" if count == 1 else f"{count} items"
        return P(f"You are {who}; this list has {items}.", cls="you")
