"""Cached tokens, hit rate and money saved, where LlamaIndex users look for token counts.

Two ways in, one aggregation (the core `CacheLedger`):

* `CacheUsageHandler`, an instrumentation event handler (the modern path): it reads every
  `LLMChatEndEvent` / `LLMCompletionEndEvent` on the dispatcher it is added to. Register it with
  ``get_dispatcher().add_event_handler(handler)``, or use ``with get_cache_usage_handler() as usage:``.
* `CachedTokenCountingHandler`, a drop-in `TokenCountingHandler` for callback-manager users: its
  usual counts keep working and it adds ``cached_llm_token_count``, ``cache_write_llm_token_count``
  and ``cache_hit_rate``.

Both read this package's normalized usage and the usage shapes of other LlamaIndex LLMs: OpenAI
(``raw.usage`` with ``prompt_tokens_details.cached_tokens``, objects or dicts), OpenAI Responses,
Anthropic (``cache_read_input_tokens``, input exclusive of cache) and google-genai
(``usage_metadata.cached_content_token_count``).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload, TokenCountingHandler
from llama_index.core.instrumentation import Dispatcher, get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)

from ..accounting import CacheLedger, CacheStats, CallRecord
from ..diagnostics import CacheDiagnostics, Diagnosis
from ..errors import InvalidRequestError
from ..layout import apply_layout
from ..messages import ChatRequest, Message, ToolDefinition
from ..pricing import PriceBook, default_price_book
from ..reports import CallReports
from ..server_diagnostics import provider_miss_reason
from ..strategies import session_from_metadata
from ..usage import Usage, as_mapping, usage_from_mapping, with_cache_booking
from ._convert import messages_from_llama_index, tool_from_llama_index
from ._handoff import current_span, listen, take

__all__ = [
    "CacheUsageHandler",
    "CachedTokenCountingHandler",
    "get_cache_usage_handler",
    "usage_from_llama_index",
]

_MAX_PENDING = 10_000  # start events remembered while their calls run (bounded, oldest dropped)

# Substrings of an LLM's class_name -> the provider id prices are looked up under.
_CLASS_PROVIDERS = (
    ("glm", "zhipuai"),
    ("zhipu", "zhipuai"),
    ("gemini", "google"),
    ("google", "google"),
    ("openai", "openai"),
    ("anthropic", "anthropic"),
    ("deepseek", "deepseek"),
)


def _usage_source(response: Any) -> tuple[Any, Any]:
    """(usage object or mapping, explicit-cache dict) wherever the response keeps them."""
    raw = getattr(response, "raw", None)
    raw_map = raw if isinstance(raw, Mapping) else None
    if raw_map is not None:
        usage = raw_map.get("usage") or raw_map.get("usage_metadata")
        if usage is not None:
            return usage, raw_map.get("cache")
    elif raw is not None:
        usage = getattr(raw, "usage", None) or getattr(raw, "usage_metadata", None)
        if usage is not None:
            return usage, None
    extra = getattr(response, "additional_kwargs", None) or {}
    if isinstance(extra, Mapping) and any(k in extra for k in ("prompt_tokens", "input_tokens")):
        return extra, raw_map.get("cache") if raw_map else None
    message = getattr(response, "message", None)  # Anthropic's streamed usage
    message_extra = getattr(message, "additional_kwargs", None) or {}
    return (message_extra.get("usage") if isinstance(message_extra, Mapping) else None), None


def _usage_unknown(response: Any) -> bool:
    """Whether the LLM said it got no valid usage (``raw["usage_unknown"]``): counted, no tokens."""
    raw = getattr(response, "raw", None)
    return isinstance(raw, Mapping) and raw.get("usage_unknown") is True


def usage_from_llama_index(response: Any) -> Usage | None:
    """The `Usage` of a LlamaIndex `ChatResponse` / `CompletionResponse`, whatever LLM produced it."""
    source, cache = _usage_source(response)
    mapping = as_mapping(source)
    if not mapping:
        return None
    usage = usage_from_mapping(mapping)
    return None if usage is None else with_cache_booking(usage, cache)


def _provider_of(class_name: Any) -> str | None:
    name = str(class_name or "").lower()
    return next((provider for key, provider in _CLASS_PROVIDERS if key in name), None)


def model_and_provider(response: Any, model_dict: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """Model and price provider: ``raw["model"]`` / ``raw["provider"]``, else the LLM's metadata."""
    raw = getattr(response, "raw", None)
    model: Any = None
    provider: Any = None
    if isinstance(raw, Mapping):
        model = raw.get("model") or raw.get("model_version")
        provider = raw.get("provider")
    elif raw is not None:
        model = getattr(raw, "model", None)
    if not isinstance(model, str) or not model:
        model = (model_dict or {}).get("model_name") or (model_dict or {}).get("model")
    if not isinstance(provider, str) or not provider:
        provider = _provider_of((model_dict or {}).get("class_name"))
    return (model if isinstance(model, str) and model else "unknown"), provider


