"""What every caching strategy shares: the call's context, the plan it returns, and provider detection.

A strategy takes the neutral request (`ChatRequest`, after the framework adapter converted the caller's
messages) and says what to change so the provider's cache can serve it: the cache-friendly order of
messages and tools, request options (`prompt_cache_key`, retention), Anthropic breakpoints, or a Gemini
explicit cache that replaces the prefix. Adapters apply the plan to the framework's own objects (LangChain
messages, a `ModelRequest`, LlamaIndex `ChatMessage`s) and send them through the caller's model, so the
provider-specific rules live here once and both frameworks share them.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ..layout import canonical_json
from ..messages import ChatRequest, Message, TextPart
from ..usage import Usage

__all__ = [
    "PROVIDERS",
    "SESSION_KEYS",
    "Breakpoint",
    "CachePlan",
    "CachingStrategy",
    "CallContext",
    "TokenEstimator",
    "provider_from_hints",
    "request_chars",
    "session_from_metadata",
]

Provider = Literal["openai", "anthropic", "google", "zhipuai", "deepseek", "dashscope", "openai_compatible", "unknown"]
PROVIDERS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "google",
    "zhipuai",
    "deepseek",
    "dashscope",
    "openai_compatible",
    "unknown",
)

# LangChain's `ls_provider`, LlamaIndex class names and base-URL hosts, to one provider name each.
_PROVIDER_ALIASES: dict[str, Provider] = {
    "openai": "openai",
    "azure": "openai",
    "azure_openai": "openai",
    "anthropic": "anthropic",
    "google_genai": "google",
    "google": "google",
    "gemini": "google",
    "googlegenai": "google",
    "zhipuai": "zhipuai",
    "zai": "zhipuai",
    "glm": "zhipuai",
    "deepseek": "deepseek",
    "dashscope": "dashscope",
    "tongyi": "dashscope",
    "qwen": "dashscope",
    "vllm": "openai_compatible",
    "sglang": "openai_compatible",
    "llamacpp": "openai_compatible",
    "openai_like": "openai_compatible",
    "openailike": "openai_compatible",
}
_HOSTS: tuple[tuple[str, Provider], ...] = (
    ("api.openai.com", "openai"),
    ("openai.azure.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "google"),
    ("open.bigmodel.cn", "zhipuai"),
    ("api.z.ai", "zhipuai"),
    ("api.deepseek.com", "deepseek"),
    ("dashscope", "dashscope"),
)


def provider_from_hints(*, name: str | None = None, base_url: str | None = None) -> Provider:
    """The provider a model talks to, from what its class says of itself and where it sends requests.

    `name` is LangChain's ``ls_provider`` or a class or package name; `base_url` wins when it names a
    known host, and an OpenAI client pointed at any other host is an OpenAI-compatible server (vLLM,
    SGLang, llama.cpp, a gateway) that caches implicitly but takes no OpenAI-only options.
    """
    key = (name or "").lower().replace("-", "_").replace(" ", "")
    provider = _PROVIDER_ALIASES.get(key, "unknown")
    if base_url:
        host = base_url.lower()
        for needle, known in _HOSTS:
            if needle in host:
                return known
        if provider == "openai":
            return "openai_compatible"
    return provider


SESSION_KEYS: tuple[str, ...] = ("session_id", "thread_id", "conversation_id")
"""Keys that name a conversation or tenant in a run's metadata (LangChain's metadata and configurable,
LlamaIndex's instrument tags), in the order they are looked up."""


