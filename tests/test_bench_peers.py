"""The peers benchmark's report: the room each server leaves an app to match stario."""

from __future__ import annotations

import pytest

from bench.peers import _room


def test_the_room_each_server_leaves_is_the_raw_callables_share_of_starios_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    shares = _room({"raw": 20_000.0, "stario": 18_000.0, "raw+granian": 12_000.0})
    assert shares == {"uvicorn": 0.9, "granian": 1.5}
    out = capsys.readouterr().out
    assert "room under uvicorn: the raw callable takes 0.90 of stario's time" in out
    assert "leaves an app 11% over the bare callable" in out
    assert "room under granian: the raw callable takes 1.50" in out
    assert "nothing: the bare callable alone is slower" in out


def test_no_room_is_told_without_stario(capsys: pytest.CaptureFixture[str]) -> None:
    assert _room({"raw": 20_000.0, "raw+granian": 12_000.0}) == {}
    assert capsys.readouterr().out == ""
