"""Which cache serves an OpenAI-compatible chat request, and what it reports: one place for every dialect.

* GLM, DeepSeek and DashScope without markers: the implicit prefix cache under the endpoint's
  ``CacheRules`` (DeepSeek: 64-token units; DashScope implicit: from 256 tokens).
* OpenAI: the implicit prefix cache, and with ``Emulator(openai_physics=...)`` the routing model of
  ``physics`` (a machine per request, each with its own cache; writes on delivery; idle eviction, 24 h
  with ``prompt_cache_retention: "24h"``). GPT-5.6 and later also report ``cache_write_tokens``; with
  ``prompt_cache_options: {"mode": "explicit"}`` only ``prompt_cache_breakpoint`` parts are cached
  (``_breakpoints``).
* DashScope with ``cache_control`` markers: explicit mode (``_breakpoints``), 5 minutes, from 1024 tokens;
  the two modes are mutually exclusive per request, as Alibaba documents.

For GPT-5.6 implicit mode the docs say writes are billed (1.25x) and reported, without a recording of
the implicit case: the model reports the prompt tokens not read from cache as written, from 1024 tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._breakpoints import marked_prefixes
from ._context import RequestContext, key_fingerprint
from .physics import route_hash

if TYPE_CHECKING:
    from .emulator import Emulator
    from .faults import Endpoint

__all__ = ["CacheParamError", "ChatCache", "serve_chat_cache", "writes_cache_tokens"]

OPENAI_EXPLICIT_TTL = {"30m": 1800.0}
OPENAI_RETENTIONS = ("in_memory", "24h")
OPENAI_EXPLICIT_MIN_TOKENS = 1024
DASHSCOPE_EXPLICIT_TTL = 300.0
DASHSCOPE_EXPLICIT_MIN_TOKENS = 1024
_GPT_VERSION = re.compile(r"^gpt-(\d+)(?:\.(\d+))?")


class CacheParamError(Exception):
    """An invalid caching parameter: OpenAI's 400 ``invalid_request_error`` naming the field."""

    def __init__(self, message: str, param: str, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class ChatCache:
    """What the cache did for one request: tokens read, tokens written (None: the dialect reports no
    writes), whether the read came from explicit breakpoints, and the machine that served it."""

    cached: int
    written: int | None = None
    explicit: bool = False
    replica: int | None = None


def writes_cache_tokens(model: str) -> bool:
    """GPT-5.6 and later report (and bill) ``prompt_tokens_details.cache_write_tokens``."""
    m = _GPT_VERSION.match(model.lower())
    if m is None:
        return False
    major, minor = int(m.group(1)), int(m.group(2) or 0)
    return (major, minor) >= (5, 6)


def _openai_options(body: Mapping[str, Any]) -> tuple[str, str | None, float | None]:
    """(mode, retention, explicit ttl) of an OpenAI request, validated as OpenAI documents them."""
    retention = body.get("prompt_cache_retention")
    if retention is not None and retention not in OPENAI_RETENTIONS:
        raise CacheParamError(
            f"Invalid value: {retention!r}. Supported values are: 'in_memory' and '24h'.", "prompt_cache_retention"
        )
    options = body.get("prompt_cache_options")
    if options is None:
        return "implicit", retention, None
    if not isinstance(options, Mapping):
        raise CacheParamError("Invalid type for 'prompt_cache_options': expected an object.", "prompt_cache_options")
    mode = options.get("mode", "implicit")
    if mode not in ("implicit", "explicit"):
        raise CacheParamError(
            f"Invalid value: {mode!r}. Supported values are: 'implicit' and 'explicit'.", "prompt_cache_options.mode"
        )
    ttl = options.get("ttl")
    if ttl is not None and ttl not in OPENAI_EXPLICIT_TTL:
        raise CacheParamError(f"Invalid value: {ttl!r}. Supported values are: '30m'.", "prompt_cache_options.ttl")
    if ttl is not None and retention is not None:
        raise CacheParamError(
            "'prompt_cache_retention' and 'prompt_cache_options.ttl' cannot be used together.",
            "prompt_cache_retention",
            "invalid_request",
        )
    return str(mode), retention, OPENAI_EXPLICIT_TTL[ttl] if ttl is not None else None


def serve_chat_cache(
    emu: Emulator,
    ctx: RequestContext,
    endpoint: Endpoint,
    key: str,
    model: str,
    body: Mapping[str, Any],
    segments: list[str],
    prompt_tokens: int,
) -> ChatCache:
    """Look the request up in the right cache, arrange its write, and say what to report (under the emulator lock)."""
    fingerprint = key_fingerprint(key)
    text = "\n".join(segments)
    rules = emu.rules_for(endpoint, model)
    if endpoint == "dashscope":
        prefixes = marked_prefixes(body, "cache_control", emu.tokenizer)
        if prefixes:
            outcome, commit = emu._breakpoints.observe(
                (endpoint, fingerprint, model),
                prefixes,
                ctx.mono,
                ttl=DASHSCOPE_EXPLICIT_TTL,
                min_tokens=DASHSCOPE_EXPLICIT_MIN_TOKENS,
            )
            emu._commit_on_delivery(ctx, commit)
            return ChatCache(outcome.read_tokens, outcome.write_tokens, explicit=True)
        return ChatCache(emu._observe_prefix(ctx, (endpoint, fingerprint, model), text, prompt_tokens, rules), 0)
    if endpoint != "openai":
        return ChatCache(emu._observe_prefix(ctx, (endpoint, fingerprint, model), text, prompt_tokens, rules))

    mode, retention, explicit_ttl = _openai_options(body)
    reports_writes = writes_cache_tokens(model)
    if mode == "explicit":
        outcome, commit = emu._breakpoints.observe(
            (endpoint, fingerprint, model),
            marked_prefixes(body, "prompt_cache_breakpoint", emu.tokenizer),
            ctx.mono,
            ttl=explicit_ttl or OPENAI_EXPLICIT_TTL["30m"],
            min_tokens=OPENAI_EXPLICIT_MIN_TOKENS,
        )
        emu._commit_on_delivery(ctx, commit, force=emu.openai_physics is not None)
        return ChatCache(outcome.read_tokens, outcome.write_tokens if reports_writes else None, explicit=True)

    physics = emu.openai_physics
    scope: tuple[Any, ...] = (endpoint, fingerprint, model)
    replica: int | None = None
    if physics is not None:
        route_text = text[: emu.tokenizer.prefix_chars(text, physics.route_tokens)]
        cache_key = body.get("prompt_cache_key")
        decision = emu._router.route(
            route_hash(f"{fingerprint}\0{model}", route_text, cache_key if isinstance(cache_key, str) else None),
            ctx.mono,
        )
        replica = ctx.replica = decision.replica
        scope = (*scope, replica)
        rules = replace(rules, ttl_seconds=physics.retention_ttl if retention == "24h" else physics.idle_ttl)
    cached = emu._observe_prefix(ctx, scope, text, prompt_tokens, rules, on_delivery=physics is not None)
    written: int | None = None
    if reports_writes:
        written = prompt_tokens - cached if rules.enabled and prompt_tokens >= rules.min_tokens else 0
    return ChatCache(cached, written, replica=replica)
