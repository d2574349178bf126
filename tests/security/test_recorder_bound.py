"""The recorder behind the devtools page keeps bounded bytes (found by the hsec audit): it kept
every changed value whole, 200 changes for each of 1,000 keys. Over real uvicorn, example_app
(devtools on) grew 38 MB for each anonymous session that set its message 250 times to 200 kB
strings: up to 40 GB for 1,000 sessions. A large change is now kept as a preview, and all
histories together hold at most ``Recorder.max_bytes``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from faststate_mw import FastStateMiddleware, Recorder, State, StateStore, client_writable
from faststate_mw._recorder import MAX_CHANGE_BYTES, PREVIEW_CHARS
from tests.conftest import API


class RecordedNote(State):
    text: Annotated[str, client_writable] = ""
    n: int = 0


@pytest.fixture
def recorded() -> Iterator[tuple[TestClient, StateStore]]:
    store = StateStore(record=200)
    app = Starlette()
    app.add_middleware(FastStateMiddleware, secret_key="recorder-bound", store=store)
    with TestClient(app) as client:
        yield client, store


def test_large_values_are_recorded_as_previews(
    recorded: tuple[TestClient, StateStore],
) -> None:
    client, store = recorded
    recorder = store.recorder
    assert recorder is not None
    for i in range(3):  # three anonymous sessions
        client.cookies.clear()
        for j in range(20):
            value = f"{i}.{j}-" + "x" * 100_000
            r = client.post("/_faststate/RecordedNote/set_text", headers=API, json={"value": value})
            assert r.status_code == 200, r.text
    # 60 changes of 100 kB each were 6 MB whole
    assert recorder.bytes <= 60 * (PREVIEW_CHARS + 64)
    key = recorder.changed_keys(1)[0]
    last = recorder.history(key)[-1].changed["text"]
    assert last.startswith('"2.19-xxx') and last.endswith("…")
    assert len(last) == PREVIEW_CHARS + 1
    # small changes are kept whole, with their values
    r = client.post("/_faststate/RecordedNote/set_text", headers=API, json={"value": "short"})
    assert r.status_code == 200
    assert recorder.history(key)[-1].changed == {"text": "short"}


def test_all_histories_together_hold_at_most_max_bytes() -> None:
    recorder = Recorder(size=200, keys=1000, max_bytes=50_000)
    value = "y" * (MAX_CHANGE_BYTES - 100)  # under the preview cut: kept whole
    size = len(json.dumps({"v": value}))
    for k in range(100):
        for _ in range(5):
            recorder.change(f"global:K{k}", 1, {"v": value}, size)
    assert recorder.bytes <= 50_000
    kept = sum(len(recorder.history(f"global:K{k}")) for k in range(100))
    assert kept == recorder.bytes // size
    assert recorder.history("global:K99")  # the latest keys are the ones kept
    assert not recorder.history("global:K0")
