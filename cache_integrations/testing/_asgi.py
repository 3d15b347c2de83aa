"""ASGI 3 adapter: lets uvicorn (or ``httpx.ASGITransport``) serve the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from .emulator import Emulator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class EmulatorASGIApp:
    """ASGI 3 callable. A class with ``async __call__`` so servers detect ASGI 3 without hints."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body", False))
        raw_query = scope.get("query_string", b"").decode("latin-1")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        body = b"".join(chunks)
        response = self.emulator.handle(
            scope["method"], scope["path"], query, headers, body, scheme=str(scope.get("scheme") or "http")
        )
        if response.hold is not None:
            await response.hold.wait_async()
        if response.delay > 0:
            await asyncio.sleep(response.delay)
        if response.disconnect:
            return  # no answer at all: the server closes the exchange (uvicorn sends a 500)
        out_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()]
        try:
            if response.stream is None:
                out_headers.append((b"content-length", str(len(response.body)).encode()))
                await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
                response.complete()  # recorded as delivered before the client can read the end of it
                await send({"type": "http.response.body", "body": response.body, "more_body": False})
                return
            await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
            chunks = list(response.stream)
            for i, chunk in enumerate(chunks):
                if i and response.chunk_delay > 0:
                    await asyncio.sleep(response.chunk_delay)
                if i == len(chunks) - 1:
                    response.complete()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            response.complete()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            response.complete()  # the request is over (delivered or dropped): its prompt becomes cacheable

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
