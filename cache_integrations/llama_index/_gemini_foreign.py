"""Gemini explicit caches behind llama-index-llms-google-genai's `GoogleGenAI`.

The core's `GeminiExplicitStrategy` decides and manages the cache (created, reused, extended and recovered through
our own client, keyed by the credential `GoogleGenAI`'s google-genai ``Client`` holds). Applied here to the class's
own objects: the call carries ``cached_content`` in its per-call ``generation_config`` (which `GoogleGenAI` merges
over its own) and no system message, no ``tools`` and no ``tool_config`` (those, and the turns the cache holds,
are in the cache), so google-genai never sends ``system_instruction`` or tools next to ``cached_content``, which
Gemini rejects with a 400. Function calls in the answer are still parsed into ``ToolCallBlock``s.

The work happens inside `GoogleGenAI`'s ``_chat`` / ``_achat`` / ``_stream_chat`` / ``_astream_chat``, i.e. inside
its instrumented ``chat`` / ``complete`` / ``stream_*`` methods, so:

- a cache that vanished (403 "CachedContent not found") is recreated and the call retried once, before any output,
  without an error event;
- the response the end event carries already names the cache (``raw["cache"]``: created / extended / recovered,
  tokens written, storage booked) and counts a creation's tokens in ``raw["usage_metadata"]`` and
  ``additional_kwargs``, so `CacheUsageHandler` books writes and storage.

`with_gemini_caching(llm)` returns a copy of a `GoogleGenAI` whose class puts `GeminiCachingMixin` in front of
`GoogleGenAI`. The generic LlamaIndex ``with_prompt_caching`` (another branch) plugs it in for the ``"google"``
provider: its wrapping class for `GoogleGenAI` gets this mixin too, and its public methods pass Google calls
through unplanned (the mixin plans them), as the LangChain middleware hands Gemini models to its wrapper.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from llama_index.core.base.llms.types import ChatMessage, ChatResponse, MessageRole, TextBlock
from llama_index.core.bridge.pydantic import PrivateAttr

from ..errors import ConfigurationError, InvalidRequestError
from ..messages import ChatRequest, Message
from ..observe import CallObservation, check_instrument
from ..strategies import (
    CachePlan,
    CallContext,
    StrategyBook,
    cached_content_gone,
    gemini_endpoint,
    message_chars,
    tool_choice_from_gemini_config,
    tools_from_gemini,
)
from ._convert import _ROLES, messages_from_llama_index
from .handlers import usage_from_llama_index
from .observe import (
    aobserved_llama_index_stream,
    finish_llama_index_response,
    observe_llama_index_call,
    observed_llama_index_stream,
)

__all__ = [
    "GeminiCachingMixin",
    "GoogleGenAICalls",
    "PreparedGeminiCall",
    "apply_cached_content",
    "with_gemini_caching",
]

logger = logging.getLogger("cache_integrations.llama_index")

# Settings of a GoogleGenAI that are part of the prompt: with any of them set, the model's own request is not
# ours to cache (its generation_config carries a system instruction, tools or a cache of its own).
_OWN_PROMPT_CONFIG = ("cached_content", "system_instruction", "tools", "tool_config")


@dataclass(frozen=True)
class PreparedGeminiCall:
    """A `GoogleGenAI` call ready to send: `messages` and `kwargs` with the plan applied."""

    messages: list[ChatMessage]
    kwargs: dict[str, Any]
    request: ChatRequest
    context: CallContext
    plan: CachePlan | None
    original: tuple[tuple[ChatMessage, ...], Mapping[str, Any]]

    @property
    def cache_use(self) -> Any:
        """The explicit cache the call is sent against (`CacheUse`), or None."""
        return getattr(self.plan.cache if self.plan is not None else None, "use", None)


def _config(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(exclude_none=True))
    return dict(value) if isinstance(value, Mapping) else {}


def apply_cached_content(
    messages: Sequence[ChatMessage], kwargs: Mapping[str, Any], plan: CachePlan
) -> tuple[list[ChatMessage], dict[str, Any]]:
    """`messages` in the plan's order (system first) and, when the plan names a cache, without the system
    messages and the turns it holds; `kwargs` with ``cached_content`` in the call's ``generation_config`` and
    without ``tools`` / ``tool_config``. The caller's objects are not modified."""
    ordered = [messages[i] for i in plan.order] if len(plan.order) == len(messages) else list(messages)
    out = dict(kwargs)
    name = plan.options.get("cached_content")
    if not (plan.drop_system_and_tools and name):
        return ordered, out
    others = [m for m in ordered if m.role != MessageRole.SYSTEM]
    out.pop("tools", None)
    out.pop("tool_config", None)
    out["generation_config"] = {**_config(kwargs.get("generation_config")), "cached_content": name}
    return others[plan.cached_messages :], out


