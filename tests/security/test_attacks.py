"""Attacks that hold (issue 10, "Proof"): each test asserts the denial AND that no state
changed. Forged and tampered session cookies and stream tokens, replay of a stream token in
another session, CSRF variants, access to another session's or user's states through ids in
the path, the query and the signals, and path tricks. Requests go in process over raw ASGI
(tests/security/asgi.py), so paths reach the app byte for byte."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from faststate_mw import (
    FastStateMiddleware,
    State,
    StateConfig,
    StateScope,
    StateStore,
    UserContext,
    event,
)

from .asgi import Answer, AsgiDriver, state_snapshot

SECRET = "attacks-secret-0123456789"
DS = [
    (b"datastar-request", b"true"),
    (b"content-type", b"application/json"),
    (b"accept", b"text/event-stream, text/html, application/json"),
]
API = [(b"datastar-request", b"true"), (b"content-type", b"application/json")]


class AttackNote(State):
    """Per session."""

    text: str = ""

    @event
    def write(self, text: str) -> None:
        self.text = text


class AttackWidget(State):
    __faststate__ = StateConfig(scope=StateScope.COMPONENT)
    clicks: int = 0

    @event
    def click(self) -> None:
        self.clicks += 1


class AttackProfile(State):
    __faststate__ = StateConfig(scope=StateScope.USER, requires_auth=True)
    user_id: str = ""
    bio: str = ""

    @event(owner_only=True)
    def save(self, bio: str) -> None:
        self.bio = bio


class AttackDoc(State):
    __faststate__ = StateConfig(scope=StateScope.RECORD)
    owner_id: str = ""
    title: str = ""

    @event(owner_only=True)
    def rename(self, title: str) -> None:
        self.title = title


def load_user(scope: Any) -> UserContext | None:
    """The app's own sign-in, reduced to a header for the test."""
    for k, v in scope["headers"]:
        if k == b"x-test-user":
            return UserContext(id=v.decode())
    return None


