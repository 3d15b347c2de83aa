"""Applying a caching strategy to a foreign LangChain chat model's call (ChatOpenAI, ChatAnthropic, ...).

Both `with_prompt_caching` (a wrapping chat model) and `PromptCachingMiddleware` (an agent middleware) reduce
a call to the same `ForeignCall`: the system messages, the other messages, the tools as the model will bind
them, and the call's settings (keyword arguments). `CachingCoordinator.prepare` converts it to the neutral
request, asks the provider's strategy for a plan, and applies the plan to the caller's own objects; nothing
is re-encoded, so the model sends exactly what it would have sent, in the cache-friendly order and with the
cache options its provider takes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

from ..errors import InvalidRequestError
from ..layout import canonical_json
from ..messages import ChatRequest, Message, ToolCall, ToolDefinition
from ..strategies import (
    CachePlan,
    CallContext,
    Provider,
    StrategyBook,
    TokenEstimator,
    message_chars,
    provider_from_hints,
)
from ._convert import messages_from_langchain, tool_from_langchain, usage_from_langchain

__all__ = [
    "PROVIDER_APPLIERS",
    "CachingCoordinator",
    "ForeignCall",
    "PreparedCall",
    "detect_provider",
    "session_from_metadata",
    "tool_cache_control",
]

logger = logging.getLogger("cache_integrations.langchain")

SESSION_KEYS = ("session_id", "thread_id", "conversation_id")
_BASE_URL_ATTRS = ("openai_api_base", "base_url", "anthropic_api_url", "api_base", "endpoint")


def session_from_metadata(metadata: Mapping[str, Any] | None) -> str | None:
    """The conversation id in a run's metadata or configurable (`session_id`, `thread_id`, ...)."""
    if not metadata:
        return None
    return next((str(metadata[k]) for k in SESSION_KEYS if metadata.get(k)), None)


def _model_name(model: BaseChatModel) -> str:
    try:
        name = model._get_ls_params().get("ls_model_name")
    except Exception:  # a model whose LangSmith params need arguments: fall back to its fields
        name = None
    for attr in ("model_name", "model"):
        name = name or getattr(model, attr, None)
    return str(name or type(model).__name__)


def detect_provider(model: BaseChatModel) -> Provider:
    """The provider behind a LangChain chat model: its `ls_provider`, then its class, then its base URL."""
    try:
        ls_provider = model._get_ls_params().get("ls_provider")
    except Exception:
        ls_provider = None
    base_url = next((str(v) for a in _BASE_URL_ATTRS if (v := getattr(model, a, None))), None)
    provider = provider_from_hints(name=ls_provider, base_url=base_url)
    if provider == "unknown":
        provider = provider_from_hints(name=type(model).__name__.removeprefix("Chat"), base_url=base_url)
    return provider


@dataclass(frozen=True)
class ForeignCall:
    """One call to a foreign model, in the caller's own LangChain objects."""

    system: tuple[BaseMessage, ...]
    messages: tuple[BaseMessage, ...]
    tools: tuple[Any, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    session: str | None = None


@dataclass(frozen=True)
class PreparedCall:
    call: ForeignCall
    request: ChatRequest
    context: CallContext
    plan: CachePlan | None
    chars: int


def _text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return "".join(
        b if isinstance(b, str) else str(b.get("text") or "") if b.get("type") == "text" else canonical_json(b)
        for b in content
        if isinstance(b, str | dict)
    )


def _planning_message(message: BaseMessage) -> Message:
    """A message the core can plan with even when `messages_from_langchain` cannot carry it (blocks only
    some providers take): its role, its text (other blocks as their JSON) and its tool calls."""
    role = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}.get(message.type, "user")
    calls: tuple[ToolCall, ...] = ()
    if isinstance(message, AIMessage):
        calls = tuple(ToolCall(tc.get("id") or "", tc["name"], tc.get("args") or {}) for tc in message.tool_calls)
    tool_call_id = message.tool_call_id if isinstance(message, ToolMessage) else None
    return Message(role, _text_of(message), tool_calls=calls, tool_call_id=tool_call_id)  # type: ignore[arg-type]


def _planning_messages(messages: Sequence[BaseMessage]) -> tuple[Message, ...]:
    try:
        return messages_from_langchain(messages)
    except InvalidRequestError:
        return tuple(_planning_message(m) for m in messages)


def _planning_tool(tool: Any) -> ToolDefinition:
    try:
        return tool_from_langchain(tool)
    except InvalidRequestError:
        name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
        return ToolDefinition(str(name or type(tool).__name__))


