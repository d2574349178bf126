"""JSON from outside the process (request signals, URL arguments, stored state), read safely.

Python's ``json`` accepts what browsers never send and what cannot be sent back: ``NaN`` and
``Infinity`` (and ``1e999``, which reads as infinity), lone UTF-16 surrogates (``"\\ud800"``,
which no UTF-8 encoder can write out again), and nesting deep enough to raise ``RecursionError``.
:func:`loads` refuses all of them with :class:`~faststate_mw.InvalidPayload` (400), so a value
that got in can always be stored, compared and sent back.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NoReturn, cast

from ._exceptions import InvalidPayload

#: the deepest nesting of arrays and objects accepted in a client's JSON (and in stored state)
MAX_JSON_DEPTH = 64
#: the largest whole number a client may send (JavaScript's ``Number.MAX_SAFE_INTEGER``): beyond
#: it the page would show it rounded, and sums of such numbers soon pass the 4,300 digits
#: Python can write as text (every later change of the state would fail)
MAX_SAFE_INTEGER = 2**53 - 1

# A JSON escape that may decode to a surrogate (\uD800-\uDFFF); checked only when present.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


#: one strict decoder for every call (``json.loads`` with hooks would build one per call)
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


#: the decoder's own scanner, and the whitespace JSON allows around a document (the pattern
#: matches everywhere, if only an empty run)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_SPACE = cast(Callable[[str, int], "re.Match[str]"], re.compile(r"[ \t\n\r]*").match)


def _decode(raw: str | bytes) -> Any:
    """``json.loads(raw, ...)`` with the strict hooks, without building a decoder per call and
    without the Python frames of ``JSONDecoder.decode`` and ``raw_decode``."""
    if isinstance(raw, str):
        if raw.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", raw, 0)
        text = raw
        start = _SPACE(text, 0).end()
    elif raw[:1] == b"{" and raw[1:2] != b"\x00":  # an object in UTF-8 (what browsers send)
        text = raw.decode("utf-8", "surrogatepass")
        start = 0
    else:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        start = _SPACE(text, 0).end()
    try:
        obj, end = _SCAN(text, start)
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    if end != len(text):
        end = _SPACE(text, end).end()
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    return obj


def loads(raw: str | bytes, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse ``raw`` as strict JSON; anything else is an InvalidPayload naming ``what``."""
    # bytes decoded with surrogatepass (as json.loads does) may hold an encoded lone surrogate
    # that no escape announces: their text is checked too
    decoded_loosely = False
    try:
        if type(raw) is bytes:
            try:  # valid UTF-8 with the value at its first byte (what browsers send), at once
                text = raw.decode()
                data, end = _SCAN(text, 0)
                if end != len(text):
                    data = _decode(raw)
            except (ValueError, StopIteration, RecursionError):
                # any other encoding, leading space, encoded surrogates and every error: as
                # _decode reads them (UTF-16 and UTF-32 never read as one UTF-8 value)
                decoded_loosely = True
                data = _decode(raw)
            raw_bytes = raw
        else:
            data = _decode(raw)
            raw_bytes = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    except RecursionError:
        raise InvalidPayload(f"{what} nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
        if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
            raise InvalidPayload(f"malformed JSON in {what}") from None
        raise InvalidPayload(
            f"{what} holds a number JSON cannot carry (NaN, Infinity or too large)"
        ) from None
    if (
        len(raw_bytes) > max_depth  # no more brackets than bytes: a short text is shallow
        and raw_bytes.count(b"[") + raw_bytes.count(b"{") > max_depth
        and depth(data) > max_depth
    ):
        raise InvalidPayload(f"{what} nested deeper than {max_depth} levels")
    # the escape's backslash and "u" found first: a search for them is cheaper than the regex
    # (find(), not ``in``: bytes.__contains__ first tries its argument as an int and formats a
    # TypeError to throw away)
    if (
        decoded_loosely
        or (raw_bytes.find(b"\\u") >= 0 and _SURROGATE_ESCAPE.search(raw_bytes))
        or (raw_bytes is not raw and isinstance(raw, str) and has_surrogate(raw))
    ):
        check_text(data, what)
    return data


# Text that may hold what loads() refuses: the full parse runs only when this matches.
_SUSPECT = re.compile(rb"NaN|Infinity|[eE][+-]?\d{3}|\\u[dD][89a-fA-F]")


def screen(raw: str | bytes, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise InvalidPayload when ``raw`` holds what :func:`loads` refuses; cheap (two byte
    counts and one regex scan) for ordinary documents, a full strict parse otherwise."""
    raw_bytes = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    deep = raw_bytes.count(b"[") + raw_bytes.count(b"{") > max_depth
    if deep or _SUSPECT.search(raw_bytes) or (isinstance(raw, str) and has_surrogate(raw)):
        loads(raw, what, max_depth=max_depth)


def depth(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, (list, tuple)):
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in item if isinstance(child, (dict, list, tuple)))
    return deepest


def has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(value: Any, what: str) -> None:
    """Refuse strings (keys too) that hold a lone surrogate: they cannot be written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPayload(f"{what} holds a lone surrogate (invalid unicode)") from None


def check_finite(value: Any, what: str) -> None:
    """Refuse NaN, infinities and whole numbers beyond ``MAX_SAFE_INTEGER`` anywhere in a
    validated value (floats, Decimals, ints, containers, pydantic models and their extra
    fields, dataclasses). Every value is looked at: the walk is as long as the request that
    carried it (a walk that stopped after a number of values let a huge number behind as many
    zeros into the state)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                break
        elif isinstance(item, int):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise InvalidPayload(
                    f"{what} holds a whole number beyond \u00b1{MAX_SAFE_INTEGER} "
                    "(a browser cannot hold it exactly)"
                )
        elif isinstance(item, Decimal):
            if not item.is_finite():
                break
        elif isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(k for k in item if type(k) is not str)  # dict[int, ...]: numbers too
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
        elif hasattr(item, "__pydantic_fields__") and hasattr(item, "__dict__"):
            stack.extend(item.__dict__.values())
            extra = getattr(item, "__pydantic_extra__", None)  # extra="allow": not in __dict__
            if extra:
                stack.extend(extra.values())
        elif hasattr(item, "__dataclass_fields__") and not isinstance(item, type):
            stack.extend(getattr(item, name, None) for name in item.__dataclass_fields__)
    else:
        return
    raise InvalidPayload(f"{what} holds a number JSON cannot carry (NaN or Infinity)")


__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_SAFE_INTEGER",
    "check_finite",
    "check_text",
    "depth",
    "loads",
    "screen",
]
