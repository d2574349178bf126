"""Serving one app's metrics in the Prometheus text format, to those allowed to read them."""

from __future__ import annotations

import hmac

from ._context import RequestContext
from ._exceptions import AuthenticationError, AuthorizationError, MethodNotAllowed
from ._http import Reply, header, send_error
from ._metrics import Metrics
from ._types import Scope, Send


async def serve_metrics(
    scope: Scope,
    send: Send,
    ctx: RequestContext,
    metrics: Metrics,
    token: str | None,
    role: str,
) -> None:
    """``GET <metrics_path>``: with a ``token`` configured, only a request carrying
    ``Authorization: Bearer <token>``; otherwise only a signed-in user with ``role``."""
    reply = Reply(send)
    if scope["method"] not in ("GET", "HEAD"):
        await send_error(scope, reply, MethodNotAllowed("metrics are read with GET"))
        return
    if token is not None:
        sent = header(scope, b"authorization") or b""
        if not hmac.compare_digest(sent, b"Bearer " + token.encode()):
            await reply.full(
                401,
                [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")],
                b"metrics need a bearer token\n",
            )
            return
    else:
        user = await ctx.load_user()
        if user is None:
            await send_error(scope, reply, AuthenticationError("sign in to read metrics"))
            return
        if not user.has_role(role):
            await send_error(scope, reply, AuthorizationError("metrics are for admins"))
            return
    body, content_type = metrics.exposition()
    if scope["method"] == "HEAD":
        body = b""
    await reply.full(
        200,
        [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")],
        body,
    )


__all__ = ["serve_metrics"]
