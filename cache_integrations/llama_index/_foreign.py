"""Applying a caching strategy to a foreign LlamaIndex LLM's call (OpenAI, Anthropic, GoogleGenAI, OpenAILike, ...).

`with_prompt_caching` reduces every call of a wrapped LLM to a `LlamaCall`: the caller's `ChatMessage`s, the
tools as the LLM's own `_prepare_chat_with_tools` formatted them, and the call's other keyword arguments.
`LlamaCachingCoordinator.prepare` converts it to the neutral request, asks the provider's strategy (a core
`StrategyBook`) for a plan, and applies the plan to the caller's own objects in three steps:

1. generic: messages in the plan's order (system first), tools in the plan's order, and the plan's options
   (``prompt_cache_key``, ``prompt_cache_retention``, ...) as call keywords, unless the call or the LLM's
   ``additional_kwargs`` already set them (the caller's own value always wins);
2. provider-specific: `PROVIDER_APPLIERS[provider]` (Anthropic breakpoints as `CachePoint` blocks, a Gemini
   explicit cache through GoogleGenAI's ``cached_content``), registered by the modules that implement them;
3. the wrapped class's own mechanics (`_fit_to_class`): what llama-index-llms-openai needs so that the options
   reach the request body and streams report usage.

Nothing is re-encoded: the LLM formats and sends the request as it always does. The caller's messages are
never modified (changed messages are copies).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from llama_index.core.base.llms.types import CachePoint, ChatMessage, MessageRole, TextBlock, ToolCallBlock

from ..errors import InvalidRequestError
from ..messages import ChatRequest, Message, ToolCall, ToolDefinition
from ..strategies import (
    CachePlan,
    CallContext,
    Provider,
    StrategyBook,
    TokenEstimator,
    provider_from_hints,
    request_chars,
)
from ._convert import _ROLES, messages_from_llama_index, parse_tool_kwargs, tool_from_llama_index
from .handlers import usage_from_llama_index

__all__ = [
    "PROVIDER_APPLIERS",
    "LlamaCachingCoordinator",
    "LlamaCall",
    "PreparedCall",
    "detect_provider",
]

logger = logging.getLogger("cache_integrations.llama_index")

_BASE_URL_ATTRS = ("api_base", "base_url", "azure_endpoint", "api_url", "endpoint")
_LLMS_PACKAGE = "llama_index.llms."


# -- provider detection ---------------------------------------------------------------------------


def _base_url(llm: Any) -> str | None:
    for attr in _BASE_URL_ATTRS:
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _names(llm: Any) -> list[str]:
    """What an LLM says of itself, most specific first: the llama-index-llms-* package of each class in
    its MRO (``deepseek`` before ``openai_like`` before ``openai``), its `class_name()`, its class names."""
    names: list[str] = []
    for cls in type(llm).__mro__:
        module = getattr(cls, "__module__", "") or ""
        if module.startswith(_LLMS_PACKAGE):
            names.append(module[len(_LLMS_PACKAGE) :].split(".", 1)[0])
    with contextlib.suppress(Exception):  # a class_name() that needs arguments or raises: skip it
        names.append(str(llm.class_name()).lower().removesuffix("_llm"))
    names.extend(cls.__name__ for cls in type(llm).__mro__)
    return names


def detect_provider(llm: Any) -> Provider:
    """The provider behind a LlamaIndex LLM, from its package, `class_name()` and class (through the core
    `provider_from_hints`), where its base URL (``api_base``, ``base_url``, ...) names a known host, wins.

    llama-index-llms-openai's `OpenAI` pointed at another host is an OpenAI-compatible server (vLLM, a
    gateway, the emulator): it caches implicitly but gets no OpenAI-only fields.
    """
    base_url = _base_url(llm)
    for name in _names(llm):
        provider = provider_from_hints(name=name, base_url=base_url)
        if provider != "unknown":
            return provider
    return provider_from_hints(base_url=base_url)


def _model_name(llm: Any) -> str:
    for attr in ("model", "model_name"):
        value = getattr(llm, attr, None)
        if isinstance(value, str) and value:
            return value
    try:
        return str(llm.metadata.model_name)
    except Exception:  # metadata that raises for unknown models (llama-index-llms-zhipuai)
        return type(llm).__name__


# -- the call ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaCall:
    """One call to a foreign LlamaIndex LLM, in the caller's own objects.

    `llm` is the LLM that sends it: appliers read its class and fields to pick the mechanism (a `CachePoint`
    block, a generation-config field, a request keyword). `messages` are the call's messages (a `complete`
    prompt is one user message, and `completion` is True: only `settings` are applied then). `tools` are the
    tools as the LLM's `_prepare_chat_with_tools` formatted them (provider dicts or SDK objects), None when
    the call passes none; `settings` the call's other keyword arguments. `stream` says whether the call
    streams; `session` is the conversation id, if any.
    """

    llm: Any
    messages: tuple[ChatMessage, ...]
    tools: tuple[Any, ...] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    session: str | None = None
    stream: bool = False
    completion: bool = False

    @classmethod
    def of(
        cls,
        llm: Any,
        messages: Sequence[ChatMessage],
        kwargs: Mapping[str, Any],
        *,
        session: str | None = None,
        stream: bool = False,
        completion: bool = False,
    ) -> LlamaCall:
        settings = dict(kwargs)
        tools = settings.pop("tools", None)
        return cls(llm, tuple(messages), None if tools is None else tuple(tools), settings, session, stream, completion)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments to call the LLM with (``tools`` included when the call had them)."""
        out = dict(self.settings)
        if self.tools is not None:
            out["tools"] = list(self.tools)
        return out


