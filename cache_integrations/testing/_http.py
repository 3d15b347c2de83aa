"""Response value type and the wire encoders shared by all endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._gate import AnswerGate

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

    ``on_complete`` runs once, when the answer is delivered (``complete()``): with
    ``Emulator(cache_write_on_completion=True)`` that is when the request's prompt becomes cacheable.
    The serving layers complete an answer just before they hand over its last chunk, so a client can
    never see the end of an answer before the emulator has recorded it as delivered (a client that
    waits for an answer and then sends the next request always finds the prefix written).
    ``iter_bytes()`` (hence ``read()`` and ``json()``) does the same. ``hold`` (see
    ``Emulator.hold_answers``) is a gate the serving layer waits on before it answers.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: Iterable[bytes] | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    disconnect: bool = False
    on_complete: Callable[[], None] | None = None
    hold: AnswerGate | None = None
    _completed: bool = field(default=False, repr=False)
    _complete_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def is_stream(self) -> bool:
        return self.stream is not None

    def complete(self) -> None:
        """Mark the answer delivered (idempotent): runs ``on_complete`` the first time only."""
        with self._complete_lock:
            if self._completed:
                return
            self._completed = True
        if self.on_complete is not None:
            self.on_complete()

    def iter_bytes(self) -> Iterator[bytes]:
        """The payload as chunks (one chunk for a plain body); completes the response before the last one."""
        try:
            if self.stream is None:
                self.complete()
                yield self.body
                return
            pending: bytes | None = None
            for chunk in self.stream:
                if pending is not None:
                    yield pending
                pending = chunk
            self.complete()
            if pending is not None:
                yield pending
        finally:
            self.complete()

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
