"""Per-request context handed from the emulator core to endpoint handlers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .faults import Endpoint


@dataclass
class RequestContext:
    """What a handler needs about one request; handlers fill ``parsed``/``model`` for the request log."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    seq: int
    now: float  # Unix time
    mono: float  # monotonic time for implicit-cache TTLs
    endpoint: Endpoint | None = None
    scheme: str = "http"  # how the request arrived (builds the URLs a server hands back)
    parsed: Any = None
    model: str | None = None
    usage: Any = None  # the usage block the answer reported (the final one for a stream)
    on_complete: Callable[[], None] | None = None  # run once the answer has been delivered
    replica: int | None = None  # the machine that served it (OpenAI routing physics)


def key_fingerprint(api_key: str) -> str:
    """Implicit caches are per API key (per account); keep only a hash of the key in memory."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]