async def page(scope: Any, receive: Any, send: Any) -> None:
    """A page that renders the session's note, a widget and (signed in) the profile."""
    note = await AttackNote.dependency()
    widget = AttackWidget.component("w1")
    html = note.to_html() + widget.to_html()
    if load_user(scope) is not None:
        html += (await AttackProfile.dependency()).to_html()
    body = f"<html><body>{html}</body></html>".encode()
    headers = [(b"content-type", b"text/html; charset=utf-8")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Browser:
    """One browser: its session cookie and, optionally, its signed-in user."""

    def __init__(self, driver: AsgiDriver, user: str | None = None) -> None:
        self.driver = driver
        self.user = user
        first = driver.request("GET", b"/", headers=self.headers())
        self.cookie = f"faststate_sid={first.cookies()['faststate_sid']}"
        self.page = first.text

    def headers(self, base: list[tuple[bytes, bytes]] | None = None) -> list[tuple[bytes, bytes]]:
        out = list(base or [])
        if getattr(self, "cookie", None):
            out.append((b"cookie", self.cookie.encode()))
        if self.user:
            out.append((b"x-test-user", self.user.encode()))
        return out

    def post(
        self, path: str, body: Any = None, query: str = "", base: Any = None, cookie: str = ""
    ) -> Answer:
        hdrs = self.headers(API if base is None else base)
        if cookie:
            hdrs = [(k, v) for k, v in hdrs if k != b"cookie"] + [(b"cookie", cookie.encode())]
        raw = (
            b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        return self.driver.request(
            "POST", path.encode(), query=query.encode(), headers=hdrs, body=raw
        )

    def stream_token(self) -> str:
        found = re.search(r"/stream\?t=([^'&\"]+)", self.page)
        assert found, self.page
        return found.group(1)


@pytest.fixture
def driver(store: StateStore) -> Iterator[AsgiDriver]:
    app = FastStateMiddleware(page, secret_key=SECRET, store=store, user_loader=load_user)
    with AsgiDriver(app) as d:
        yield d


@pytest.fixture
def victim(driver: AsgiDriver) -> Browser:
    """alice, with a note, a clicked widget, a profile bio and a document she owns."""
    alice = Browser(driver, "alice")
    assert alice.post("/_faststate/AttackNote/write", query="text=alice-secret").status == 200
    assert alice.post("/_faststate/AttackWidget/click", query="component_id=w1").status == 200
    assert alice.post("/_faststate/AttackProfile/save", query="bio=alice-bio").status == 200
    doc = driver.run(AttackDoc.resolve("d1"))
    driver.run(doc.update(owner_id="alice", title="alice-title"))
    return alice


def assert_denied(answer: Answer, status: int, code: str | None = None) -> None:
    assert answer.status == status, (answer.status, answer.text)
    if code is not None:
        assert answer.header(b"x-faststate-error") == code.encode()


def leaks_nothing_of(answer: Answer) -> None:
    for secret in ("alice-secret", "alice-bio", "alice-title"):
        assert secret not in answer.text


# -- session cookies --------------------------------------------------------------------------
def forged_cookies(real: str) -> list[str]:
    name, _, value = real.partition("=")
    sid, _, sig = value.rpartition(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    return [
        f"{name}={sid}",  # the id without a signature
        f"{name}={sid}.{flipped}",  # tampered signature
        f"{name}={sid[:-1]}x.{sig}",  # tampered id
        f"{name}=forged-session-id.{sig}",
        f"{name}={value}{value}",
        f"{name}=",
    ]


def test_forged_and_tampered_session_cookies_reach_no_session(
    driver: AsgiDriver, victim: Browser
) -> None:
    before = state_snapshot()
    for cookie in forged_cookies(victim.cookie):
        attacker = Browser(driver)
        r = attacker.post("/_faststate/AttackNote/write", query="text=pwned", cookie=cookie)
        # a forged cookie is no cookie: the write lands in a new session of the attacker's
        assert r.status == 200
        assert "faststate_sid" in str(r.cookies())
        leaks_nothing_of(r)
    after = state_snapshot()
    assert {k: after[k] for k in before} == before


# -- stream tokens ----------------------------------------------------------------------------
def test_forged_tampered_and_replayed_stream_tokens_are_refused(
    driver: AsgiDriver, victim: Browser
) -> None:
    token = victim.stream_token()
    path = b"/_faststate/stream"
    # the sentinel: the victim's own token in the victim's own session opens a stream
    ok = driver.request("GET", path, query=f"t={token}".encode(), headers=victim.headers(DS))
    assert ok.status == 200 and ok.streaming
    other = Browser(driver, "bob")
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    middle = len(token) // 3
    tampered_payload = token[:middle] + ("x" if token[middle] != "x" else "y") + token[middle + 1 :]
    attempts = [
        (other, token),  # replay in another session (bob's)
        (Browser(driver), token),  # replay in an anonymous session
        (victim, tampered),  # tampered signature
        (victim, tampered_payload),
        (victim, "forged.token.value"),
        (victim, ""),
    ]
    before = state_snapshot()
    for browser, t in attempts:
        r = driver.request("GET", path, query=f"t={t}".encode(), headers=browser.headers(DS))
        assert_denied(r, 204, "invalid_stream_token")
        assert not r.streaming and r.body == b""
    # no cookie at all: the same
    r = driver.request("GET", path, query=f"t={token}".encode(), headers=DS)
    assert_denied(r, 204, "invalid_stream_token")
    assert state_snapshot() == before


# -- CSRF -------------------------------------------------------------------------------------
CSRF_VARIANTS = {
    "no Datastar header": [(b"content-type", b"application/json")],
    "form content type": [
        (b"datastar-request", b"true"),
        (b"content-type", b"application/x-www-form-urlencoded"),
    ],
    "text/plain (a simple request)": [(b"content-type", b"text/plain")],
    "cross Origin": [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"origin", b"https://evil.example"),
    ],
    "cross Origin with a JSON type but no Datastar header": [
        (b"content-type", b"application/json"),
        (b"origin", b"https://evil.example"),
    ],
    "Sec-Fetch-Site cross-site": [
        (b"content-type", b"text/plain"),
        (b"sec-fetch-site", b"cross-site"),
    ],
    "Origin null": [(b"content-type", b"text/plain"), (b"origin", b"null")],
    "Origin of another port": [
        (b"content-type", b"text/plain"),
        (b"origin", b"http://testserver:8080"),
    ],
}


@pytest.mark.parametrize("variant", sorted(CSRF_VARIANTS))
def test_cross_site_requests_are_refused(driver: AsgiDriver, victim: Browser, variant: str) -> None:
    before = state_snapshot()
    r = victim.post("/_faststate/AttackNote/write", query="text=csrf", base=CSRF_VARIANTS[variant])
    assert_denied(r, 403, "csrf_rejected")
    assert state_snapshot() == before


# -- another session's or user's states through ids -------------------------------------------
def test_another_sessions_component_cannot_be_reached_by_its_id(
    driver: AsgiDriver, victim: Browser
) -> None:
    before = state_snapshot()
    victim_keys = {k for k in before if k.startswith("component:")}
    attacker = Browser(driver)
    victim_sid = victim.cookie.split("=", 1)[1].rpartition(".")[0]
    attempts = [
        attacker.post("/_faststate/AttackWidget/click", query="component_id=w1"),
        attacker.post(
            "/_faststate/AttackWidget/click", query=f"component_id=w1&session_id={victim_sid}"
        ),
        attacker.post(
            "/_faststate/AttackWidget/click",
            body={"attackWidget": {"w1": {"clicks": 99}}},
            query="component_id=w1",
        ),
        attacker.post(f"/_faststate/AttackWidget/click/{victim_sid}", query="component_id=w1"),
    ]
    after = state_snapshot()
    for key in victim_keys:
        assert after[key] == before[key], key
    for r in attempts:
        leaks_nothing_of(r)
        # an id the event does not take is an unknown argument (422)
        assert r.status in (200, 204, 404, 422), r.text


def test_another_sessions_note_cannot_be_reached_through_query_or_signals(
    driver: AsgiDriver, victim: Browser
) -> None:
    victim_sid = victim.cookie.split("=", 1)[1].rpartition(".")[0]
    victim_key = next(k for k in state_snapshot() if k.endswith(":AttackNote"))
    before = state_snapshot()[victim_key]
    attacker = Browser(driver)
    for query, body in [
        (f"text=pwned&session_id={victim_sid}", None),
        ("text=pwned", {"session_id": victim_sid, "attackNote": {"text": "pwned"}}),
        (f"text=pwned&key={victim_key}", None),
    ]:
        leaks_nothing_of(attacker.post("/_faststate/AttackNote/write", body, query))
    assert state_snapshot()[victim_key] == before


def test_another_users_profile_and_document_cannot_be_changed(
    driver: AsgiDriver, victim: Browser
) -> None:
    before = state_snapshot()
    alice_keys = [k for k in before if "alice" in k or k.startswith("record:")]
    assert len(alice_keys) >= 2
    bob = Browser(driver, "bob")
    attempts = [
        bob.post("/_faststate/AttackProfile/save", query="bio=pwned&user_id=alice"),
        bob.post(
            "/_faststate/AttackProfile/save",
            body={"attackProfile": {"user_id": "alice", "bio": "pwned"}},
        ),
        bob.post("/_faststate/AttackProfile/save/alice", query="bio=pwned"),
        bob.post("/_faststate/AttackDoc/rename", query="record_id=d1&title=pwned"),
        bob.post(
            "/_faststate/AttackDoc/rename",
            body={"attackDoc": {"owner_id": "bob"}},
            query="record_id=d1&title=pwned",
        ),
        bob.post("/_faststate/AttackDoc/rename", query="record_id=d1&title=pwned&owner_id=bob"),
    ]
    for r in attempts:
        leaks_nothing_of(r)
    for r in attempts[3:5]:
        assert_denied(r, 403, "forbidden")
    # an owner id in the URL is not an argument of the event at all
    assert_denied(attempts[5], 422, "invalid_arguments")
    after = state_snapshot()
    for key in alice_keys:
        assert after[key] == before[key], key
    # anonymous: not even signed in
    anon = Browser(driver)
    after = state_snapshot()
    r = anon.post("/_faststate/AttackProfile/save", query="bio=pwned&user_id=alice")
    assert_denied(r, 401, "authentication_required")
    assert state_snapshot() == after


# -- path tricks ------------------------------------------------------------------------------
PATH_TRICKS = [
    b"/_faststate/../_faststate/AttackNote/write",
    b"/_faststate/_faststate/AttackNote/write",
    b"/_faststate//AttackNote/write",
    b"/_faststate/AttackNote/write/..",
    b"/_faststate/AttackNote/./write",
    b"/_faststate/AttackNote/write/",
    b"/_faststate/AttackNote/write%00",
    b"/_faststate/AttackNote/_snapshot",
    b"/_faststate/AttackNote/__init__",
    b"/_faststate/AttackNote/model_validate",
    b"/_faststate/attacknote/write",
    b"/_faststate/AttackNote/write;x",
    b"/_faststate/%2e%2e/_faststate/AttackNote/write",
    b"/_faststate/AttackNote/write%2f..",
]
# Percent-encodings of the event's own path: the server decodes them (uvicorn does), so they are
# the same URL, and every check applies to them as to the plain one.
SAME_PATH = [b"/_faststate/AttackNote%2Fwrite", b"/_faststate/%41ttackNote/write"]


@pytest.mark.parametrize("path", PATH_TRICKS)
def test_path_tricks_reach_no_event(driver: AsgiDriver, victim: Browser, path: bytes) -> None:
    before = state_snapshot()
    hdrs = victim.headers(API)
    r = driver.request("POST", path, query=b"text=tricked", headers=hdrs, body=b"{}")
    assert r.status in (404, 405), (path, r.status, r.text)
    assert state_snapshot() == before


@pytest.mark.parametrize("path", SAME_PATH)
def test_encoded_event_paths_get_every_check(
    driver: AsgiDriver, victim: Browser, path: bytes
) -> None:
    before = state_snapshot()
    cross_site = victim.headers(
        [(b"content-type", b"text/plain"), (b"origin", b"https://x.example")]
    )
    r = driver.request("POST", path, query=b"text=tricked", headers=cross_site, body=b"{}")
    assert_denied(r, 403, "csrf_rejected")
    r = driver.request("POST", path, query=b"text[", headers=victim.headers(API), body=b"{")
    assert_denied(r, 400, "invalid_payload")
    assert state_snapshot() == before