def _planning_message(message: ChatMessage) -> Message:
    role_value = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    text = "".join(b.text if isinstance(b, TextBlock) else f"[{b.block_type}]" for b in message.blocks)
    return Message(_ROLES.get(role_value, "user"), text)


def _neutral_messages(messages: Sequence[ChatMessage]) -> tuple[tuple[Message, ...], bool]:
    try:
        return messages_from_llama_index(messages), True
    except InvalidRequestError:
        return tuple(_planning_message(m) for m in messages), False


def _owns_prompt_config(llm: Any, kwargs: Mapping[str, Any]) -> bool:
    own = _config(getattr(llm, "_generation_config", None))
    call = _config(kwargs.get("generation_config"))
    return bool(getattr(llm, "cached_content", None)) or any(own.get(k) or call.get(k) for k in _OWN_PROMPT_CONFIG)


def _decorate(response: Any, use: Any) -> None:
    """Name the cache in ``raw["cache"]`` and count a creation's tokens as input (creating bills them)."""
    raw = getattr(response, "raw", None)
    if not isinstance(raw, dict):
        return
    raw["cache"] = use.as_dict()
    written = int(use.written_tokens or 0)
    if not written:
        return
    meta = raw.get("usage_metadata")
    if isinstance(meta, dict):
        meta["prompt_token_count"] = int(meta.get("prompt_token_count") or 0) + written
        meta["total_token_count"] = int(meta.get("total_token_count") or 0) + written
    extra = getattr(response, "additional_kwargs", None)
    if isinstance(extra, dict) and "prompt_tokens" in extra:
        extra["prompt_tokens"] = int(extra["prompt_tokens"] or 0) + written
        extra["total_tokens"] = int(extra.get("total_tokens") or 0) + written


