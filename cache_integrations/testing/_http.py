"""Response value type and the wire encoders shared by all endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EmulatorResponse"]


@dataclass
class EmulatorResponse:
    """One HTTP answer, independent of how the emulator is being served.

    Exactly one of ``body`` (a complete payload) or ``stream`` (SSE chunks, each already framed) is
    meaningful; ``is_stream`` tells which. ``delay`` is the latency to wait before answering and
    ``chunk_delay`` the pause between stream chunks; the serving layer applies them with ``time.sleep``
    or ``asyncio.sleep`` so the core never blocks an event loop. ``disconnect`` asks the serving layer
    to drop the connection instead of answering (the in-process transport raises
    ``httpx.RemoteProtocolError``; the ASGI app answers nothing, which servers turn into a 500).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Iterable[bytes] | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    disconnect: bool = False

    @property
    def is_stream(self) -> bool:
        return self.stream is not None

    def iter_bytes(self) -> Iterator[bytes]:
        """The payload as chunks (one chunk for a plain body)."""
        if self.stream is None:
            yield self.body
        else:
            yield from self.stream

    def read(self) -> bytes:
        """The whole payload (joins stream chunks)."""
        return b"".join(self.iter_bytes())

    def json(self) -> Any:
        """Decoded JSON body (not for SSE streams)."""
        return json.loads(self.read())


def dumps(obj: Any) -> str:
    """Compact JSON as the providers send it (non-ASCII kept as UTF-8)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_response(status: int, obj: Any, content_type: str, extra: Mapping[str, str] | None = None) -> EmulatorResponse:
    headers = {"content-type": content_type}
    if extra:
        headers.update(extra)
    return EmulatorResponse(status=status, headers=headers, body=dumps(obj).encode())


def sse_response(chunks: list[bytes], content_type: str, extra: Mapping[str, str] | None = None) -> EmulatorResponse:
    headers = {"content-type": content_type, "cache-control": "no-cache"}
    if extra:
        headers.update(extra)
    return EmulatorResponse(status=200, headers=headers, stream=chunks)


def sse_event(obj: Any, sep: str = "\n\n") -> bytes:
    """One ``data:`` event; Gemini separates events with CRLF CRLF, OpenAI-style APIs with LF LF."""
    payload = obj if isinstance(obj, str) else dumps(obj)
    return f"data: {payload}{sep}".encode()
