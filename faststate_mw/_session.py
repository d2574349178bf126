"""The signed cookie that identifies a browser session (``faststate_sid``).

The cookie carries the session id and a binding to the user the session was given to: a keyed
hash of (session id, user id), empty for an anonymous session. Both are signed, so a client can
neither choose a session id nor rebind one; the user id itself never appears in the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

from itsdangerous import BadSignature, Signer

from ._exceptions import ConfigurationError
from ._types import Scope

#: how many bytes of verified cookie values are remembered (a returning browser costs one
#: lookup); keyed by our cookie's signed value only, never by the whole Cookie header
VERIFIED_CACHE_BYTES = 1024 * 1024
#: a value longer than this is never ours (ours are ~60 characters)
MAX_COOKIE_VALUE = 256


def cookie_value(header: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in a Cookie header, read as browsers write it: pairs split on
    ``;``, each ``name=value`` with surrounding spaces dropped, the first pair of that name wins.
    A neighbour cookie that is not RFC 6265 (JSON, spaces, quotes) changes nothing."""
    for pair in header.split(b";"):
        key, eq, value = pair.partition(b"=")
        if eq and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[:1] == value[-1:] == b'"':
                value = value[1:-1]
            return value
    return None


class SessionCookie:
    """Reads and mints the signed session id. A tampered or unreadable cookie quietly means a
    new session, as Starlette's SessionMiddleware does."""

    def __init__(
        self,
        secret_key: str,
        *,
        name: str = "faststate_sid",
        max_age: int | None = 14 * 24 * 3600,
        https_only: bool = False,
        same_site: str = "lax",
    ) -> None:
        if same_site.lower() not in ("lax", "strict", "none"):
            raise ConfigurationError("same_site must be 'lax', 'strict' or 'none'")
        self.name = name
        self._name = name.encode()
        self._prefix = self._name + b"="
        self._skip = len(self._prefix)
        self._signer = Signer(secret_key, salt="faststate.session")
        self._bind_key = hashlib.sha256(b"faststate.session.user:" + secret_key.encode()).digest()
        self._verified: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._verified_bytes = 0
        attrs = f"; path=/; httponly; samesite={same_site.lower()}"
        if max_age is not None:
            attrs += f"; max-age={max_age}"
        if https_only:
            attrs += "; secure"
        self._attrs = attrs

    def read(self, scope: Scope) -> tuple[str, str] | None:
        """The session id of the request's signed cookie and its user binding (None if absent
        or tampered with)."""
        value = None
        prefix = self._prefix
        for k, v in scope["headers"]:
            if k != b"cookie":
                continue
            header = v if type(v) is bytes else bytes(v)  # (a type call even for bytes)
            if header.startswith(prefix):
                # a header that is ``name=<a value verified before>`` and nothing else (a
                # verified value holds no ``;``, spaces or quotes): cookie_value would
                # return that value, so the cache answers without parsing the header
                found = self._verified.get(header[self._skip :])
                if found is not None:
                    return found
            # find(), not ``in``: bytes.__contains__ first tries its argument as an int and
            # formats a TypeError to throw away (~1,000 instructions)
            elif header.find(prefix) < 0:
                continue
            value = cookie_value(header, self._name)
            if value is not None:
                break
        if not value or len(value) > MAX_COOKIE_VALUE:
            return None
        found = self._verified.get(value)
        if found is not None:
            return found
        try:
            text = self._signer.unsign(value).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None
        sid, _, binding = text.partition(".")  # a cookie from before bindings: anonymous
        if not sid:
            return None
        found = (sid, binding)
        self._remember(value, found)
        return found

    def _remember(self, value: bytes, found: tuple[str, str]) -> None:
        """Cache a verified value, keeping the cache under VERIFIED_CACHE_BYTES."""
        self._verified[value] = found
        self._verified_bytes += _cost(value, found)
        while self._verified_bytes > VERIFIED_CACHE_BYTES:
            old, old_found = self._verified.popitem(last=False)
            self._verified_bytes -= _cost(old, old_found)

    @staticmethod
    def new_id() -> str:
        """A fresh random session id."""
        return secrets.token_urlsafe(18)

    def binding(self, sid: str, user_id: str | None) -> str:
        """What binds session ``sid`` to ``user_id`` ("" for an anonymous session)."""
        if user_id is None:
            return ""
        message = f"{sid}:{user_id}".encode()  # ids have no ':', so this is unambiguous
        return hmac.new(self._bind_key, message, hashlib.sha256).hexdigest()[:32]

    def set_cookie(self, sid: str, binding: str = "") -> tuple[bytes, bytes]:
        """The ``Set-Cookie`` header that gives the browser ``sid``, bound by ``binding``."""
        value = self._signer.sign(f"{sid}.{binding}" if binding else sid).decode("ascii")
        return (b"set-cookie", f"{self.name}={value}{self._attrs}".encode())


def _cost(value: bytes, found: tuple[str, str]) -> int:
    return len(value) + len(found[0]) + len(found[1])


__all__ = ["SessionCookie", "cookie_value"]
