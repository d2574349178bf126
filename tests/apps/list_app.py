"""example_app's shared list (``TodoList`` and its views) on a configurable backend, for the
browser tests of live views across a restart (SQLite) and across workers (Redis). Settings
(environment): FS_BACKEND (backend URL), FS_SECRET, FASTSTATE_DATASTAR_JS."""

from __future__ import annotations

import os
from typing import Any

from fasthtml.common import Button, Input, Main, NotStr, fast_app

from example_app.lists import TodoList
from faststate_mw import FastStateMiddleware, StateStore, bind, datastar_script, expr, on

store = StateStore(os.environ["FS_BACKEND"], heartbeat=1.0)
app, rt = fast_app(default_hdrs=False, pico=False, htmx=False, surreal=False)
app.add_middleware(
    FastStateMiddleware,
    secret_key=os.environ.get("FS_SECRET", "list-secret"),
    store=store,
    datastar_js=os.environ.get("FASTSTATE_DATASTAR_JS") or None,
)


@rt("/list/{record_id}")
def list_page(todo: TodoList) -> Any:
    return Main(
        NotStr(datastar_script()),
        todo,
        todo.items_view(),
        Input(bind(todo, "draft"), id="draft"),
        Button("Add", on("click", todo.actions.add(text=expr(todo.ref("draft")))), id="add"),
    )