@dataclass(slots=True)
class _InFlight:
    """What a start event said about a call, kept until its end event."""

    model_dict: Mapping[str, Any] | None
    raw_messages: Any
    extra: Mapping[str, Any] | None
    session: str | None
    scope: str | None = None
    span: str | None = None

    def request(self) -> tuple[tuple[Message, ...], tuple[ToolDefinition, ...]] | None:
        """(messages, tools) as the LLM sent them, laid out the way it lays them out; None for a completion
        call or input the core cannot represent.

        This package's LLMs publish the request they built for the call's span, so nothing is converted twice;
        other LLMs' messages are converted here, once the call has ended."""
        built = take(self.span)
        if built is not None:
            request, layout = built
        else:
            if not self.raw_messages:
                return None
            try:
                neutral = messages_from_llama_index(self.raw_messages)
                tools = tuple(tool_from_llama_index(t) for t in (self.extra or {}).get("tools") or ())
            except (InvalidRequestError, TypeError, ValueError):
                return None  # input the core cannot represent: no diagnosis for this call
            request = ChatRequest(str((self.model_dict or {}).get("model_name")), neutral, tools)
            layout = bool((self.model_dict or {}).get("cache_friendly_layout"))
        if layout:
            request = apply_layout(request)
        return request.messages, request.tools


def _in_flight(
    model_dict: Mapping[str, Any] | None,
    messages: Any,
    extra: Mapping[str, Any] | None,
    tags: Mapping[str, Any] | None,
    span: str | None,
) -> _InFlight:
    """A start event's call: its messages are only converted at its end, and only if its LLM did not say."""
    session = session_from_metadata(tags)
    # This package's LLMs put an opaque id of their credential and endpoint in their event payload,
    # so tenants sharing a prompt are never diagnosed as one conversation.
    scope = (model_dict or {}).get("credential_scope")
    return _InFlight(model_dict, messages, extra, session, scope if isinstance(scope, str) else None, span)


class _Recorder:
    """Calls in flight, the ledger and the diagnostics: what both handlers share."""

    def __init__(
        self, prices: PriceBook | None, diagnostics: CacheDiagnostics | bool, trace: str | Path | None
    ) -> None:
        prices = prices or default_price_book()
        self.ledger = CacheLedger(prices)
        if isinstance(diagnostics, CacheDiagnostics):
            self.diagnostics: CacheDiagnostics | None = diagnostics
        else:
            self.diagnostics = CacheDiagnostics(trace=trace, prices=prices) if diagnostics else None
        self._lock = threading.Lock()
        self._items: dict[str, _InFlight] = {}
        if self.diagnostics is not None:
            listen(self)

    def start(self, key: str | None, call: _InFlight) -> None:
        if not key:
            return
        with self._lock:
            if len(self._items) >= _MAX_PENDING:
                self._items.pop(next(iter(self._items)))
            self._items[key] = call

    def end(self, key: str | None, response: Any) -> CallRecord | None:
        with self._lock:
            call = self._items.pop(key, None) if key else None
        usage = usage_from_llama_index(response) if response is not None else None
        if usage is None and not _usage_unknown(response):
            return None
        model, provider = model_and_provider(response, call.model_dict if call else None)
        diagnostics = self.diagnostics
        diagnose = None
        if diagnostics is not None and call is not None and usage is not None:
            booked, ended, raw = usage, diagnostics.clock(), getattr(response, "raw", None)

            def diagnose() -> Diagnosis | None:  # after the call, off the caller's thread
                sent = call.request()
                if sent is None:
                    return None
                return diagnostics.observe(
                    model=model,
                    messages=sent[0],
                    tools=sent[1],
                    usage=booked,
                    provider=provider,
                    session=call.session,
                    scope=call.scope,
                    provider_reason=provider_miss_reason(raw),
                    at=ended,
                )

        return self.ledger.record(usage, model=model, provider=provider, run_id=key, diagnose=diagnose)

    @property
    def diagnoses(self) -> list[Diagnosis]:
        return [c.diagnosis for c in self.ledger.calls if c.diagnosis is not None]


