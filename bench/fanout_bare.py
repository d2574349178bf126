"""The loopback fan-out baseline: a bare Starlette SSE endpoint, one asyncio queue per stream,
and a POST that pushes the same bytes into every queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

queues: set[asyncio.Queue[bytes]] = set()
PAYLOAD = b'event: datastar-patch-signals\ndata: signals {"shared":{"n":%d}}\n\n'
counter = 0


async def sse(request: Request) -> Response:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queues.add(queue)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": open\n\n"
            while True:
                yield await queue.get()
        finally:
            queues.discard(queue)

    return StreamingResponse(stream(), media_type="text/event-stream")


async def push(request: Request) -> Response:
    global counter
    counter += 1
    data = PAYLOAD % counter
    for queue in queues:
        queue.put_nowait(data)
    return Response(status_code=204)


async def count(request: Request) -> Response:
    return Response(str(len(queues)))


app = Starlette(
    routes=[Route("/sse", sse), Route("/push", push, methods=["POST"]), Route("/count", count)]
)
