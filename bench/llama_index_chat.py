"""LlamaIndex chat over a document index: stock `ContextChatEngine` versus the cache-friendly engine.

The same 8-turn conversation over a `VectorStoreIndex` of 20 documents, with the `GLM` LLM on the
emulator (in-process, one fresh emulator per engine). The stock engine puts the retrieved context in
the system message, ahead of the history, so every turn changes the first message; the cache-friendly
engine keeps the system prompt and the history first and puts context plus question in the newest
user turn.

Efficiency is cached tokens over the theoretical maximum, computed the way `bench.efficiency` does:
per request, the tokens of the rendered prompt (the emulator's rendering of the exact request body)
that form a prefix an earlier request already sent. The maximum is taken on the cache-friendly run,
whose layout sends everything that repeats (system prompt and history) first; both engines carry the
same system prompt, history and retrieved documents, so it is the common ceiling for both.

The embedding is a deterministic bag-of-words variant of `MockEmbedding`: the stock `MockEmbedding`
embeds every text identically, which would retrieve the same nodes for every question and hide the
effect of per-turn context.
"""

from __future__ import annotations

import zlib
from typing import Any

import httpx
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.embeddings import MockEmbedding
from pydantic import SecretStr

from cache_integrations.llama_index import GLM, CacheFriendlyContextChatEngine, get_cache_usage_handler
from cache_integrations.testing import Emulator
from cache_integrations.testing._render import render_chat
from cache_integrations.testing.rules import GLM_RULES, CacheRules

from .efficiency import Call, theoretical_max

__all__ = ["KeywordEmbedding", "measure"]

MODEL = "glm-4.7"
SYSTEM = (
    "You are the support assistant of Acme Cloud. Answer from the documentation excerpts you are given, "
    "name the product and the setting involved, and say plainly when the excerpts do not cover a question. "
    "Keep answers short: one paragraph, then the exact steps if the user has to change something. "
    "Never invent limits, prices or dates; quote them from the excerpts. "
    + " ".join(
        f"Rule {i}: when a question mentions {topic}, check the {topic} excerpt first and mention its section."
        for i, topic in enumerate(
            ["billing", "backups", "networking", "identity", "storage", "monitoring", "databases", "support"], 1
        )
    )
)
TOPICS = [
    "billing invoices",
    "backup snapshots",
    "network firewalls",
    "identity tokens",
    "object storage",
    "monitoring alerts",
    "database replicas",
    "support tickets",
    "compute quotas",
    "load balancers",
    "dns records",
    "container registry",
    "secrets vault",
    "audit logs",
    "cost budgets",
    "kubernetes clusters",
    "message queues",
    "cdn caching",
    "email relay",
    "data exports",
]
QUESTIONS = [
    "How are billing invoices generated each month?",
    "How long are backup snapshots kept?",
    "Which ports do network firewalls open by default?",
    "When do identity tokens expire?",
    "What is the size limit of object storage buckets?",
    "How do monitoring alerts escalate?",
    "How many database replicas can I add?",
    "How fast are support tickets answered?",
]


def _document(i: int, topic: str) -> Document:
    body = " ".join(
        f"{topic.capitalize()} section {i}.{k}: the {topic} setting {k} defaults to {k * (i + 2)} units, "
        f"is changed in the console under {topic.split()[0]} settings, and applies within {k + i} minutes."
        for k in range(1, 5)
    )
    return Document(text=body, doc_id=f"doc-{i:02d}", metadata={"topic": topic})


class KeywordEmbedding(MockEmbedding):
    """`MockEmbedding` whose vectors depend on the words of the text (hashed bag of words)."""

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.embed_dim
        for word in text.lower().replace("?", " ").replace(".", " ").split():
            if len(word) > 3:
                vec[zlib.crc32(word.encode()) % self.embed_dim] += 1.0
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        return [v / norm for v in vec]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


def _index() -> VectorStoreIndex:
    docs = [_document(i, topic) for i, topic in enumerate(TOPICS)]
    return VectorStoreIndex.from_documents(docs, embed_model=KeywordEmbedding(embed_dim=64))


def _run(engine_cls: type[ContextChatEngine], index: VectorStoreIndex, turns: int, rules: CacheRules) -> list[Call]:
    emu = Emulator(glm_rules=rules)
    llm = GLM(
        model=MODEL,
        api_key=SecretStr("bench"),
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=emu.transport()),
    )
    engine = engine_cls.from_defaults(retriever=index.as_retriever(similarity_top_k=2), llm=llm, system_prompt=SYSTEM)
    with get_cache_usage_handler() as usage:
        for question in (QUESTIONS * (turns // len(QUESTIONS) + 1))[:turns]:
            engine.chat(question)
    bodies = [r.body for r in emu.requests if r.path.endswith("/chat/completions")]
    records = usage.calls
    if len(bodies) != turns or len(records) != turns:
        raise RuntimeError(f"expected one LLM call per turn, got {len(bodies)} requests and {len(records)} records")
    return [
        Call(dict(body), len(render_chat(body)) - 1, record.usage) for body, record in zip(bodies, records, strict=True)
    ]


def measure(turns: int = 8, rules: CacheRules = GLM_RULES) -> list[dict[str, Any]]:
    """One row per engine: requests, input tokens, cached tokens, the common maximum, efficiency."""
    index = _index()
    runs = {
        "ContextChatEngine (stock)": _run(ContextChatEngine, index, turns, rules),
        "CacheFriendlyContextChatEngine": _run(CacheFriendlyContextChatEngine, index, turns, rules),
    }
    maxima = theoretical_max(runs["CacheFriendlyContextChatEngine"], rules)
    total_max = sum(maxima)
    rows = []
    for name, calls in runs.items():
        served = sum(min(c.usage.cache_read_tokens, m) for c, m in zip(calls, maxima, strict=True))
        input_tokens = sum(c.usage.input_tokens for c in calls)
        cached = sum(c.usage.cache_read_tokens for c in calls)
        rows.append(
            {
                "engine": name,
                "requests": len(calls),
                "input_tokens": input_tokens,
                "cached_tokens": cached,
                "hit_rate": round(cached / input_tokens, 4) if input_tokens else 0.0,
                "max_cacheable": total_max,
                "efficiency": round(served / total_max, 4) if total_max else 1.0,
            }
        )
    return rows


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