class CacheUsageHandler(CallReports, BaseEventHandler):
    """Aggregates usage per model from LlamaIndex's LLM end events: calls, input, cached, output,
    hit rate, cost with and without caching, storage, saved. Per call as data and pictures:
    `to_records()`, `to_json()`, `to_dataframe()`, `plot()`.

    Thread-safe; each call of this package's LLMs emits exactly one end event (streams: after the
    last chunk, which carries the usage), so nothing is counted twice.

    Example:
        ```python
        from llama_index.core.instrumentation import get_dispatcher

        usage = CacheUsageHandler()
        get_dispatcher().add_event_handler(usage)
        ...
        print(usage.report())
        ```
    """

    prices: Any = Field(default=None, exclude=True, description="A PriceBook (default: genai-prices).")
    diagnostics: Any = Field(
        default=True, exclude=True, description="Explain cache misses per call (True, False or a CacheDiagnostics)."
    )
    trace: Any = Field(
        default=None, exclude=True, description="A JSONL file for `python -m cache_integrations doctor`."
    )

    _recorder: _Recorder = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        self._recorder = _Recorder(self.prices, self.diagnostics, self.trace)

    @classmethod
    def class_name(cls) -> str:
        return "CacheUsageHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMChatStartEvent):
            self._recorder.start(
                event.span_id,
                _in_flight(event.model_dict, event.messages, event.additional_kwargs, event.tags, event.span_id),
            )
        elif isinstance(event, LLMCompletionStartEvent):
            self._recorder.start(event.span_id, _in_flight(event.model_dict, None, None, event.tags, None))
        elif isinstance(event, (LLMChatEndEvent, LLMCompletionEndEvent)):
            self._recorder.end(event.span_id, event.response)

    def record(self, response: Any, model_dict: Mapping[str, Any] | None = None) -> CallRecord | None:
        """Add one response's usage (None when it reports none)."""
        usage = usage_from_llama_index(response)
        if usage is None:
            return None
        model, provider = model_and_provider(response, model_dict)
        return self._recorder.ledger.record(usage, model=model, provider=provider)

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """Per-call diagnoses of chat calls, oldest first."""
        return self._recorder.diagnoses

    @property
    def ledger(self) -> CacheLedger:
        return self._recorder.ledger

    @property
    def by_model(self) -> dict[str, CacheStats]:
        return self._recorder.ledger.by_model

    @property
    def total(self) -> CacheStats:
        return self._recorder.ledger.total

    @property
    def calls(self) -> list[CallRecord]:
        return self._recorder.ledger.calls

    def reset(self) -> None:
        self._recorder.ledger.reset()

    def report(self) -> str:
        """A plain-text table, one row per model and a total row."""
        return self._recorder.ledger.report()

    def __repr__(self) -> str:
        t = self.total
        return (
            f"CacheUsageHandler(calls={t.calls}, input_tokens={t.input_tokens}, "
            f"cached_tokens={t.cache_read_tokens}, hit_rate={t.hit_rate:.3f}, saved={t.saved})"
        )


