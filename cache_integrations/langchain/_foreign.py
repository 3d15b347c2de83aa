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
from ..messages import ChatRequest, Message, ToolCall, ToolChoice, ToolDefinition, tool_choice_from_spec
from ..server_diagnostics import ResponseChain
from ..strategies import (
    SESSION_KEYS,
    CachePlan,
    CallContext,
    Provider,
    StrategyBook,
    TokenEstimator,
    cached_content_gone,
    client_endpoint,
    provider_from_hints,
    request_chars,
    session_from_metadata,
    tool_choice_from_gemini_config,
)
from ._convert import messages_from_langchain, tool_from_langchain, usage_from_langchain
from ._server_diagnostics import ask_for_diagnostics, asked, record_response

__all__ = [
    "PROVIDER_APPLIERS",
    "SESSION_KEYS",
    "CachingCoordinator",
    "ForeignCall",
    "PreparedCall",
    "detect_provider",
    "session_from_metadata",
    "tool_cache_control",
]

logger = logging.getLogger("cache_integrations.langchain")

_BASE_URL_ATTRS = ("openai_api_base", "base_url", "anthropic_api_url", "api_base", "endpoint")


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
    """A call ready to send: `call` with the plan applied; `original` the call as the caller made it."""

    call: ForeignCall
    request: ChatRequest
    context: CallContext
    plan: CachePlan | None
    chars: int
    original: ForeignCall | None = None

    @property
    def cache_use(self) -> Any:
        """The explicit cache the call is sent against (`CacheUse`), or None."""
        decision = self.plan.cache if self.plan is not None else None
        return getattr(decision, "use", None)


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
    return _converted_messages(messages)[0]


def _converted_messages(messages: Sequence[BaseMessage]) -> tuple[tuple[Message, ...], bool]:
    """The neutral messages, and whether they carry everything (False: some were reduced to their text)."""
    try:
        return messages_from_langchain(messages), True
    except InvalidRequestError:
        return tuple(_planning_message(m) for m in messages), False


def _planning_tool(tool: Any) -> ToolDefinition:
    return _converted_tool(tool)[0]


def _converted_tool(tool: Any) -> tuple[ToolDefinition, bool]:
    try:
        return tool_from_langchain(tool), True
    except InvalidRequestError:  # a provider's built-in tool ({"google_search": {}}): only its name counts
        name = tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None)
        return ToolDefinition(str(name or type(tool).__name__)), False


# Call settings that describe the prompt itself (so a strategy that caches the prompt must understand them).
_PROMPT_SETTINGS = ("tool_choice", "tool_config", "functions")


def _tool_choice(settings: Mapping[str, Any], names: list[str]) -> tuple[ToolChoice | None, bool]:
    """The call's tool choice (`tool_choice`, or a Gemini `tool_config`), and whether it was understood."""
    if settings.get("functions"):
        return None, False
    try:
        if settings.get("tool_config") is not None:
            if settings.get("tool_choice") is not None:
                return None, False  # merged by the model in ways a cache cannot hold
            return tool_choice_from_gemini_config(settings["tool_config"], names), True
        return tool_choice_from_spec(settings.get("tool_choice"), names), True
    except (ValueError, InvalidRequestError):
        return None, False


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


