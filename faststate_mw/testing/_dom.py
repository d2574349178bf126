"""A very small DOM model: the page's HTML, where elements with an id can be read and
replaced (what Datastar's morph does to them, seen from a test)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

from ._sse import ElementPatch, merge_patch

_VOID = frozenset(
    "area base br col embed hr img input link meta source track wbr".split()  # noqa: SIM905
)


class _Finder(HTMLParser):
    """Finds the span of the element with a given id, and reads ``data-signals``."""

    def __init__(self, html: str, target: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.target = target
        self._lines = [0]
        for i, ch in enumerate(html):
            if ch == "\n":
                self._lines.append(i + 1)
        self.start: int | None = None
        self.end: int | None = None
        self._depth = 0
        self.signals: dict[str, Any] = {}

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._lines[line - 1] + col

    def _tag_end(self, at: int) -> int:
        return self.html.index(">", at) + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._read_signals(attrs)
        if self.end is not None:
            return
        if self.start is None:
            if self.target is not None and ("id", self.target) in attrs:
                self.start = self._offset()
                if tag in _VOID:
                    self.end = self._tag_end(self.start)
                else:
                    self._depth = 1
        elif tag not in _VOID:
            self._depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._read_signals(attrs)
        if self.start is None and self.target is not None and ("id", self.target) in attrs:
            self.start = self._offset()
            self.end = self._tag_end(self.start)

    def handle_endtag(self, tag: str) -> None:
        if self.start is not None and self.end is None and tag not in _VOID:
            self._depth -= 1
            if self._depth == 0:
                self.end = self._tag_end(self._offset())

    def _read_signals(self, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "data-signals" or name.startswith("data-signals__"):
                try:
                    parsed = json.loads(value or "")
                except ValueError:
                    continue  # a JavaScript expression: not evaluated here
                if isinstance(parsed, dict):
                    merge_patch(self.signals, parsed)


def _span(html: str, element_id: str) -> tuple[int, int] | None:
    finder = _Finder(html, element_id)
    finder.feed(html)
    finder.close()
    if finder.start is None:
        return None
    return finder.start, finder.end if finder.end is not None else len(html)


def _ids(fragment: str) -> list[tuple[str, str]]:
    """The top-level elements of ``fragment`` that have an id: (id, outer HTML)."""
    out: list[tuple[str, str]] = []

    class Top(HTMLParser):
        depth = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if self.depth == 0:
                ident = dict(attrs).get("id")
                if ident:
                    out.append((ident, ""))
            if tag not in _VOID:
                self.depth += 1

        def handle_endtag(self, tag: str) -> None:
            if tag not in _VOID:
                self.depth -= 1

    Top().feed(fragment)
    result = []
    for ident, _ in out:
        span = _span(fragment, ident)
        if span is not None:
            result.append((ident, fragment[span[0] : span[1]]))
    return result


class Page:
    """The HTML of a page, kept up to date by element patches."""

    def __init__(self, html: str) -> None:
        self.html = html

    def element(self, element_id: str) -> str | None:
        """The outer HTML of the element with this id, or None."""
        span = _span(self.html, element_id)
        return None if span is None else self.html[span[0] : span[1]]

    def signals(self) -> dict[str, Any]:
        """The signals the page declares with ``data-signals`` (JSON objects only)."""
        finder = _Finder(self.html, None)
        finder.feed(self.html)
        finder.close()
        return finder.signals

    def apply(self, patch: ElementPatch) -> None:
        """Apply a ``datastar-patch-elements`` event (by id, or by a ``#id`` selector)."""
        if patch.selector is not None:
            if not patch.selector.startswith("#"):
                return  # only id selectors in this model
            self._at(patch.selector[1:], patch.elements, patch.mode)
            return
        for ident, outer in _ids(patch.elements):
            self._at(ident, outer, patch.mode)

    def _at(self, element_id: str, html: str, mode: str) -> None:
        span = _span(self.html, element_id)
        if span is None:
            return
        start, end = span
        old = self.html[start:end]
        if mode in ("outer", "replace"):
            new = html
        elif mode == "remove":
            new = ""
        else:
            open_end = old.index(">") + 1
            close = old.rfind("</")
            close = close if close >= open_end else len(old)
            inner = old[open_end:close]
            if mode == "inner":
                inner = html
            elif mode in ("append",):
                inner = inner + html
            elif mode in ("prepend",):
                inner = html + inner
            elif mode == "before":
                self.html = self.html[:start] + html + self.html[start:]
                return
            elif mode == "after":
                self.html = self.html[:end] + html + self.html[end:]
                return
            new = old[:open_end] + inner + old[close:]
        self.html = self.html[:start] + new + self.html[end:]


__all__ = ["Page"]
