"""In-process httpx transport: ``httpx.Client(transport=emu.transport())`` with no sockets at all."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx

from ._http import EmulatorResponse

if TYPE_CHECKING:
    from .emulator import Emulator


class _SyncStream(httpx.SyncByteStream):
    def __init__(self, response: EmulatorResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self._response.iter_bytes()):
            if i and self._response.chunk_delay > 0:
                time.sleep(self._response.chunk_delay)
            yield chunk


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, response: EmulatorResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._response.iter_bytes()):
            if i and self._response.chunk_delay > 0:
                await asyncio.sleep(self._response.chunk_delay)
            yield chunk


class EmulatorTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Serves requests from an ``Emulator`` for sync and async httpx clients alike.

    Streamed answers are delivered chunk by chunk (with ``stream_chunk_delay`` between them), so SSE
    parsers see the same framing as over a socket; a streamed answer completes when its last chunk is
    read, a plain one when it is returned.
    """

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    def _handle(self, request: httpx.Request, body: bytes) -> EmulatorResponse:
        query = {k: request.url.params[k] for k in request.url.params}
        headers = dict(request.headers)
        return self.emulator.handle(request.method, request.url.path, query, headers, body, scheme=request.url.scheme)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._handle(request, request.read())
        if response.hold is not None:
            response.hold.wait()
        if response.delay > 0:
            time.sleep(response.delay)
        if response.disconnect:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        if response.stream is None:
            response.complete()
            return httpx.Response(response.status, headers=response.headers, content=response.body, request=request)
        return httpx.Response(response.status, headers=response.headers, stream=_SyncStream(response), request=request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = self._handle(request, await request.aread())
        if response.hold is not None:
            await response.hold.wait_async()
        if response.delay > 0:
            await asyncio.sleep(response.delay)
        if response.disconnect:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        if response.stream is None:
            response.complete()
            return httpx.Response(response.status, headers=response.headers, content=response.body, request=request)
        return httpx.Response(response.status, headers=response.headers, stream=_AsyncStream(response), request=request)