@dataclass(frozen=True)
class PreparedCall:
    call: LlamaCall
    request: ChatRequest
    context: CallContext
    plan: CachePlan | None
    chars: int


PROVIDER_APPLIERS: dict[str, Callable[[LlamaCall, CachePlan], LlamaCall]] = {}
"""Provider-specific application of a plan, after the generic reordering and options: how that provider's
LlamaIndex class takes it. An applier gets the call (its `llm` says which class sends it) and the plan, and
returns the call to send, changing copies only. Register one per provider, e.g.
``PROVIDER_APPLIERS["anthropic"] = place_cache_points`` (Anthropic: `CachePoint` blocks after the plan's
breakpoints) or ``PROVIDER_APPLIERS["google"] = use_cached_content`` (GoogleGenAI: ``cached_content`` and no
system prompt or tools next to it). A plan option an applier consumes itself (``cached_content``) should be
popped from ``call.settings`` so it is not also passed as a keyword."""


# -- planning: the neutral request of a call ----------------------------------------------------------


def _planning_message(message: ChatMessage) -> Message:
    """A message the core can plan with even when `messages_from_llama_index` cannot carry it (audio,
    documents, citations): its role, its text (other blocks as a marker) and its tool calls."""
    role_value = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    role = _ROLES.get(role_value, "user")
    text = "".join(b.text if isinstance(b, TextBlock) else f"[{b.block_type}]" for b in message.blocks)
    calls = tuple(
        ToolCall(b.tool_call_id or "", b.tool_name, parse_tool_kwargs(b.tool_kwargs))
        for b in message.blocks
        if isinstance(b, ToolCallBlock) and role == "assistant"
    )
    call_id = message.additional_kwargs.get("tool_call_id") if role == "tool" else None
    return Message(role, text, tool_calls=calls, tool_call_id=str(call_id) if call_id else None)


def _planning_messages(messages: Sequence[ChatMessage]) -> tuple[Message, ...] | None:
    """The neutral messages to plan with; None for input that is not ChatMessages (the LLM says what is wrong)."""
    if not all(isinstance(m, ChatMessage) for m in messages):
        return None
    try:
        return messages_from_llama_index(messages)
    except InvalidRequestError:
        return tuple(_planning_message(m) for m in messages)


def _planning_tool(tool: Any) -> ToolDefinition:
    try:
        return tool_from_llama_index(tool)
    except InvalidRequestError:  # a provider SDK object (google-genai's types.Tool): only its name counts
        name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
        return ToolDefinition(str(name or type(tool).__name__))


# -- applying a plan -----------------------------------------------------------------------------------


def _apply(call: LlamaCall, plan: CachePlan) -> LlamaCall:
    """Reorder the caller's objects by the plan and add the options neither the call nor the LLM set."""
    messages = call.messages
    if not call.completion and len(plan.order) == len(messages) and plan.order != tuple(range(len(messages))):
        messages = tuple(messages[i] for i in plan.order)
    tools = call.tools
    if tools is not None and len(plan.tool_order) == len(tools):
        tools = tuple(tools[i] for i in plan.tool_order)
    settings = dict(call.settings)
    own = getattr(call.llm, "additional_kwargs", None)
    own = own if isinstance(own, Mapping) else {}
    for key, value in plan.options.items():
        if key not in settings and key not in own:
            settings[key] = value
    return replace(call, messages=messages, tools=tools, settings=settings)


def _class_is(llm: Any, module: str, name: str) -> bool:
    return any(c.__module__ == module and c.__name__ == name for c in type(llm).__mro__)


@functools.cache
def _sdk_parameters(endpoint: str) -> frozenset[str]:
    """Keyword parameters the installed openai SDK's `create` takes for an endpoint (empty if unknown)."""
    try:
        if endpoint == "chat":
            from openai.resources.chat.completions import Completions as Create
        elif endpoint == "responses":
            from openai.resources.responses import Responses as Create  # type: ignore[assignment]
        else:
            from openai.resources.completions import Completions as Create  # type: ignore[assignment]
        return frozenset(inspect.signature(Create.create).parameters)
    except Exception:  # no openai SDK, or one laid out differently: send the options in extra_body
        return frozenset()


