"""Cached tokens, hit rate and money saved, in LangChain's standard callback place.

`CacheUsageCallbackHandler` reads `usage_metadata` from every chat model that reports it (this
package's and any other, e.g. ChatOpenAI), so one handler covers a whole chain or agent.
`get_cache_usage_callback()` installs one for every call inside a ``with`` block, nested runs
included, the way langchain-core's `get_usage_metadata_callback` does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from ..accounting import CacheLedger, CacheStats, CallRecord
from ..diagnostics import CacheDiagnostics, Diagnosis
from ..errors import InvalidRequestError
from ..layout import apply_layout
from ..messages import ChatRequest, Message, ToolDefinition
from ..observe import METADATA_KEY
from ..pricing import PriceBook, default_price_book
from ..reports import CallReports
from ..server_diagnostics import provider_miss_reason
from ..strategies import session_from_metadata
from ._convert import USAGE_UNKNOWN_KEY, messages_from_langchain, tool_from_langchain, usage_from_langchain

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Request:
    model: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...]
    session: str | None
    scope: str | None


@dataclass(slots=True)
class _Pending:
    """A chat model run in flight: what its start said, and the request the model built (when it says)."""

    messages: Sequence[BaseMessage]
    params: Mapping[str, Any]
    metadata: Mapping[str, Any]
    built: ChatRequest | None = None
    layout: bool = False

    def request(self) -> _Request | None:
        """The request as the model sent it (after its layout step, when it has one).

        This package's models hand over the request they built (`accept_request`), so nothing is converted
        twice; other models' messages are converted here, once the call has ended."""
        params = self.params
        built, layout = self.built, self.layout
        if built is None:
            try:
                neutral = messages_from_langchain(self.messages)
                tools = tuple(tool_from_langchain(t) for t in params.get("tools") or ())
            except InvalidRequestError:
                return None  # a model that takes input the core cannot represent: no diagnosis for it
            built = ChatRequest(str(params.get("model") or params.get("model_name") or "unknown"), neutral, tools)
            layout = bool(params.get("cache_friendly_layout"))
        if layout:
            built = apply_layout(built)
        # This package's models put an opaque id of their credential and endpoint in their invocation
        # params, so tenants sharing a prompt are never diagnosed as one conversation.
        scope = params.get("credential_scope")
        return _Request(
            built.model,
            built.messages,
            built.tools,
            session_from_metadata(self.metadata),
            scope if isinstance(scope, str) else None,
        )


_MAX_PENDING = 10_000  # runs remembered between their start and end (bounded: a run that never ends is dropped)


def hand_over(run_manager: Any, request: ChatRequest, *, layout: bool) -> None:
    """Give the request a model of this package built to every `CacheUsageCallbackHandler` of the run."""
    if run_manager is None:
        return
    for handler in run_manager.handlers:
        if isinstance(handler, CacheUsageCallbackHandler):
            handler.accept_request(run_manager.run_id, request, layout=layout)


__all__ = ["CacheUsageCallbackHandler", "get_cache_usage_callback"]


