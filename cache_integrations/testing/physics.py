"""OpenAI's prompt-cache routing, as a model of the published rules (opt-in: ``Emulator(openai_physics=...)``).

This is a model written from OpenAI's documentation, not a description of OpenAI's machines. What the
docs say (platform.openai.com/docs/guides/prompt-caching and Azure OpenAI's copy of it, read 2026-11):

* requests are routed to a machine by a hash of the prompt's initial prefix, "typically the first 256
  tokens", combined with ``prompt_cache_key`` when one is sent;
* when requests for the same prefix and key exceed "approximately 15 requests per minute", some
  overflow to additional machines, where they find no cache;
* a prefix is cached once the request that processed it has completed, so a cold burst misses;
* in-memory entries are evicted after 5-10 minutes of inactivity (always within an hour);
  ``prompt_cache_retention: "24h"`` keeps them up to 24 hours;
* caching starts at 1024 tokens and hits are reported in 128-token increments
  (``usage.prompt_tokens_details.cached_tokens``; the emulator's ``OPENAI_RULES``).

Where the docs give no number, the model fixes one, so that tests are deterministic:

* ``replicas`` machines per API key and model, each with its own prefix cache (default 8);
* the home machine of a request is ``sha256(first route_tokens tokens, prompt_cache_key) % replicas``;
* the rate is counted per prefix+key over a sliding ``rate_window`` (60 s) of the *emulator clock*;
  the n-th request above ``max_requests_per_window`` in the window goes to the n-th other machine in
  turn (home+1, home+2, ..., wrapping around and skipping home), so overflow spreads the prefix over
  the fleet instead of piling onto one neighbour;
* an entry is evicted after ``idle_ttl`` seconds without a hit (300 s, the low end of the docs' 5-10
  minutes; a recorded gpt-5-nano prefix idle for 360 s was gone), ``retention_ttl`` (24 h) for requests
  that send ``prompt_cache_retention: "24h"``;
* cacheability is an event, not a delay: a prompt is written when its answer is delivered (the serving
  layer marks it just before the client can read the answer's end), whatever the clock says. So a
  request sent after another one's answer was received can read it, and requests in flight together
  cannot, under any thread scheduling.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

__all__ = ["OpenAIPhysics", "RouteDecision"]


@dataclass(frozen=True)
class OpenAIPhysics:
    """Knobs of the OpenAI routing model (see the module docstring for what is published and what is chosen)."""

    replicas: int = 8
    route_tokens: int = 256
    max_requests_per_window: int = 15
    rate_window: float = 60.0
    idle_ttl: float = 300.0
    retention_ttl: float = 24 * 3600.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError("OpenAIPhysics.replicas must be >= 1")
        if self.route_tokens < 1:
            raise ValueError("OpenAIPhysics.route_tokens must be >= 1")
        if self.max_requests_per_window < 1:
            raise ValueError("OpenAIPhysics.max_requests_per_window must be >= 1")
        if self.rate_window <= 0 or self.idle_ttl <= 0 or self.retention_ttl <= 0:
            raise ValueError("OpenAIPhysics.rate_window, idle_ttl and retention_ttl must be > 0 seconds")


@dataclass(frozen=True)
class RouteDecision:
    """Where one request went: its home machine, the machine that served it, and whether it overflowed."""

    home: int
    replica: int
    overflow: bool


def route_hash(scope: str, prefix: str, prompt_cache_key: str | None) -> int:
    """Stable across processes (never Python's randomised ``hash``): the same prefix and key always route alike."""
    material = "\0".join((scope, prefix, "" if prompt_cache_key is None else "k:" + prompt_cache_key))
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


class Router:
    """Per prefix+key request windows and the machine each request lands on. Not thread-safe on its own:
    the emulator calls it under its lock."""

    MAX_IDLE_ROUTES = 4096

    def __init__(self, physics: OpenAIPhysics) -> None:
        self.physics = physics
        self._windows: dict[int, deque[float]] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def _sweep(self, now: float) -> None:
        """Forget routes with no request in the window (bounded memory under many distinct prefixes/keys)."""
        horizon = now - self.physics.rate_window
        for route in [r for r, w in self._windows.items() if not w or w[-1] <= horizon]:
            del self._windows[route]

    def clear(self) -> None:
        self._windows.clear()

    def route(self, route: int, now: float) -> RouteDecision:
        """Count one request of ``route`` (a `route_hash`) at emulator time ``now`` and pick its machine."""
        physics = self.physics
        if len(self._windows) >= self.MAX_IDLE_ROUTES and route not in self._windows:
            self._sweep(now)
        window = self._windows.setdefault(route, deque())
        while window and window[0] <= now - physics.rate_window:
            window.popleft()
        seen = len(window)
        window.append(now)
        home = route % physics.replicas
        if seen < physics.max_requests_per_window or physics.replicas == 1:
            return RouteDecision(home, home, False)
        nth = seen - physics.max_requests_per_window  # 0 for the first request over the rate
        step = 1 + nth % (physics.replicas - 1)
        return RouteDecision(home, (home + step) % physics.replicas, True)
