"""Reading what a provider sends back, without trusting it.

Bodies are decoded incrementally from the raw bytes (gzip and deflate inflated here, in bounded
steps), counted, and refused past a size cap, so a 255 KB gzip "bomb" stops at the cap instead of
inflating to 256 MB. Event streams are split into events by a small SSE decoder that caps each event
as well. JSON that is not what the API documents (not JSON at all, ``null``, a list, an invalid stream
event) becomes a `MalformedResponseError` naming the problem with a short excerpt of the body.
A `Deadline` bounds a whole call, across retries and the whole stream.
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, DeadlineExceededError, MalformedResponseError, ResponseTooLargeError

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "BodyDecoder",
    "Deadline",
    "SSEDecoder",
    "as_object",
    "decode_event",
    "decode_json_object",
    "excerpt",
    "finite_seconds",
    "get_list",
    "get_object",
    "get_str",
    "malformed",
]

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Default cap on a decoded response body, and on each event of a stream (64 MiB)."""
ERROR_BODY_BYTES = 64 * 1024
"""Error bodies are read up to this many bytes (the rest is not needed for the message)."""
EXCERPT_CHARS = 200
_INFLATE_STEP = 1 << 20
_LINE_END = re.compile(rb"\r\n|\r|\n")


def excerpt(body: bytes | str | Any, limit: int = EXCERPT_CHARS) -> str:
    """The start of a body as a one-line quoted string (JSON values are re-serialised)."""
    if isinstance(body, bytes):
        text = body[: limit * 4].decode("utf-8", "replace")
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = json.dumps(body, ensure_ascii=False, default=repr)
        except ValueError:  # pragma: no cover - default=repr makes everything serialisable
            text = repr(body)
    if len(text) > limit:
        return repr(text[:limit]) + f" (+{len(text) - limit} more)"
    return repr(text)


def malformed(provider: str, problem: str, body: Any = None, *, status: int = 200) -> MalformedResponseError:
    """A `MalformedResponseError` for `problem`, quoting the start of `body` when one is given."""
    quoted = f": {excerpt(body)}" if body is not None else ""
    return MalformedResponseError(f"{problem}{quoted}", status_code=status, provider=provider, body=_bounded(body))


def _bounded(body: Any) -> Any:
    """What an error keeps of a body: decoded JSON as is, raw bytes/text only their first 2 KB."""
    if isinstance(body, (bytes, str)):
        return body[:2048]
    return body


def decode_json_object(data: bytes, provider: str, *, content_type: str | None = None) -> dict[str, Any]:
    """A response body that must be a JSON object ({} when empty), else `MalformedResponseError`."""
    if not data.strip():
        return {}
    problem: str | None = None
    value: Any = None
    try:
        value = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        problem = f"the response is not valid JSON ({_reason(exc)})"
    if problem is None and not isinstance(value, dict):
        problem = f"expected a JSON object, got {kind_of(value)}"
    if problem is not None:
        if content_type and "json" not in content_type.lower():
            problem += f", content-type {content_type!r}"
        raise malformed(provider, problem, data)
    assert isinstance(value, dict)
    return value


def decode_event(data: str, provider: str) -> Mapping[str, Any]:
    """One stream event's ``data``: a JSON object, else `MalformedResponseError`."""
    problem: str | None = None
    value: Any = None
    try:
        value = json.loads(data)
    except ValueError as exc:
        problem = f"a stream event is not valid JSON ({_reason(exc)})"
    if problem is None and not isinstance(value, Mapping):
        problem = f"a stream event is {kind_of(value)}, not a JSON object"
    if problem is not None:
        raise malformed(provider, problem, data)
    assert isinstance(value, Mapping)
    return value