class CacheUsageCallbackHandler(CallReports, BaseCallbackHandler):
    """Aggregates usage per model: calls, input, cached, output tokens, hit rate, cost, saved.

    Per call as data and pictures: `to_records()`, `to_json()`, `to_dataframe()`, `plot()`.

    Thread-safe; correct for invoke, stream, batch and async (each model run ends in exactly one
    `on_llm_end`, whose message carries the run's whole usage).
    """

    raise_error = False
    run_inline = True

    def __init__(
        self,
        prices: PriceBook | None = None,
        *,
        diagnostics: CacheDiagnostics | bool = True,
        trace: str | Path | None = None,
        trace_prompts: bool = False,
    ) -> None:
        """`diagnostics` explains cache misses per call (warnings once per cause); `trace` also
        writes them to a JSONL file for `python -m cache_integrations doctor`."""
        super().__init__()
        prices = prices or default_price_book()
        self.ledger = CacheLedger(prices)
        if isinstance(diagnostics, CacheDiagnostics):
            self.diagnostics: CacheDiagnostics | None = diagnostics
        elif diagnostics:
            self.diagnostics = CacheDiagnostics(trace=trace, trace_prompts=trace_prompts, prices=prices)
        else:
            self.diagnostics = None
        self._pending: dict[UUID, _Pending] = {}
        self._lock = threading.Lock()

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.diagnostics is None or len(messages) != 1:
            return
        pending = _Pending(messages[0], kwargs.get("invocation_params") or {}, metadata or {})
        with self._lock:
            if len(self._pending) >= _MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[run_id] = pending

    def accept_request(self, run_id: UUID, request: ChatRequest, *, layout: bool) -> None:
        """The request the run's model built from its messages (before its layout step when `layout`):
        diagnosed at the run's end instead of converting the messages again."""
        with self._lock:
            pending = self._pending.get(run_id)
        if pending is not None:
            pending.built, pending.layout = request, layout

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._pending.pop(run_id, None)

    def on_llm_end(self, response: LLMResult, *, run_id: UUID | None = None, **kwargs: Any) -> None:
        with self._lock:
            pending = self._pending.pop(run_id, None) if run_id is not None else None
        for generations in response.generations:
            for gen in generations:
                message = gen.message if isinstance(gen, ChatGeneration) else None
                if isinstance(message, BaseMessage):
                    self._record(message, pending, None if run_id is None else str(run_id))

    def _record(self, message: BaseMessage, pending: _Pending | None, run_id: str | None) -> None:
        usage_meta = getattr(message, "usage_metadata", None)
        meta = message.response_metadata
        if not usage_meta and not meta.get(USAGE_UNKNOWN_KEY):
            return
        model = meta.get("model_name") or meta.get("model") or "unknown"
        # A wrapped model's call carries the provider it was priced under (a ChatOpenAI pointed at DeepSeek or
        # vLLM reports model_provider "openai"); the model's own word otherwise.
        facts = meta.get(METADATA_KEY)
        provider = (facts.get("provider") if isinstance(facts, Mapping) else None) or meta.get("model_provider")
        # A model that said its usage is unknown is counted as a call with no tokens booked.
        usage = usage_from_langchain(usage_meta, meta) if usage_meta else None
        diagnostics = self.diagnostics
        diagnose = None
        if diagnostics is not None and pending is not None and usage is not None:
            booked, ended = usage, diagnostics.clock()

            def diagnose() -> Diagnosis | None:  # after the call, off the caller's thread
                request = pending.request()
                if request is None:
                    return None
                return diagnostics.observe(
                    model=model,
                    messages=request.messages,
                    tools=request.tools,
                    usage=booked,
                    provider=provider,
                    session=request.session,
                    scope=request.scope,
                    provider_reason=provider_miss_reason(meta),
                    at=ended,
                )

        self.ledger.record(usage, model=model, provider=provider, run_id=run_id, diagnose=diagnose)

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """Per-call diagnoses, oldest first (calls with a known request only)."""
        return [c.diagnosis for c in self.ledger.calls if c.diagnosis is not None]

    @property
    def by_model(self) -> dict[str, CacheStats]:
        return self.ledger.by_model

    @property
    def total(self) -> CacheStats:
        return self.ledger.total

    @property
    def calls(self) -> list[CallRecord]:
        return self.ledger.calls

    def report(self) -> str:
        return self.ledger.report()

    def __repr__(self) -> str:
        t = self.total
        return (
            f"CacheUsageCallbackHandler(calls={t.calls}, input_tokens={t.input_tokens}, "
            f"cached_tokens={t.cache_read_tokens}, hit_rate={t.hit_rate:.3f}, saved={t.saved})"
        )


_cache_usage_var: ContextVar[CacheUsageCallbackHandler | None] = ContextVar("cache_usage_callback", default=None)
register_configure_hook(_cache_usage_var, inheritable=True)


@contextmanager
def get_cache_usage_callback(
    prices: PriceBook | None = None, *, trace: str | Path | None = None, diagnostics: bool = True
) -> Generator[CacheUsageCallbackHandler, None, None]:
    """Collect cache usage of every LangChain model call made inside the block.

    Example:
        ```python
        with get_cache_usage_callback() as cb:
            chain.invoke(...)
        print(cb.report())
        ```
    """
    handler = CacheUsageCallbackHandler(prices, diagnostics=diagnostics, trace=trace)
    token = _cache_usage_var.set(handler)
    try:
        yield handler
    finally:
        _cache_usage_var.reset(token)
        handler.flush()  # the block's diagnoses are done and its trace written when it ends