@contextmanager
def get_cache_usage_handler(
    prices: PriceBook | None = None, dispatcher: Dispatcher | None = None
) -> Generator[CacheUsageHandler, None, None]:
    """A `CacheUsageHandler` on `dispatcher` (default: the root one) for the duration of the block.

    Dispatcher handlers are process-wide: calls made by other threads inside the block count too.

    Example:
        ```python
        with get_cache_usage_handler() as usage:
            query_engine.query("...")
        print(usage.report())
        ```
    """
    handler = CacheUsageHandler(prices=prices)
    target = dispatcher or get_dispatcher()
    target.add_event_handler(handler)
    try:
        yield handler
    finally:
        target.event_handlers = [h for h in target.event_handlers if h is not handler]
        handler.flush()  # the block's diagnoses are done when it ends


class CachedTokenCountingHandler(CallReports, TokenCountingHandler):
    """`TokenCountingHandler` that also counts cached tokens, cache writes, hit rate and money, with
    `to_records()`, `to_json()`, `to_dataframe()` and `plot()` per call.

    Its own counts (``prompt_llm_token_count`` ...) keep working and are the billed ones where the LLM
    reports usage: ``prompt_llm_token_count`` includes cached tokens and cache writes (also for Anthropic,
    whose ``input_tokens`` excludes them) and completions include thinking tokens. Example:

        ```python
        counter = CachedTokenCountingHandler()
        Settings.callback_manager = CallbackManager([counter])
        ...
        print(counter.cached_llm_token_count, counter.cache_hit_rate)
        print(counter.report())
        ```
    """

    def __init__(
        self,
        *args: Any,
        prices: PriceBook | None = None,
        diagnostics: CacheDiagnostics | bool = True,
        trace: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._recorder = _Recorder(prices, diagnostics, trace)
        self.ledger = self._recorder.ledger

    def on_event_start(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        parent_id: str = "",
        **kwargs: Any,
    ) -> str:
        if event_type == CBEventType.LLM and payload is not None:
            call = _in_flight(
                payload.get(EventPayload.SERIALIZED),
                payload.get(EventPayload.MESSAGES),
                payload.get(EventPayload.ADDITIONAL_KWARGS),
                None,
                current_span(),
            )
            self._recorder.start(event_id, call)
        return super().on_event_start(event_type, payload, event_id, parent_id, **kwargs)

    def on_event_end(
        self,
        event_type: CBEventType,
        payload: dict[str, Any] | None = None,
        event_id: str = "",
        **kwargs: Any,
    ) -> None:
        record = None
        if event_type == CBEventType.LLM and event_type not in self.event_ends_to_ignore and payload is not None:
            record = self._recorder.end(
                event_id, payload.get(EventPayload.RESPONSE) or payload.get(EventPayload.COMPLETION)
            )
        super().on_event_end(event_type, payload, event_id, **kwargs)
        if record is not None and record.usage is not None:
            self._count_billed(event_id, record.usage)

    def _count_billed(self, event_id: str, usage: Usage) -> None:
        """Correct the event `TokenCountingHandler` just counted to the provider's billed tokens: its own
        reading takes Anthropic's ``input_tokens`` (cache reads and writes excluded) as the whole prompt, and
        leaves out Gemini's thinking and tool-use tokens."""
        for event in reversed(self.llm_token_counts[-8:]):
            if event.event_id == event_id:
                event.prompt_token_count = usage.input_tokens
                event.completion_token_count = usage.output_tokens
                event.total_token_count = usage.input_tokens + usage.output_tokens
                return

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """Per-call diagnoses of chat calls, oldest first."""
        return self._recorder.diagnoses

    @property
    def cached_llm_token_count(self) -> int:
        """Prompt tokens served from cache (cache reads)."""
        return self.ledger.total.cache_read_tokens

    @property
    def cache_write_llm_token_count(self) -> int:
        """Prompt tokens written to a cache (explicit-cache creation, Anthropic cache writes)."""
        return self.ledger.total.cache_write_tokens

    @property
    def cache_hit_rate(self) -> float:
        """Cached share of the prompt tokens of the calls that reported usage."""
        return self.ledger.total.hit_rate

    @property
    def by_model(self) -> dict[str, CacheStats]:
        return self.ledger.by_model

    @property
    def total(self) -> CacheStats:
        return self.ledger.total

    def reset_counts(self) -> None:
        super().reset_counts()
        self.ledger.reset()

    def report(self) -> str:
        return self.ledger.report()