class GoogleGenAICalls:
    """Plans `GoogleGenAI` calls with the core Gemini strategy, recovers vanished caches, reports cache use.

    Options: those of `GeminiExplicitStrategy` (`cache_mode`, `cache_ttl`, `cache_registry`) and `layout`.
    Thread-safe (the strategy book and the cache managers are).
    """

    def __init__(self, *, instrument: Any = None, **options: Any) -> None:
        options.setdefault("provider", "google")
        self.book = StrategyBook(**options)
        self.instrument = check_instrument(instrument)

    def span(self, llm: Any, messages: Sequence[ChatMessage]) -> CallObservation:
        """The OpenTelemetry observation of one call (a no-op unless instrumented)."""
        return observe_llama_index_call(self.instrument, llm, messages, provider="google")

    def _neutral(
        self, llm: Any, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> tuple[ChatRequest, CallContext]:
        model = str(getattr(llm, "model", "") or "gemini")
        neutral, exact = _neutral_messages(messages) if messages else ((), True)
        try:
            tools = tools_from_gemini(kwargs.get("tools"))
            choice = tool_choice_from_gemini_config(kwargs.get("tool_config"), [t.name for t in tools])
        except (ValueError, InvalidRequestError):
            tools, choice, exact = (), None, False
        request = ChatRequest(model=model, messages=neutral, tools=tools, tool_choice=choice)
        endpoint = None if _owns_prompt_config(llm, kwargs) else gemini_endpoint(llm)
        return request, CallContext(provider="google", model=model, endpoint=endpoint, exact=exact)

    def _prepared(
        self,
        messages: Sequence[ChatMessage],
        kwargs: Mapping[str, Any],
        request: ChatRequest,
        context: CallContext,
        plan: CachePlan | None,
    ) -> PreparedGeminiCall:
        original = (tuple(messages), dict(kwargs))
        if plan is None:
            return PreparedGeminiCall(list(messages), dict(kwargs), request, context, None, original)
        sent, sent_kwargs = apply_cached_content(messages, kwargs, plan)
        return PreparedGeminiCall(sent, sent_kwargs, request, context, plan, original)

    def prepare(self, llm: Any, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]) -> PreparedGeminiCall:
        request, context = self._neutral(llm, messages, kwargs)
        return self._prepared(messages, kwargs, request, context, self.book.plan(request, context))

    async def aprepare(
        self, llm: Any, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> PreparedGeminiCall:
        request, context = self._neutral(llm, messages, kwargs)
        return self._prepared(messages, kwargs, request, context, await self.book.aplan(request, context))

    def _retry(self, prepared: PreparedGeminiCall, plan: CachePlan | None) -> PreparedGeminiCall | None:
        if plan is None:
            return None
        return self._prepared(*prepared.original, prepared.request, prepared.context, plan)

    def recover(self, prepared: PreparedGeminiCall, error: BaseException) -> PreparedGeminiCall | None:
        """The call to retry once if `error` says the plan's cache is gone (a new cache, or inline); else None."""
        if prepared.cache_use is None or not cached_content_gone(error):
            return None
        return self._retry(prepared, self.book.recover(prepared.request, prepared.context, prepared.plan))

    async def arecover(self, prepared: PreparedGeminiCall, error: BaseException) -> PreparedGeminiCall | None:
        if prepared.cache_use is None or not cached_content_gone(error):
            return None
        return self._retry(prepared, await self.book.arecover(prepared.request, prepared.context, prepared.plan))

    def finish(self, prepared: PreparedGeminiCall, response: Any) -> None:
        """After the call answered (for a stream: its last response): learn from its usage, then name the cache
        the call used in the response (in place, before the LLM's end event reports it)."""
        if response is None:
            return
        try:
            usage = usage_from_llama_index(response)
            chars = sum(message_chars(m) for m in prepared.request.messages)
            self.book.observe(prepared.request, prepared.context, prepared.plan, usage, chars)
        except Exception:  # learning from usage must never fail the caller's call
            logger.debug("prompt caching: could not read the usage of a response", exc_info=True)
        if (use := prepared.cache_use) is not None:
            _decorate(response, use)


if TYPE_CHECKING:
    from llama_index.llms.google_genai import GoogleGenAI

    _Base = GoogleGenAI
else:
    _Base = object


class GeminiCachingMixin(_Base):
    """Put in front of `GoogleGenAI` in a class's bases: every call goes through `GoogleGenAICalls`."""

    _gemini_calls: GoogleGenAICalls

    def _parent(self) -> Any:
        return super()

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        calls = self._gemini_calls
        prepared = calls.prepare(self, messages, kwargs)
        obs = calls.span(self, messages)
        try:
            with obs.active():
                try:
                    response = self._parent()._chat(prepared.messages, **prepared.kwargs)
                except Exception as exc:  # a vanished cache: recreated (or dropped) and retried once, invisibly
                    retry = calls.recover(prepared, exc)
                    if retry is None:
                        raise
                    prepared, response = retry, self._parent()._chat(retry.messages, **retry.kwargs)
        except BaseException as exc:
            obs.fail(exc)
            raise
        calls.finish(prepared, response)
        finish_llama_index_response(obs, response, self)
        return cast(ChatResponse, response)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        calls = self._gemini_calls
        prepared = await calls.aprepare(self, messages, kwargs)
        obs = calls.span(self, messages)
        try:
            with obs.active():
                try:
                    response = await self._parent()._achat(prepared.messages, **prepared.kwargs)
                except Exception as exc:
                    retry = await calls.arecover(prepared, exc)
                    if retry is None:
                        raise
                    prepared, response = retry, await self._parent()._achat(retry.messages, **retry.kwargs)
        except BaseException as exc:
            obs.fail(exc)
            raise
        calls.finish(prepared, response)
        finish_llama_index_response(obs, response, self)
        return cast(ChatResponse, response)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Generator[ChatResponse, None, None]:
        prepared = self._gemini_calls.prepare(self, messages, kwargs)
        chunks = self._watch(prepared, self._parent()._stream_chat(prepared.messages, **prepared.kwargs))
        return cast(
            Generator[ChatResponse, None, None],
            observed_llama_index_stream(self._gemini_calls.span(self, messages), chunks, self),
        )

    def _watch(
        self, prepared: PreparedGeminiCall, chunks: Generator[ChatResponse, None, None]
    ) -> Generator[ChatResponse, None, None]:
        calls = self._gemini_calls
        try:  # a vanished cache fails the stream when it opens, before any output
            last = next(chunks, None)
        except Exception as exc:
            retry = calls.recover(prepared, exc)
            if retry is None:
                raise
            prepared, chunks = retry, self._parent()._stream_chat(retry.messages, **retry.kwargs)
            last = next(chunks, None)
        if last is not None:
            yield last
        for last in chunks:
            yield last
        calls.finish(prepared, last)  # the consumer asked for more: the end event sees the named cache

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> AsyncGenerator[ChatResponse, None]:
        prepared = await self._gemini_calls.aprepare(self, messages, kwargs)
        chunks = self._awatch(prepared, await self._parent()._astream_chat(prepared.messages, **prepared.kwargs))
        return cast(
            AsyncGenerator[ChatResponse, None],
            aobserved_llama_index_stream(self._gemini_calls.span(self, messages), chunks, self),
        )

    async def _awatch(
        self, prepared: PreparedGeminiCall, chunks: AsyncGenerator[ChatResponse, None]
    ) -> AsyncGenerator[ChatResponse, None]:
        calls = self._gemini_calls
        try:
            last = await anext(chunks, None)
        except Exception as exc:
            retry = await calls.arecover(prepared, exc)
            if retry is None:
                raise
            prepared, chunks = retry, await self._parent()._astream_chat(retry.messages, **retry.kwargs)
            last = await anext(chunks, None)
        if last is not None:
            yield last
        async for last in chunks:
            yield last
        calls.finish(prepared, last)


_CLASSES: dict[type, type] = {}

LLMT = TypeVar("LLMT")


def _caching_class(base: type) -> type:
    cls = _CLASSES.get(base)
    if cls is None:
        namespace = {
            "__module__": __name__,
            "__qualname__": f"GeminiCaching{base.__name__}",
            "__doc__": f"{base.__name__} with Gemini explicit caches (see `with_gemini_caching`).",
            "_gemini_calls": PrivateAttr(default=None),
        }
        metaclass: Any = type(base)
        cls = _CLASSES.setdefault(
            base, metaclass(f"GeminiCaching{base.__name__}", (GeminiCachingMixin, base), namespace)
        )
    return cls


def with_gemini_caching(llm: LLMT, *, instrument: Any = None, **options: Any) -> LLMT:
    """A copy of a llama-index-llms-google-genai `GoogleGenAI` whose calls use managed Gemini explicit caches.

    Options: `cache_mode` (``"auto"``, default: a cache once it pays for itself and not while Gemini's implicit
    cache serves the prefix; ``"always"``; ``"off"``), `cache_ttl` (seconds, default 3600), `cache_registry`
    (``"sqlite"``, default; ``"sqlite:///path"``, ``"redis://..."``, ``"memory"``, a `CacheRegistry`), `layout`
    (default True). Bad options raise before anything is sent. `llm` itself is left as it was.
    """
    try:
        from llama_index.llms.google_genai import GoogleGenAI
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("with_gemini_caching needs llama-index-llms-google-genai") from exc
    if not isinstance(llm, GoogleGenAI):
        raise ConfigurationError(f"with_gemini_caching: expected a GoogleGenAI, got {type(llm).__name__}")
    calls = GoogleGenAICalls(instrument=instrument, **options)
    if isinstance(llm, GeminiCachingMixin):
        return llm
    wrapped = llm.model_copy()
    object.__setattr__(wrapped, "__class__", _caching_class(type(llm)))
    wrapped._gemini_calls = calls  # type: ignore[attr-defined]
    return cast(LLMT, wrapped)