def as_object(value: Any, where: str, provider: str, body: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else `MalformedResponseError` naming `where`."""
    if not isinstance(value, Mapping):
        raise malformed(provider, f"{where} is {kind_of(value)}, expected an object", body)
    return value


def get_object(container: Mapping[str, Any], key: str, where: str, provider: str, body: Any) -> Mapping[str, Any]:
    """``container[key]`` as an object ({} when absent or null)."""
    value = container.get(key)
    return {} if value is None else as_object(value, f"{where}.{key}" if where else key, provider, body)


def get_list(container: Mapping[str, Any], key: str, where: str, provider: str, body: Any) -> list[Any]:
    """``container[key]`` as a list ([] when absent or null)."""
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise malformed(provider, f"{where + '.' if where else ''}{key} is {kind_of(value)}, expected a list", body)
    return value


def get_str(container: Mapping[str, Any], key: str, where: str, provider: str, body: Any) -> str | None:
    """``container[key]`` as a string (None when absent or null)."""
    value = container.get(key)
    if value is None or isinstance(value, str):
        return value
    raise malformed(provider, f"{where + '.' if where else ''}{key} is {kind_of(value)}, expected a string", body)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos}"
    return type(exc).__name__


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# ------------------------------------------------------------------------------------- body bytes


class BodyDecoder:
    """Decodes ``Content-Encoding`` (identity, gzip, deflate) incrementally and enforces `limit` on
    the decoded bytes. `truncate` (error bodies) stops quietly at the limit instead of raising."""

    __slots__ = ("_inflater", "_limit", "_provider", "_status", "_truncate", "total")

    def __init__(
        self, content_encoding: str | None, limit: int, provider: str, *, status: int = 200, truncate: bool = False
    ) -> None:
        self._limit = limit
        self._provider = provider
        self._status = status
        self._truncate = truncate
        self.total = 0
        encodings = [e.strip().lower() for e in (content_encoding or "").split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        if not encodings:
            self._inflater: Any = None
        elif len(encodings) == 1 and encodings[0] in ("gzip", "x-gzip"):
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif len(encodings) == 1 and encodings[0] == "deflate":
            self._inflater = _Deflate()
        else:
            raise malformed(
                provider, f"unsupported Content-Encoding {content_encoding!r} (gzip and deflate are accepted)"
            )

    @property
    def full(self) -> bool:
        """True once a truncating decoder has all the bytes it keeps."""
        return self._truncate and self.total >= self._limit

    def feed(self, raw: bytes) -> bytes:
        if self._inflater is None:
            return self._count(raw)
        out: list[bytes] = []
        data = raw
        while True:
            room = self._limit - self.total
            step = min(_INFLATE_STEP, room + 1) if room >= 0 else 1
            try:
                chunk = self._inflater.decompress(data, step)
            except zlib.error as exc:
                raise malformed(self._provider, f"the compressed body is corrupt ({exc})") from None
            data = self._inflater.unconsumed_tail
            out.append(self._count(chunk))
            if self.full or (len(chunk) < step and not data):
                break
        return b"".join(out)

    def flush(self) -> bytes:
        if self._inflater is None or self.full:
            return b""
        try:
            return self._count(self._inflater.flush())
        except zlib.error as exc:
            raise malformed(self._provider, f"the compressed body is corrupt ({exc})") from None

    def _count(self, chunk: bytes) -> bytes:
        self.total += len(chunk)
        if self.total <= self._limit:
            return chunk
        if self._truncate:
            keep = len(chunk) - (self.total - self._limit)
            self.total = self._limit
            return chunk[:keep]
        raise ResponseTooLargeError(
            f"the response is larger than max_response_bytes={self._limit} once decoded; reading stopped there",
            limit=self._limit,
            status_code=self._status,
            provider=self._provider,
        )


class _Deflate:
    """``Content-Encoding: deflate`` is zlib-wrapped by the standard, raw deflate from some servers."""

    def __init__(self) -> None:
        self._z: Any = zlib.decompressobj()
        self._first = True

    @property
    def unconsumed_tail(self) -> bytes:
        tail: bytes = self._z.unconsumed_tail
        return tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return bytes(self._z.decompress(data, max_length))
            except zlib.error:
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
        return bytes(self._z.decompress(data, max_length))

    def flush(self) -> bytes:
        return bytes(self._z.flush())


# ------------------------------------------------------------------------------------ SSE events


class SSEDecoder:
    """Server-sent events from decoded bytes: yields each event's ``data`` (lines joined by ``\\n``).

    Follows the WHATWG rules that matter here (CRLF/CR/LF line ends, ``data:`` with one optional
    space, comments, dispatch on a blank line, an unterminated event at the end is dropped) and
    refuses a line or an event larger than `limit` bytes.
    """

    __slots__ = ("_data", "_limit", "_partial", "_partial_size", "_pending_cr", "_provider", "_size")

    def __init__(self, limit: int, provider: str) -> None:
        self._limit = limit
        self._provider = provider
        self._partial: list[bytes] = []  # the current line, not yet terminated
        self._partial_size = 0
        self._pending_cr = False  # the last chunk ended in CR: a LF opening the next one belongs to it
        self._data: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[str]:
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._pending_cr = False
        events: list[str] = []
        start = 0
        for match in _LINE_END.finditer(chunk):
            piece = chunk[start : match.start()]
            if self._partial:
                piece = b"".join((*self._partial, piece))
                self._partial, self._partial_size = [], 0
            start = match.end()
            if start == len(chunk) and match.group() == b"\r":
                self._pending_cr = True
            event = self._line(piece)
            if event is not None:
                events.append(event)
        if start < len(chunk):
            rest = chunk[start:]
            self._partial_size += len(rest)
            if self._partial_size > self._limit:
                raise self._too_large()
            self._partial.append(rest)
        return events

    def _line(self, line: bytes) -> str | None:
        if not line:
            if not self._data:
                return None
            data = b"\n".join(self._data).decode("utf-8", "replace")
            self._data, self._size = [], 0
            return data
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if name == b"data":
            value = value[1:] if value.startswith(b" ") else value
            self._size += len(value) + 1
            if self._size > self._limit:
                raise self._too_large()
            self._data.append(value)
        return None  # event, id, retry and unknown fields carry nothing these APIs use

    def _too_large(self) -> ResponseTooLargeError:
        return ResponseTooLargeError(
            f"a stream event is larger than max_response_bytes={self._limit}; reading stopped",
            limit=self._limit,
            status_code=200,
            provider=self._provider,
        )


# -------------------------------------------------------------------------------------- deadline


@dataclass(slots=True)
class Deadline:
    """When a call must be over, on an injectable monotonic `clock` (no deadline: `at` is None)."""

    at: float | None
    seconds: float | None
    provider: str
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def start(cls, seconds: float | None, provider: str, clock: Callable[[], float]) -> Deadline:
        return cls(None if seconds is None else clock() + seconds, seconds, provider, clock)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self.clock()

    @property
    def expired(self) -> bool:
        return self.at is not None and self.clock() >= self.at

    def check(self, *, maybe_sent: bool = True) -> None:
        if self.expired:
            raise self.error(maybe_sent=maybe_sent)

    def error(self, *, maybe_sent: bool = True) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"{self.provider}: the call did not finish within its deadline of {self.seconds:g} s "
            "(across retries and the whole response)",
            provider=self.provider,
            maybe_sent=maybe_sent,
            deadline=self.seconds or 0.0,
        )

    def allows(self, delay: float) -> bool:
        """Whether sleeping `delay` seconds still leaves time for another attempt."""
        remaining = self.remaining()
        return remaining is None or delay < remaining

    def cap(self, seconds: float | None) -> float | None:
        """A per-operation timeout no longer than the time left (at least a millisecond)."""
        remaining = self.remaining()
        if remaining is None:
            return seconds
        remaining = max(remaining, 0.001)
        return remaining if seconds is None else min(seconds, remaining)


def finite_seconds(value: float | None, field: str) -> float | None:
    """`value` if None or a positive finite number, else `ConfigurationError` naming `field`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{field}: expected a positive number of seconds or None, got {value!r}")
    return float(value)
