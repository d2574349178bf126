"""The signed cookie that identifies a browser session (``faststate_sid``)."""

from __future__ import annotations

import secrets
from collections import OrderedDict

from itsdangerous import BadSignature, Signer

from ._exceptions import ConfigurationError
from ._types import Scope

#: how many verified Cookie headers are remembered (a returning browser costs one lookup)
VERIFIED_CACHE_SIZE = 10_000


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
        self._prefix = name.encode() + b"="
        self._signer = Signer(secret_key, salt="faststate.session")
        self._verified: OrderedDict[bytes, str] = OrderedDict()
        attrs = f"; path=/; httponly; samesite={same_site.lower()}"
        if max_age is not None:
            attrs += f"; max-age={max_age}"
        if https_only:
            attrs += "; secure"
        self._attrs = attrs

    def read(self, scope: Scope) -> str | None:
        """The session id of the request's signed cookie (None if absent or tampered with)."""
        header = None
        for k, v in scope["headers"]:
            if k == b"cookie" and self._prefix in v:
                header = bytes(v)
                break
        if header is None:
            return None
        sid = self._verified.get(header)
        if sid is not None:
            return sid
        value = cookie_value(header, self._prefix[:-1])
        if not value:
            return None
        try:
            sid = self._signer.unsign(value).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None
        self._verified[header] = sid
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return sid

    @staticmethod
    def new_id() -> str:
        """A fresh random session id."""
        return secrets.token_urlsafe(18)

    def set_cookie(self, sid: str) -> tuple[bytes, bytes]:
        """The ``Set-Cookie`` header that gives the browser ``sid``."""
        value = self._signer.sign(sid).decode("ascii")
        return (b"set-cookie", f"{self.name}={value}{self._attrs}".encode())


__all__ = ["SessionCookie", "cookie_value"]
