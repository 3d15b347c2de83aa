"""Retry timing: bounded exponential backoff with jitter, and the server's `Retry-After`.

A `Retry-After` that cannot be used (garbage, ``nan``, ``inf``, negative) is ignored, so the normal
backoff applies; it used to reach ``time.sleep(nan)`` and crash the retry loop.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["RetryPolicy", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; a server's `Retry-After` wins, up to `max_delay`."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_delay)
        base = min(self.initial_delay * (2**attempt), self.max_delay)
        return float(base * (1 + self.jitter * random.random()))


def parse_retry_after(headers: Mapping[str, str], now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or HTTP date), or None when absent, unparseable,
    negative or not finite (``nan``, ``inf``): the caller then uses its own backoff."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        return max(when.timestamp() - now(), 0.0)
    except (OverflowError, OSError, ValueError):
        return None