def session_from_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    """The conversation id in a run's metadata, configurable or instrument tags (`session_id`,
    `thread_id`, `conversation_id`), or None. Both adapters and both frameworks' handlers read
    sessions through it, so a session means the same thing to the caching layer and the diagnostics."""
    if not metadata:
        return None
    return next((str(metadata[k]) for k in SESSION_KEYS if metadata.get(k)), None)


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a strategy knows about a call besides its messages.

    `session` is the caller's conversation or tenant id (a thread id from the run's config, a
    `session_id` in its metadata) when one is known; strategies never derive routing keys from content
    that varies between calls.

    `endpoint` is where and as whom the caller's model sends (`strategies.gemini.GeminiEndpoint`, read from a
    Gemini client), for strategies that act on the provider themselves (Gemini explicit caches); None when
    unknown. It holds a credential: never shown in reprs. `exact` says the neutral request carries everything
    the model will send (the adapter converted every message and tool without loss); a strategy that puts part
    of the request in a provider cache needs that.
    """

    provider: Provider
    model: str
    session: str | None = None
    endpoint: Any = field(default=None, repr=False, compare=False)
    exact: bool = True
    caller_markers: int = 0
    """Cache markers the caller placed outside the messages (on a tool definition), which count toward a
    provider's limit (Anthropic's 4) like the `cache_point` messages do."""


@dataclass(frozen=True, slots=True)
class Breakpoint:
    """A cache marker to place: after the tools, after the system prompt, or after message `index`.

    `index` counts the request's messages after layout, system messages included.
    """

    where: Literal["tools", "system", "message"]
    index: int | None = None
    ttl: Literal["5m", "1h"] = "5m"


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What to change in a request.

    `order` is the cache-friendly order of the caller's messages (indices into them; system messages
    first); `tool_order` the same for tools. `options` are request options to add (`prompt_cache_key`,
    `prompt_cache_retention`, `cached_content`). With `drop_system_and_tools`, an explicit cache holds the
    system prompt, the tools and tool choice, and the first `cached_messages` non-system messages (after
    `order`): none of those are sent again. `notes` say why, for a debug line.
    """

    order: tuple[int, ...]
    tool_order: tuple[int, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    breakpoints: tuple[Breakpoint, ...] = ()
    cached_messages: int = 0
    drop_system_and_tools: bool = False
    cache: Any = None
    """The explicit-cache decision (`cache_integrations.explicit.CacheDecision`): its ``use`` goes in the
    response's metadata (writes and storage booked); the strategy settles or recovers it."""
    notes: tuple[str, ...] = ()

    @property
    def reorders(self) -> bool:
        return self.order != tuple(range(len(self.order))) or self.tool_order != tuple(range(len(self.tool_order)))


@runtime_checkable
class CachingStrategy(Protocol):
    """Turns a neutral request into a `CachePlan`; `observe` learns from what the provider reported."""

    def plan(self, request: ChatRequest, context: CallContext) -> CachePlan: ...

    def observe(self, request: ChatRequest, context: CallContext, plan: CachePlan, usage: Usage | None) -> None: ...


def message_chars(message: Message) -> int:
    """Characters a message contributes to the prompt (text, tool calls, reasoning)."""
    if isinstance(message.content, str):
        size = len(message.content)
    else:
        size = sum(len(p.text) if isinstance(p, TextPart) else 1024 for p in message.content)
    for call in message.tool_calls:
        size += len(call.name) + sum(len(str(k)) + len(str(v)) for k, v in call.arguments.items()) + 16
    return size + len(message.reasoning or "") + 8


def request_chars(request: ChatRequest) -> int:
    """Characters of a request's prompt (tools and messages): what the token estimator is calibrated on."""
    tools = sum(len(t.name) + len(t.description) + len(canonical_json(dict(t.parameters))) for t in request.tools)
    return tools + sum(message_chars(m) for m in request.messages)


class TokenEstimator:
    """Tokens of a prompt from its characters, calibrated per model by the input tokens providers report.

    Starts at 4 characters per token (English prose on GPT / Claude / Gemini tokenizers), and moves
    towards each model's observed ratio, so "is this prefix above the provider's minimum" gets right
    after the first call instead of trusting a constant. Thread-safe.
    """

    def __init__(self, chars_per_token: float = 4.0) -> None:
        self._default = chars_per_token
        self._ratio: dict[str, float] = {}
        self._lock = threading.Lock()

    def tokens(self, model: str, chars: int) -> int:
        return int(chars / self._ratio.get(model, self._default))

    def calibrate(self, model: str, chars: int, reported_input_tokens: int) -> None:
        if chars <= 0 or reported_input_tokens <= 0:
            return
        observed = chars / reported_input_tokens
        if not math.isfinite(observed) or not 0.5 <= observed <= 20:
            return  # images, files or a mismatched count: not a text ratio
        with self._lock:
            current = self._ratio.get(model)
            self._ratio[model] = observed if current is None else 0.7 * current + 0.3 * observed