class CachingCoordinator:
    """Plans and applies caching for one wrapped model or middleware; learns from reported usage.

    The framework-neutral part (a strategy per provider, the token estimator) is a core `StrategyBook`;
    this class converts LangChain calls to neutral requests and applies plans back. Thread-safe.
    """

    def __init__(self, **options: Any) -> None:
        self.book = StrategyBook(**options)
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        # With server_diagnostics: each conversation's latest response id, named by its next call.
        self._chain = ResponseChain() if self.book.server_diagnostics else None

    @property
    def provider(self) -> Provider | None:
        """The provider the caller forced, if any (else each call's model is inspected)."""
        return self.book.provider

    @property
    def estimator(self) -> TokenEstimator:
        return self.book.estimator

    def price_label(self, context: CallContext) -> str:
        """The provider a call is priced under: the label the caller named (``vllm``, ``deepseek``), else the
        detected provider."""
        return self.book.label or context.provider

    def _announce(self, provider: str, model: BaseChatModel) -> None:
        with self._lock:
            if provider in self._announced:
                return
            self._announced.add(provider)
        if provider == "unknown":
            logger.debug(
                "prompt caching: no strategy for %s; applying the cache-friendly layout only", type(model).__name__
            )

    def _neutral(self, model: BaseChatModel, call: ForeignCall) -> tuple[ChatRequest, CallContext]:
        """The call as the core sees it: the neutral request and the call's context."""
        provider = self.book.provider or detect_provider(model)
        self._announce(provider, model)
        name = str(call.settings.get("model") or _model_name(model))
        messages = (*call.system, *call.messages)
        neutral, exact = _converted_messages(messages) if messages else ((), True)
        if neutral and _top_level_cache_control(call, model):
            # The caller's automatic caching marks the request's end: a marker of theirs the strategy counts.
            neutral = (*neutral[:-1], replace(neutral[-1], cache_point=True))
        tools = [_converted_tool(t) for t in call.tools]
        choice, understood = _tool_choice(call.settings, [t.name for t, _ in tools])
        request = ChatRequest(model=name, messages=neutral, tools=tuple(t for t, _ in tools), tool_choice=choice)
        # A model that already names a cache of its own (ChatGoogleGenerativeAI(cached_content=...)) keeps it.
        own_cache = call.settings.get("cached_content") or getattr(model, "cached_content", None)
        context = CallContext(
            provider=provider,
            model=name,
            session=call.session,
            endpoint=None if own_cache else client_endpoint(provider, model),
            exact=exact and understood and all(ok for _, ok in tools),
            caller_markers=sum(1 for t in call.tools if tool_cache_control(t) is not None),
        )
        return request, context

    def _prepared(
        self, call: ForeignCall, request: ChatRequest, context: CallContext, plan: CachePlan | None
    ) -> PreparedCall:
        if plan is None:
            return PreparedCall(call, request, context, None, request_chars(request))
        applied = _apply(call, plan)
        specific = PROVIDER_APPLIERS.get(context.provider)
        if specific is not None:
            applied = specific(applied, plan)
        return PreparedCall(applied, request, context, plan, request_chars(request), original=call)

    def prepare(self, model: BaseChatModel, call: ForeignCall) -> PreparedCall:
        request, context = self._neutral(model, call)
        return self._diagnosed(model, self._prepared(call, request, context, self.book.plan(request, context)))

    async def aprepare(self, model: BaseChatModel, call: ForeignCall) -> PreparedCall:
        """`prepare` for async calls: a strategy that creates a provider cache awaits it."""
        request, context = self._neutral(model, call)
        prepared = self._prepared(call, request, context, await self.book.aplan(request, context))
        return self._diagnosed(model, prepared)

    def _diagnosed(self, model: BaseChatModel, prepared: PreparedCall) -> PreparedCall:
        """With ``server_diagnostics``: an Anthropic call asks for the provider's cache diagnostics."""
        if self._chain is None or prepared.context.provider != "anthropic":
            return prepared
        return replace(prepared, call=ask_for_diagnostics(prepared.call, model, prepared.request, self._chain))

    def recover(self, prepared: PreparedCall, error: BaseException) -> PreparedCall | None:
        """After the model failed: if it reported the plan's explicit cache gone, the call to retry once (with a
        new cache, or inline when none can be made); else None and the caller re-raises."""
        if prepared.plan is None or prepared.plan.cache is None or not cached_content_gone(error):
            return None
        plan = self.book.recover(prepared.request, prepared.context, prepared.plan)
        return (
            None
            if plan is None
            else self._prepared(prepared.original or prepared.call, prepared.request, prepared.context, plan)
        )

    async def arecover(self, prepared: PreparedCall, error: BaseException) -> PreparedCall | None:
        if prepared.plan is None or prepared.plan.cache is None or not cached_content_gone(error):
            return None
        plan = await self.book.arecover(prepared.request, prepared.context, prepared.plan)
        return (
            None
            if plan is None
            else self._prepared(prepared.original or prepared.call, prepared.request, prepared.context, plan)
        )

    def observe(self, prepared: PreparedCall, message: BaseMessage | None) -> None:
        if self._chain is not None and asked(prepared.call):
            record_response(prepared.call, prepared.request, message, self._chain)
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
