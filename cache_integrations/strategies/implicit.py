"""Implicit prefix caching (OpenAI, DeepSeek, Qwen, GLM, vLLM / SGLang / llama.cpp).

These providers reuse the longest prefix they saw, so the client's job is a byte-stable prefix: system
messages first, tools in a fixed order, history appended to and never rewritten. OpenAI also routes
requests to a cache machine by a hash of the prefix start combined with `prompt_cache_key`: a stable key
per conversation (or tenant) keeps one conversation's requests on the machine that holds its prefix. The
key is a hash of the caller's session id, never of content that changes between calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

from ..errors import ConfigurationError
from ..layout import layout_order, tool_order
from ..messages import ChatRequest
from ..usage import Usage
from .base import CachePlan, CallContext

__all__ = ["ImplicitPrefixStrategy", "prompt_cache_key_for"]

Retention = Literal["in_memory", "24h"]
_RETENTIONS = ("in_memory", "24h")
# Providers that route on `prompt_cache_key` and accept `prompt_cache_retention` (OpenAI's API; Azure OpenAI
# follows it). DeepSeek, Qwen, GLM and local servers reject or ignore unknown fields: send them nothing extra.
_ROUTES_ON_KEY = frozenset(("openai",))


def prompt_cache_key_for(session: str, *, namespace: str = "") -> str:
    """A `prompt_cache_key` for a session: a short hash, so ids and tenant names never leave the process."""
    digest = hashlib.sha256(f"cache-integrations/prompt-cache-key/v1\0{namespace}\0{session}".encode()).hexdigest()
    return f"ci-{digest[:24]}"


KeySource = str | Callable[[CallContext], str | None] | None


class ImplicitPrefixStrategy:
    """The layout, plus OpenAI's `prompt_cache_key` and retention where the provider takes them.

    `prompt_cache_key`: None (default) derives a key from the call's session id when there is one;
    a string is used for every call (one tenant); a callable gets the `CallContext` and returns a key
    or None. `retention`: ``"24h"`` keeps OpenAI's cache entries up to a day (``"in_memory"``: 5-10 min
    idle). `prompt_cache_options` is passed through for models with explicit caching modes (GPT-5.6:
    ``{"mode": "explicit", "ttl": "30m"}``).
    """

    def __init__(
        self,
        *,
        prompt_cache_key: KeySource = None,
        retention: Retention | None = None,
        prompt_cache_options: Mapping[str, Any] | None = None,
        key_namespace: str = "",
    ) -> None:
        if retention is not None and retention not in _RETENTIONS:
            raise ConfigurationError(f"retention: {retention!r} is not one of {list(_RETENTIONS)}")
        if prompt_cache_key is not None and not (isinstance(prompt_cache_key, str) or callable(prompt_cache_key)):
            raise ConfigurationError(
                f"prompt_cache_key: expected a string, a callable or None, got {type(prompt_cache_key).__name__}"
            )
        self._key = prompt_cache_key
        self._retention = retention
        self._options = dict(prompt_cache_options or {})
        self._namespace = key_namespace

    def cache_key(self, context: CallContext) -> str | None:
        """The `prompt_cache_key` this strategy sends for a call (None where the provider does not route on one)."""
        if context.provider not in _ROUTES_ON_KEY:
            return None
        if isinstance(self._key, str):
            return self._key
        if callable(self._key):
            return self._key(context)
        return prompt_cache_key_for(context.session, namespace=self._namespace) if context.session else None

    def plan(self, request: ChatRequest, context: CallContext) -> CachePlan:
        options: dict[str, Any] = {}
        notes: list[str] = []
        if context.provider in _ROUTES_ON_KEY:
            key = self.cache_key(context)
            if key:
                options["prompt_cache_key"] = key
                notes.append("prompt_cache_key from the session")
            if self._retention:
                options["prompt_cache_retention"] = self._retention
            if self._options:
                options["prompt_cache_options"] = dict(self._options)
        return CachePlan(
            order=layout_order(request.messages),
            tool_order=tool_order(request.tools),
            options=options,
            notes=tuple(notes),
        )

    def observe(self, request: ChatRequest, context: CallContext, plan: CachePlan, usage: Usage | None) -> None:
        return None
