"""Strict JSON (_untrusted.py): ``loads`` reads what ``json.loads`` with its strict hooks reads,
then refuses the same documents (too deep, lone surrogates) with the same messages, for any
text or bytes, whatever the fast paths it takes."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from faststate_mw import _untrusted as untrusted
from faststate_mw._exceptions import InvalidPayload

DEPTH = 4  # a small max_depth, so that generated documents cross it


def _refuse(name: str) -> Any:
    raise ValueError(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _reference(raw: str | bytes, what: str) -> Any:
    """loads() written plainly: json.loads, then the depth and surrogate checks."""
    try:
        data = json.loads(raw, parse_constant=_refuse, parse_float=_finite)
    except RecursionError:
        raise InvalidPayload(f"{what} nested deeper than {DEPTH} levels") from None
    except ValueError as exc:
        if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
            raise InvalidPayload(f"malformed JSON in {what}") from None
        raise InvalidPayload(
            f"{what} holds a number JSON cannot carry (NaN, Infinity or too large)"
        ) from None
    raw_bytes = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if untrusted.depth(data) > DEPTH:
        raise InvalidPayload(f"{what} nested deeper than {DEPTH} levels")
    if (
        isinstance(raw, bytes)  # decoded with surrogatepass: a lone surrogate may be in it
        or untrusted._SURROGATE_ESCAPE.search(raw_bytes)
        or (isinstance(raw, str) and untrusted.has_surrogate(raw))
    ):
        untrusted.check_text(data, what)
    return data


def _outcome(read: Any, raw: str | bytes) -> tuple[str, Any]:
    try:
        return "ok", read(raw, "x")
    except InvalidPayload as err:
        return "refused", err.message


_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_VALUES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=12,
)
_PIECES = st.sampled_from(
    [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        '"',
        "\\u",
        "d800",
        "\ud800",  # a lone surrogate itself (bytes: as UTF-8 with surrogatepass)
        "\\ud83d\\ude00",
        "NaN",
        "1e999",
        " ",
        "\n",
        "\ufeff",
        "\x00",
        "é",
        "1",
        '"a"',
    ]
)


@st.composite
def _documents(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["json", "pieces", "nested"]))
    if kind == "json":
        text = json.dumps(draw(_VALUES), ensure_ascii=draw(st.booleans()))
    elif kind == "pieces":
        text = "".join(draw(st.lists(_PIECES, max_size=20)))
    else:
        n = draw(st.integers(0, 2 * DEPTH))
        text = "[" * n + draw(st.sampled_from(["", "1", "{}"])) + "]" * n
    text = draw(st.sampled_from(["", " ", "\t\n"])) + text + draw(st.sampled_from(["", " "]))
    encoding = draw(st.sampled_from(["str", "utf-8", "utf-16", "utf-32-le"]))
    if encoding == "str":
        return text
    return text.encode(encoding, "surrogatepass")


@given(_documents() | st.binary(max_size=30) | st.text(max_size=30))
@settings(max_examples=1000, deadline=None)
def test_loads_reads_and_refuses_as_json_loads_with_the_checks(raw: str | bytes) -> None:
    def read(value: str | bytes, what: str) -> Any:
        return untrusted.loads(value, what, max_depth=DEPTH)

    assert repr(_outcome(read, raw)) == repr(_outcome(_reference, raw))
