"""Batch warm-up: send one request of a cold shared prefix first, then the rest.

Implicit caches make a prefix readable only after the request that wrote it has completed (OpenAI,
DeepSeek, vLLM), so N concurrent requests that share a cold prefix all miss and all pay full price.
Sending one of them first and fanning the others out once it has finished turns N - 1 misses into hits.
That costs one request's latency, so it is done only where it pays: the shared prefix must reach the
provider's minimum cacheable length and be shared by at least two requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ..layout import apply_layout, canonical_json, stable_prefix_length
from ..messages import ChatRequest, Message, TextPart
from .base import TokenEstimator, message_chars

__all__ = ["MIN_CACHEABLE_TOKENS", "WarmupPlan", "plan_warmup"]

MIN_CACHEABLE_TOKENS: dict[str, int] = {
    # platform.openai.com/docs/guides/prompt-caching: "Caching is available for prompts containing 1024
    # tokens or more". DeepSeek caches in 64-token units from the start (api-docs.deepseek.com/guides/kv_cache),
    # vLLM / SGLang from one block: the OpenAI minimum is a safe floor for them too.
    "openai": 1024,
    "deepseek": 64,
    "dashscope": 1024,
    "zhipuai": 1024,
    "openai_compatible": 256,
    "anthropic": 1024,
    "google": 1024,
}


@dataclass(frozen=True, slots=True)
class WarmupPlan:
    """`first`: the requests to send at once (one leader per warm-able prefix, and every request that
    shares nothing worth warming); `then`: the requests to send after all of `first` have completed."""

    first: tuple[int, ...]
    then: tuple[int, ...]
    shared_prefix_tokens: tuple[int, ...] = ()

    @property
    def warms(self) -> bool:
        return bool(self.then)


def _message_key(message: Message) -> str:
    content = (
        message.content
        if isinstance(message.content, str)
        else [p.text if isinstance(p, TextPart) else repr(p) for p in message.content]
    )
    calls = [(c.name, dict(c.arguments)) for c in message.tool_calls]
    return canonical_json([message.role, content, calls, message.tool_call_id, message.name])


def _prefix_key(request: ChatRequest) -> tuple[str, int]:
    laid_out = apply_layout(request)
    stable = stable_prefix_length(laid_out.messages)
    if stable == len(laid_out.messages):
        stable -= 1  # the last message is the question; it is never part of the shared prefix
    digest = hashlib.sha256(canonical_json([t.name for t in laid_out.tools]).encode())
    chars = sum(len(t.description) + len(canonical_json(dict(t.parameters))) for t in laid_out.tools)
    for message in laid_out.messages[: max(stable, 0)]:
        digest.update(b"\x1e" + _message_key(message).encode())
        chars += message_chars(message)
    return digest.hexdigest(), chars


def plan_warmup(
    requests: Sequence[ChatRequest],
    *,
    min_tokens: int,
    estimator: TokenEstimator | None = None,
    routes: Sequence[str | None] | None = None,
) -> WarmupPlan:
    """Which requests of a batch to send first so that the others can read a shared prefix.

    `routes` (one per request) are the routing keys the requests are sent with (OpenAI's
    `prompt_cache_key`): a provider that routes on them caches a prefix per machine, so requests that
    share a prefix under different keys each need a leader of their own.
    """
    if routes is not None and len(routes) != len(requests):
        raise ValueError("plan_warmup: routes must have one entry per request")
    estimator = estimator or TokenEstimator()
    groups: dict[tuple[str, str | None], list[int]] = {}
    sizes: dict[tuple[str, str | None], int] = {}
    for i, request in enumerate(requests):
        digest, chars = _prefix_key(request)
        key = (digest, routes[i] if routes is not None else None)
        groups.setdefault(key, []).append(i)
        sizes[key] = estimator.tokens(request.model, chars)
    first: list[int] = []
    then: list[int] = []
    shared: list[int] = []
    for key, members in groups.items():
        if len(members) >= 2 and sizes[key] >= min_tokens:
            first.append(members[0])
            then.extend(members[1:])
            shared.append(sizes[key])
        else:
            first.extend(members)
    return WarmupPlan(tuple(sorted(first)), tuple(sorted(then)), tuple(shared))
