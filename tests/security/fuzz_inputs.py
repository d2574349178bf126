"""What the fuzz tests send: example_app (imported with a SQLite file of its own), its states and
events, and hypothesis strategies for methods, paths, headers, query strings and bodies, both
random and adversarial (NaN, deep nesting, lone surrogates, path tricks, CSRF variants)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from faststate_mw._config import info_of
from faststate_mw.testing import isolated_state_names

# example_app reads its SQLite path when imported: never the repository's example.db
_DB_DIR = tempfile.mkdtemp(prefix="faststate-fuzz-")
os.environ.setdefault("EXAMPLE_DB", str(Path(_DB_DIR) / "example.db"))
# example_app's State names (Counter, Settings, ...) are common: they own them only while a fuzz
# test runs, so other test modules' classes of the same names are not displaced.
with isolated_state_names():
    import example_app.main as example

PREFIX = "/_faststate"
STATES = [
    example.Counter,
    example.Visitors,
    example.Profile,
    example.Settings,
    example.Widget,
    example.ProductState,
    example.Wizard,
]
EVENT_PATHS = sorted(
    f"{PREFIX}/{info_of(cls).name}/{name}" for cls in STATES for name in info_of(cls).events
)
NAMESPACES = sorted({info_of(cls).namespace or "" for cls in STATES} - {""})
FIELDS = sorted({f for cls in STATES for f in info_of(cls).fields})
PAGES = ["/", "/profile", "/widgets", "/product/1", "/product/2", "/wizard", "/admin", "/login"]

# -- strategies -------------------------------------------------------------------------------
ADVERSARIAL_TEXT = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "nan",
    "inf",
    "9" * 5000,
    "[" * 300 + "]" * 300,
    '{"a":' * 200 + "1" + "}" * 200,
    "[NaN]",
    '"\\ud800"',
    "\\ud800",
    "../../etc/passwd",
    "%2e%2e%2f",
    "<script>alert(1)</script>",
    "'; DROP TABLE product; --",
    "${7*7}",
    "@post('/x')",
    "\x00",
    "\u2028",
    "",
    " ",
    "-1",
    "0",
    "1",
    "2",
    "999999999999999999999999",
    "true",
    "null",
    "[]",
    "{}",
]
text = st.one_of(st.sampled_from(ADVERSARIAL_TEXT), st.text(max_size=20))
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), inner, max_size=4),
    ),
    max_leaves=12,
)
signals_body = st.dictionaries(
    st.one_of(st.sampled_from(NAMESPACES + FIELDS + ["faststate", "_faststate"]), text),
    st.one_of(
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), text), json_value, max_size=4),
        json_value,
    ),
    max_size=3,
).map(lambda d: json.dumps(d).encode())
RAW_BODIES = [
    b"{" * 3000,
    b"[" * 1000 + b"]" * 1000,
    b'{"counter":{"count":NaN}}',
    b'{"counter":{"message":"\\ud800"}}',
    b'{"counter":{"count":1e999}}',
    b'{"wizard":{"name":' + b'"' + b"x" * 10_000 + b'"}}',
    b"\xff\xfe\x00",
    b"username=admin",
    b"null",
    b"[]",
]
body = st.one_of(
    st.sampled_from([b"", b"{}"]),
    signals_body,
    st.sampled_from(RAW_BODIES),
    st.binary(max_size=64),
)
query_key = st.one_of(
    st.sampled_from(
        [
            "amount",
            "bio",
            "value",
            "record_id",
            "component_id",
            "datastar",
            "t",
            "id",
            "user_id",
            *FIELDS,
        ]
    ),
    st.text(max_size=8),
)
query = st.one_of(
    st.just(b""),
    st.lists(st.tuples(query_key, text), max_size=4).map(
        lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()
    ),
    st.binary(max_size=32),
)
method = st.sampled_from(
    ["POST"] * 12
    + ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    + ["TRACE", "CONNECT", "post", "FOO", ""]
)
content_type = st.sampled_from(
    [
        None,
        b"application/json",
        b"application/json; charset=utf-8",
        b"text/plain",
        b"application/x-www-form-urlencoded",
        b"multipart/form-data; boundary=x",
        b"",
        b"APPLICATION/JSON",
    ]
)
origin = st.sampled_from(
    [None, b"http://testserver", b"https://testserver", b"https://evil.example", b"null"]
)
fetch_site = st.sampled_from([None, b"same-origin", b"same-site", b"cross-site", b"none"])
content_length = st.sampled_from([None, b"abc", b"-1", b"0", b"99999999999", b"1"])
who = st.sampled_from(["anonymous", "alice", "admin", "forged", "junk"])
extra_headers = st.lists(
    st.tuples(st.binary(min_size=1, max_size=12), st.binary(max_size=24)), max_size=3
)


DATASTAR = [
    (b"datastar-request", b"true"),
    (b"content-type", b"application/json"),
    (b"accept", b"text/event-stream, text/html, application/json"),
]
API = [(b"datastar-request", b"true"), (b"content-type", b"application/json")]


@st.composite
def headers(draw: Any) -> tuple[str, list[tuple[bytes, bytes]]]:
    """Half what a real client sends (Datastar or an API client, signed in or not), half
    anything."""
    if draw(st.booleans()):
        return draw(who), list(draw(st.sampled_from([DATASTAR, API])))
    out: list[tuple[bytes, bytes]] = []
    if draw(st.booleans()):
        out.append((b"datastar-request", b"true"))
    if draw(st.booleans()):
        out.append((b"accept", b"text/event-stream, text/html, application/json"))
    for name, strat in (
        (b"content-type", content_type),
        (b"origin", origin),
        (b"sec-fetch-site", fetch_site),
        (b"content-length", content_length),
    ):
        value = draw(strat)
        if value is not None:
            out.append((name, value))
    out += draw(extra_headers)
    return draw(who), out


def mutate_path(path: str, how: int) -> bytes:
    """Path tricks: dot segments, encoded slashes, double prefixes, case, trailing parts."""
    state_event = path[len(PREFIX) + 1 :]
    tricks = [
        path,
        f"{PREFIX}/../{PREFIX}/{state_event}",
        f"{PREFIX}/{state_event.replace('/', '%2F')}",
        f"{PREFIX}{PREFIX}/{state_event}",
        f"{PREFIX}//{state_event}",
        f"{path}/..",
        f"{path}/",
        f"{path}/extra",
        f"{PREFIX}/{state_event.upper()}",
        f"/%5Ffaststate/{state_event}",
        f"{PREFIX}/./{state_event}",
        f"{PREFIX}/{state_event}%00",
        f"{PREFIX}/{state_event};x=1",
    ]
    return tricks[how % len(tricks)].encode()


middleware_paths = st.sampled_from(
    [
        f"{PREFIX}/stream",
        f"{PREFIX}/datastar.js",
        f"{PREFIX}/",
        PREFIX,
        f"{PREFIX}/Counter",
        f"{PREFIX}/Counter/",
        f"{PREFIX}/Counter/__init__",
        f"{PREFIX}/Counter/model_dump",
        f"{PREFIX}/Counter/_fs",
        f"{PREFIX}/Nope/increment",
        *PAGES,
        "/login",
        "/logout",
    ]
).map(str.encode)
JSON_TEXT_VALUES = [
    "1",
    "-5",
    "0.5",
    "true",
    "null",
    '"x"',
    '"a\\\\"',
    '"b;c"',
    "[1,2]",
    '{"k":"v"}',
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "1" * 5000,
    '"\\ud800"',
    '"\\udfff"',
    "[" * 100 + "]" * 100,
    "[" * 2000 + "]" * 2000,
    '"' + "x" * 5000 + '"',
]
EVENT_ARGS = {
    f"{PREFIX}/{info_of(cls).name}/{name}": (
        info_of(cls).namespace,
        sorted({p.name for p in spec.params} | {p.signal_name for p in spec.params}),
    )
    for cls in STATES
    for name, spec in info_of(cls).events.items()
}


@st.composite
def event_body(draw: Any, path: str) -> bytes:
    """A JSON body aimed at the event's own arguments and fields, values written as JSON text
    (so NaN, lone surrogates and deep nesting get in), or anything from ``body``."""
    ns, args = EVENT_ARGS.get(path, (None, []))
    if not draw(st.booleans()):
        return bytes(draw(body))
    names = st.sampled_from(args + FIELDS) if args else st.sampled_from(FIELDS)
    pairs = draw(st.lists(st.tuples(names, st.sampled_from(JSON_TEXT_VALUES)), max_size=3))
    inner = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"
    doc = f"{{{json.dumps(ns)}:{inner}}}" if ns and draw(st.booleans()) else inner
    return doc.encode()


EVENT_METHODS = {
    f"{PREFIX}/{info_of(cls).name}/{name}": spec.method
    for cls in STATES
    for name, spec in info_of(cls).events.items()
}


@st.composite
def event_request(draw: Any) -> tuple[str, bytes, bytes, Any, bytes]:
    """(method, path, query, headers, body) for one event, arguments in the query and/or the
    body. Half are well-formed envelopes (the event's method and path, a real client's headers)
    around hostile content; half are hostile throughout."""
    path = draw(st.sampled_from(EVENT_PATHS))
    _ns, args = EVENT_ARGS[path]
    q = draw(query)
    if args and draw(st.booleans()):
        key = draw(st.sampled_from([*args, "record_id", "component_id"]))
        value = draw(st.sampled_from([*JSON_TEXT_VALUES, "1", "2", "nan", "inf"]))
        q = f"{quote(key)}={quote(value)}".encode()
        if draw(st.booleans()):
            q += b"&record_id=" + draw(st.sampled_from([b"1", b"2", b"999", b"..%2F1"]))
    body_bytes = draw(event_body(path))
    if draw(st.booleans()):
        hdrs = (draw(who), list(draw(st.sampled_from([DATASTAR, API]))))
        return EVENT_METHODS[path], path.encode(), q, hdrs, body_bytes
    how = draw(st.integers(0, 40))
    target = mutate_path(path, how) if how < 13 else path.encode()
    return draw(method), target, q, draw(headers()), body_bytes


event_path = st.tuples(st.sampled_from(EVENT_PATHS), st.integers(0, 40)).map(
    lambda t: mutate_path(t[0], t[1]) if t[1] < 13 else t[0].encode()
)
any_path = st.one_of(
    middleware_paths,
    event_path,
    st.text(max_size=30).map(lambda s: ("/" + quote(s, safe="/%.")).encode()),
    st.binary(max_size=30).map(lambda b: b"/" + b),
)