def _without_cache_markers(message: ChatMessage) -> ChatMessage:
    if not any(isinstance(b, CachePoint) for b in message.blocks) and "cache_control" not in message.additional_kwargs:
        return message
    blocks = [b for b in message.blocks if not isinstance(b, CachePoint)]
    extra = {k: v for k, v in message.additional_kwargs.items() if k != "cache_control"}
    return message.model_copy(update={"blocks": blocks, "additional_kwargs": extra})


def _fit_to_class(call: LlamaCall, added: Sequence[str]) -> LlamaCall:
    """What the wrapped class needs for the plan to reach the wire; other classes are left as they are.

    llama-index-llms-openai (`OpenAI`, `OpenAILike`, `AzureOpenAI`, `OpenAIResponses` and their subclasses):

    - options the installed openai SDK does not take as keywords go in ``extra_body`` (an older SDK without
      ``prompt_cache_retention``, the legacy completions endpoint);
    - streams ask for usage (``stream_options.include_usage``): without it the handlers see no cached tokens;
    - `CachePoint` blocks and ``cache_control`` markers are dropped from copies of the messages: these
      providers cache implicitly, and the class rejects the blocks ("Unsupported content block type").
    """
    chat_class = _class_is(call.llm, "llama_index.llms.openai.base", "OpenAI")
    responses_class = _class_is(call.llm, "llama_index.llms.openai.responses", "OpenAIResponses")
    if not (chat_class or responses_class):
        return call
    settings = dict(call.settings)
    if responses_class:
        endpoint = "responses"
    else:
        use_chat = settings.get("use_chat_completions")
        if use_chat is None:
            try:
                use_chat = call.llm.metadata.is_chat_model
            except Exception:
                use_chat = True
        endpoint = "chat" if use_chat else "completions"
    accepted = _sdk_parameters(endpoint)
    body = {key: settings.pop(key) for key in added if key in settings and key not in accepted}
    if body:
        settings["extra_body"] = {**body, **(settings.get("extra_body") or {})}
    own = getattr(call.llm, "additional_kwargs", None) or {}
    if call.stream and chat_class and "stream_options" not in settings and "stream_options" not in own:
        settings["stream_options"] = {"include_usage": True}
    messages = tuple(_without_cache_markers(m) for m in call.messages)
    return replace(call, messages=messages, settings=settings)


class LlamaCachingCoordinator:
    """Plans and applies caching for one wrapped LLM; learns from reported usage.

    The framework-neutral part (a strategy per provider, the token estimator) is a core `StrategyBook`;
    this class converts LlamaIndex calls to neutral requests and applies plans back. Thread-safe.
    """

    def __init__(self, **options: Any) -> None:
        self.book = StrategyBook(**options)
        self._announced: set[str] = set()
        self._lock = threading.Lock()

    @property
    def provider(self) -> Provider | None:
        """The provider the caller forced, if any (else each call's LLM is inspected)."""
        return self.book.provider

    @property
    def estimator(self) -> TokenEstimator:
        return self.book.estimator

    def _announce(self, provider: str, llm: Any) -> None:
        with self._lock:
            if provider in self._announced:
                return
            self._announced.add(provider)
        if provider == "unknown":
            logger.debug(
                "prompt caching: no strategy for %s; applying the cache-friendly layout only", type(llm).__name__
            )

    def prepare(self, call: LlamaCall) -> PreparedCall:
        provider = self.book.provider or detect_provider(call.llm)
        self._announce(provider, call.llm)
        name = str(call.settings.get("model") or _model_name(call.llm))
        messages = _planning_messages(call.messages)
        request = ChatRequest(
            model=name, messages=messages or (), tools=tuple(_planning_tool(t) for t in call.tools or ())
        )
        context = CallContext(provider=provider, model=name, session=call.session)
        plan = self.book.plan(request, context) if messages else None
        if plan is None:
            return PreparedCall(_fit_to_class(call, ()), request, context, None, request_chars(request))
        applied = _apply(call, plan)
        specific = PROVIDER_APPLIERS.get(provider)
        if specific is not None:
            applied = specific(applied, plan)
        added = [k for k in applied.settings if k not in call.settings]
        return PreparedCall(_fit_to_class(applied, added), request, context, plan, request_chars(request))

    def observe(self, prepared: PreparedCall, response: Any) -> None:
        """Feed a call's reported usage back to its strategy (None or a response without usage: no usage)."""
        usage = usage_from_llama_index(response) if response is not None else None
        self.book.observe(prepared.request, prepared.context, prepared.plan, usage, prepared.chars)
