"""Cached tokens, hit rate and money saved, in LangChain's standard callback place.

`CacheUsageCallbackHandler` reads `usage_metadata` from every chat model that reports it (this
package's and any other, e.g. ChatOpenAI), so one handler covers a whole chain or agent.
`get_cache_usage_callback()` installs one for every call inside a ``with`` block, nested runs
included, the way langchain-core's `get_usage_metadata_callback` does.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.tracers.context import register_configure_hook

from ..accounting import CacheLedger, CacheStats, CallRecord
from ..pricing import PriceBook, default_price_book
from ._convert import usage_from_langchain

__all__ = ["CacheUsageCallbackHandler", "get_cache_usage_callback"]


class CacheUsageCallbackHandler(BaseCallbackHandler):
    """Aggregates usage per model: calls, input, cached, output tokens, hit rate, cost, saved.

    Thread-safe; correct for invoke, stream, batch and async (each model run ends in exactly one
    `on_llm_end`, whose message carries the run's whole usage).
    """

    raise_error = False
    run_inline = True

    def __init__(self, prices: PriceBook | None = None) -> None:
        super().__init__()
        self.ledger = CacheLedger(prices or default_price_book())

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for gen in generations:
                message = gen.message if isinstance(gen, ChatGeneration) else None
                if isinstance(message, BaseMessage):
                    self._record(message)

    def _record(self, message: BaseMessage) -> None:
        usage = getattr(message, "usage_metadata", None)
        if not usage:
            return
        meta = message.response_metadata
        model = meta.get("model_name") or meta.get("model") or "unknown"
        self.ledger.record(usage_from_langchain(usage, meta), model=model, provider=meta.get("model_provider"))

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
def get_cache_usage_callback(prices: PriceBook | None = None) -> Generator[CacheUsageCallbackHandler, None, None]:
    """Collect cache usage of every LangChain model call made inside the block.

    Example:
        ```python
        with get_cache_usage_callback() as cb:
            chain.invoke(...)
        print(cb.report())
        ```
    """
    handler = CacheUsageCallbackHandler(prices)
    token = _cache_usage_var.set(handler)
    try:
        yield handler
    finally:
        _cache_usage_var.reset(token)