def tool_cache_control(tool: Any) -> Any:
    """The caller's own ``cache_control`` on a tool (a dict tool's key, a `BaseTool`'s ``extras``), if any."""
    if isinstance(tool, Mapping):
        return tool.get("cache_control")
    extras = getattr(tool, "extras", None)
    return extras.get("cache_control") if isinstance(extras, Mapping) else None


def _top_level_cache_control(call: ForeignCall, model: BaseChatModel) -> Any:
    """A request-level ``cache_control`` (Anthropic's automatic caching) the caller set, per call or on the model."""
    model_kwargs = getattr(model, "model_kwargs", None)
    fallback = model_kwargs.get("cache_control") if isinstance(model_kwargs, Mapping) else None
    return call.settings.get("cache_control", fallback)


def _chars(request: ChatRequest) -> int:
    tools = sum(len(t.name) + len(t.description) + len(canonical_json(dict(t.parameters))) for t in request.tools)
    return tools + sum(message_chars(m) for m in request.messages)


class CachingCoordinator:
    """Plans and applies caching for one wrapped model or middleware; learns from reported usage.

    The framework-neutral part (a strategy per provider, the token estimator) is a core `StrategyBook`;
    this class converts LangChain calls to neutral requests and applies plans back. Thread-safe.
    """

    def __init__(self, **options: Any) -> None:
        self.book = StrategyBook(**options)
        self._announced: set[str] = set()
        self._lock = threading.Lock()

    @property
    def provider(self) -> Provider | None:
        """The provider the caller forced, if any (else each call's model is inspected)."""
        return self.book.provider

    @property
    def estimator(self) -> TokenEstimator:
        return self.book.estimator

    def _announce(self, provider: str, model: BaseChatModel) -> None:
        with self._lock:
            if provider in self._announced:
                return
            self._announced.add(provider)
        if provider == "unknown":
            logger.debug(
                "prompt caching: no strategy for %s; applying the cache-friendly layout only", type(model).__name__
            )

    def prepare(self, model: BaseChatModel, call: ForeignCall) -> PreparedCall:
        provider = self.book.provider or detect_provider(model)
        self._announce(provider, model)
        name = str(call.settings.get("model") or _model_name(model))
        messages = (*call.system, *call.messages)
        planning = _planning_messages(messages) if messages else ()
        if planning and _top_level_cache_control(call, model):
            # The caller's automatic caching marks the request's end: a marker of theirs the strategy counts.
            planning = (*planning[:-1], replace(planning[-1], cache_point=True))
        request = ChatRequest(model=name, messages=planning, tools=tuple(_planning_tool(t) for t in call.tools))
        markers = sum(1 for t in call.tools if tool_cache_control(t) is not None)
        context = CallContext(provider=provider, model=name, session=call.session, caller_markers=markers)
        plan = self.book.plan(request, context)
        if plan is None:
            return PreparedCall(call, request, context, None, _chars(request))
        applied = _apply(call, plan)
        specific = PROVIDER_APPLIERS.get(provider)
        if specific is not None:
            applied = specific(applied, plan)
        return PreparedCall(applied, request, context, plan, _chars(request))

    def observe(self, prepared: PreparedCall, message: BaseMessage | None) -> None:
        meta = getattr(message, "usage_metadata", None)
        usage = usage_from_langchain(meta, getattr(message, "response_metadata", None)) if meta else None
        self.book.observe(prepared.request, prepared.context, prepared.plan, usage, prepared.chars)


PROVIDER_APPLIERS: dict[str, Callable[[ForeignCall, CachePlan], ForeignCall]] = {}
"""Provider-specific application of a plan (Anthropic breakpoints, a Gemini explicit cache), after the
generic reordering and options: how that provider's LangChain class takes them."""


def _apply(call: ForeignCall, plan: CachePlan) -> ForeignCall:
    """Reorder the caller's objects by the plan and add the options the caller did not set.

    A call with a separate system prompt (an agent's `ModelRequest`) already sends it first; its messages
    keep their order. A plain message list gets the plan's order (system messages hoisted).
    """
    messages = call.messages
    if not call.system and plan.order and plan.order != tuple(range(len(messages))):
        messages = tuple(messages[i] for i in plan.order)
    tools = tuple(call.tools[i] for i in plan.tool_order) if plan.tool_order else call.tools
    settings = dict(call.settings)
    for key, value in plan.options.items():
        settings.setdefault(key, value)
    return replace(call, messages=messages, tools=tools, settings=settings)
