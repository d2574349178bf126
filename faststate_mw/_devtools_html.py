"""The devtools page's HTML, rendered from one app's store: live states, open streams, recent
events, per-key history and a chart of events per second. Every table is bounded, and nothing
private is shown: session ids in keys are ``…``, private and excluded fields are never read,
and values of fields whose name suggests a secret are masked."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from pydantic import SecretBytes, SecretStr

from ._config import meta_of
from ._recorder import public_key
from ._store import StateStore

#: field names whose values are masked wherever they appear (also inside dicts)
SECRET_NAME = re.compile(r"pass|secret|token|api_?key|credential|cookie|session|sid$", re.I)
MASK = "•••"
#: rows per table (and keys per scope): the page costs the same with 10 or 100,000 states
MAX_ROWS = 30
#: characters of a value shown
MAX_VALUE = 160

STYLE = """
body{font:14px system-ui,sans-serif;margin:1rem;color:#1d2430;background:#f7f8fa}
h1{font-size:1.3rem}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:.4rem}
th,td{border:1px solid #dde1e7;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#eef1f5}code{font-size:12px;word-break:break-all}
.ok{color:#1a7f37}.bad{color:#c62828}.more{color:#667}
svg{background:#fff;border:1px solid #dde1e7}
"""


def masked(value: Any) -> Any:
    """``value`` with the values of secret-named keys (at any depth) replaced by ``•••``."""
    if isinstance(value, (SecretStr, SecretBytes)):
        return MASK
    if isinstance(value, dict):
        return {k: MASK if SECRET_NAME.search(str(k)) else masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v) for v in value]
    return value


def shown(value: Any) -> str:
    """A value as escaped, masked, truncated JSON."""
    text = json.dumps(masked(value), default=str, ensure_ascii=False)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    return f"<code>{escape(text)}</code>"


def table(head: Sequence[str], rows: Iterable[Sequence[str]], total: int, tid: str) -> str:
    """An HTML table of already-escaped cells; ``total`` rows exist (a note says how many
    were left out)."""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    heads = "".join(f"<th>{escape(h)}</th>" for h in head)
    shown_rows = body.count("<tr>")
    more = f'<p class="more">and {total - shown_rows} more</p>' if total > shown_rows else ""
    return f'<table id="{tid}"><tr>{heads}</tr>{body}</table>{more}'


def states_section(store: StateStore, skip: str) -> str:
    """Live states by scope: each key (masked) and its public fields' current values."""
    by_scope: dict[str, list[str]] = {}
    for key in store.keys():  # noqa: SIM118 - a store, not a dict
        if key != skip:
            by_scope.setdefault(key.split(":", 1)[0], []).append(key)
    if not by_scope:
        return "<h2>States</h2><p>No live states.</p>"
    out = ["<h2>States</h2>"]
    for scope in sorted(by_scope):
        keys = by_scope[scope]
        rows = []
        for key in keys[:MAX_ROWS]:
            inst = store.get(key)
            if inst is None:
                continue
            data = inst.public_data()
            version = meta_of(inst).version
            rows.append(
                (
                    f"<code>{escape(public_key(key))}</code>",
                    escape(str(version)),
                    shown(data),
                )
            )
        out.append(f"<h3>{escape(scope)} ({len(keys)})</h3>")
        out.append(table(("key", "version", "values"), rows, len(keys), f"states-{scope}"))
    return "".join(out)


def streams_section(hub: Any, now: float) -> str:
    """Open streams: their user, what they are subscribed to, and the views they show."""
    conns = [c for c in list(hub.tabs.values()) if not c.closed]
    rows = []
    for conn in conns[:MAX_ROWS]:
        keys = ", ".join(
            f"{public_key(k)}@{v}" for k, v in zip(conn.keys[:8], conn.versions[:8], strict=False)
        )
        if len(conn.keys) > 8:
            keys += f" (+{len(conn.keys) - 8})"
        views = ", ".join(sorted({w.spec.name for w in conn.views[:8]}))
        rows.append(
            (
                str(conn.id),
                escape(conn.user.id if conn.user is not None else "anonymous"),
                f"<code>{escape(keys)}</code>",
                escape(views),
                f"{max(0.0, now - conn.last_write):.0f}s",
            )
        )
    head = ("#", "user", "subscribed to (key@version)", "views", "last write")
    return f"<h2>Open streams ({len(conns)})</h2>" + table(head, rows, len(conns), "streams")


def events_section(recorder: Any, n: int, skip: str) -> str:
    """The last ``n`` events, newest first: duration, outcome and the changes each made."""
    events = recorder.recent(n)
    rows = []
    for rec in reversed(events[-MAX_ROWS:]):
        diff = "<br>".join(
            f"<code>{escape(key)}</code> v{version} {shown(changed)}"
            for key, version, changed in rec.changes
            if key != skip
        )
        rows.append(
            (
                time.strftime("%H:%M:%S", time.localtime(rec.at)),
                escape(f"{rec.state}.{rec.event}"),
                f"<code>{escape(rec.key)}</code>",
                escape(rec.user_id or "anonymous"),
                f'<span class="{"ok" if rec.outcome == "ok" else "bad"}">'
                f"{escape(rec.outcome)} {rec.status}</span>",
                f"{rec.seconds * 1000:.2f} ms",
                diff or "—",
            )
        )
    head = ("at", "event", "key", "user", "outcome", "duration", "changes")
    return f"<h2>Last events ({len(events)})</h2>" + table(head, rows, len(events), "events")


def history_section(recorder: Any, skip: str, keys: int = 6, per_key: int = 8) -> str:
    """The latest changes of the keys changed last: version, who, what changed."""
    out = ["<h2>History of the keys changed last</h2>"]
    names = [k for k in recorder.changed_keys(keys + 1) if k != skip][:keys]
    if not names:
        out.append("<p>No changes yet.</p>")
    for key in names:
        changes = recorder.history(key)
        rows = [
            (
                escape(str(rec.version)),
                time.strftime("%H:%M:%S", time.localtime(rec.at)),
                escape(rec.user_id or "—"),
                shown(rec.changed),
            )
            for rec in reversed(changes[-per_key:])
        ]
        out.append(f"<h3><code>{escape(public_key(key))}</code></h3>")
        head = ("version", "at", "who", "changed")
        out.append(table(head, rows, len(changes), "history"))
    return "".join(out)


def rate_chart(counts: Sequence[int], width: int = 600, height: int = 90) -> str:
    """An inline SVG bar chart of events per second (oldest left), its peak labelled."""
    slots = max(len(counts), 1)
    peak = max(counts, default=0)
    scale = (height - 16) / peak if peak else 0.0
    bar = width / max(slots, 60)
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - c * scale:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{c * scale:.1f}" fill="#3b6fd8"></rect>'
        for i, c in enumerate(counts)
        if c
    )
    now = counts[-1] if counts else 0
    label = f"last {slots} s: peak {peak}/s, now {now}/s"
    return (
        f"<h2>Events per second</h2>"
        f'<svg id="rate-chart" role="img" aria-label="events per second: {label}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{bars}'
        f'<text x="4" y="12" font-size="11" fill="#444">{label}</text></svg>'
    )


__all__ = [
    "MAX_ROWS",
    "STYLE",
    "events_section",
    "history_section",
    "masked",
    "rate_chart",
    "states_section",
    "streams_section",
]
