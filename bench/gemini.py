"""Gemini: 20 questions over one long document, explicit caching versus implicit caching only.

Three ways to send the same workload through ChatGemini against the emulator: the document pinned
with `cache_context` up front; `cache_mode="auto"` (a cache is created once the prefix has been sent
often enough to pay for itself, and not while implicit caching serves it); and `cache_mode="off"`
(Gemini's implicit caching only). Each runs twice: with implicit caching hitting every repeat (the
emulator's default for 2.5+ models) and missing (Gemini gives no guarantee; misses are common on
real traffic). Efficiency is cached tokens over the document-prefix tokens (countTokens) of every
request after the first; costs include cache storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import httpx
from langchain_core.messages import HumanMessage, SystemMessage

from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGemini
from cache_integrations.langchain._convert import messages_from_langchain
from cache_integrations.messages import ChatRequest
from cache_integrations.testing import CacheRules, Emulator

from .workloads import DOCS

MODEL = "gemini-2.5-flash"
SYSTEM = "Answer strictly from the specification below; cite the section."
DOCUMENT = "\n\n".join(f"[{doc_id}]\n{text}" for doc_id, text in DOCS)
QUESTIONS = [f"Question {i + 1}: what approval window applies to team {i + 3}?" for i in range(20)]


@dataclass
class GeminiResult:
    mode: str
    implicit: str
    requests: int
    input_tokens: int
    cached_tokens: int
    max_cacheable: int
    efficiency: float
    caches_created: int
    cost: Decimal | None
    storage_cost: Decimal | None
    cost_without_caching: Decimal | None


def _run(mode: str, implicit_hits: bool) -> GeminiResult:
    emu = Emulator() if implicit_hits else Emulator(gemini_rules=CacheRules(enabled=False))
    handler = CacheUsageCallbackHandler()
    llm = ChatGemini(
        model=MODEL,
        api_key="bench",
        base_url="http://emulator/v1beta",
        http_client=httpx.Client(transport=emu.transport()),
        cache_registry="memory",
        cache_mode="off" if mode.startswith("off") else "auto",
        callbacks=[handler],
    )
    prefix = [SystemMessage(SYSTEM), HumanMessage(DOCUMENT, additional_kwargs={"cache_control": {"type": "ephemeral"}})]
    if mode.startswith("pinned"):
        pinned = llm.cache_context(DOCUMENT, system=SYSTEM)
        prefix = pinned.messages
    replies = [llm.invoke([*prefix, HumanMessage(q)]) for q in QUESTIONS]
    cached = [r.usage_metadata["input_token_details"].get("cache_read", 0) for r in replies if r.usage_metadata]
    # Every request after the first re-sends the same prefix; its size is what the cache can serve.
    prefix_tokens = llm.cache_manager.client.count_tokens(
        ChatRequest(MODEL, messages_from_langchain(prefix))
    )  # the document prefix as Gemini counts it
    maximum = prefix_tokens * (len(QUESTIONS) - 1)
    served = sum(min(c, prefix_tokens) for c in cached[1:])
    stats = handler.total
    return GeminiResult(
        mode,
        "hits" if implicit_hits else "misses",
        len(replies),
        stats.input_tokens,
        stats.cache_read_tokens,
        maximum,
        served / maximum if maximum else 0.0,
        emu.counters.caches_created,
        stats.cost,
        stats.storage_cost,
        stats.cost_without_caching,
    )


MODES = ("pinned (cache_context)", "auto (cache_mode=auto)", "off (implicit caching only)")


def measure() -> list[GeminiResult]:
    """Each mode twice: with Gemini's implicit cache hitting (the emulator's default for 2.5+) and missing."""
    return [_run(mode, implicit) for implicit in (True, False) for mode in MODES]
