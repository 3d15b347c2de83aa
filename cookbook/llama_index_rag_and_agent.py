"""LlamaIndex with prompt caching: a query engine, a chat engine, an agent, each with its cache report.

The package's `GLM` is a drop-in LlamaIndex LLM that lays requests out so repeated parts stay a
byte-identical prefix, and reports cached tokens on every response; `CacheUsageHandler` (here through
`get_cache_usage_handler()`) reads them from LlamaIndex's instrumentation events. Three sections:

1. A query engine (`Settings.llm = GLM(...)`) over a `VectorStoreIndex` of the handbook's fifteen
   sections, with `StableNodeOrder` so retrieved sections appear in a fixed order (by section title),
   not by score: LlamaIndex's Q&A instructions and the start of the context are served from the cache
   from the second question on.
2. The same six-turn conversation through LlamaIndex's stock `ContextChatEngine` and through
   `CacheFriendlyContextChatEngine`, side by side, each with a fresh handler. The stock engine writes
   each turn's retrieved context at the top of the system message, ahead of the system prompt and the
   history, so consecutive requests part almost at once (the handler's diagnostics say so); the
   cache-friendly engine keeps system prompt and history first and sends the context with the
   question in the newest user turn, so everything but that turn is served from the cache.
3. A `FunctionAgent` with two tools over three questions (a tool call and an answer each): every model
   call after the first reads the system prompt, the tools and the conversation so far from the cache.

The embedding is a small bag-of-words stand-in (`KeywordEmbedding`: no model, no network, the same
vectors on every run) so that each question retrieves different sections; swap in your embedding model.

Run it:
    python cookbook/llama_index_rag_and_agent.py                        # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/llama_index_rag_and_agent.py    # the real GLM API
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import textwrap
import zlib

from _common import glm_connection, handbook_sections
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.chat_engine import ContextChatEngine
from llama_index.core.memory import Memory
from llama_index.core.tools import FunctionTool

from cache_integrations.llama_index import (
    GLM,
    CacheFriendlyContextChatEngine,
    CacheUsageHandler,
    StableNodeOrder,
    get_cache_usage_handler,
)

# The handlers' diagnostics explain cache misses through `logging`; show them inline with the output.
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")

SYSTEM_PROMPT = """\
You are Kestrel's support copilot. Support agents ask about merchants' tickets; you answer the agent
(not the merchant) from the handbook sections you are given or from your tools, in at most five sentences.

How to answer:
- Quote limits, prices, deadlines and error codes exactly as the handbook writes them, and name the section.
- Track a parcel before saying anything about where it is; quote its status and last scan exactly.
- If the sections do not cover the question, say which information is missing; never guess a policy.
- When the merchant has to change something, end with the steps, numbered, one line each.
- Members may refund labels up to 200 EUR; larger refunds need an Admin, so tell the agent to escalate.
- Never ask for API keys, card numbers or passwords, and tell the agent to remove them from the ticket
  if a merchant pasted them.
- Security issues (a leaked key, an account takeover) and legal requests are not yours to solve: name
  the team to escalate to, following the handbook, and stop there.
"""

STOPWORDS = frozenset(
    ["what", "when", "which", "where", "does", "have", "that", "this", "with", "from", "your", "also"]
)


class KeywordEmbedding(BaseEmbedding):
    """A hashed bag of words: texts sharing words get similar vectors (a stand-in for a real model)."""

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * 256
        for word in re.findall(r"[a-z0-9]{4,}", text.lower()):  # words of 4+ characters ...
            if word not in STOPWORDS:
                word = word.removesuffix("s") if len(word) > 4 else word  # ... crudely singular
                vec[zlib.crc32(word.encode()) % 256] += 1.0
        norm = sum(v * v for v in vec) ** 0.5 or 1.0
        return [v / norm for v in vec]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)


def handbook_index() -> VectorStoreIndex:
    """One LlamaIndex document per handbook section; the title goes in the metadata the LLM sees."""
    docs = [
        Document(text=section.page_content.partition("\n")[2], metadata={"section": section.metadata["title"]})
        for section in handbook_sections()
    ]
    return VectorStoreIndex.from_documents(docs, embed_model=KeywordEmbedding())


def cached(handler: CacheUsageHandler) -> str:
    """The newest call's cached tokens, as the handler recorded them."""
    usage = handler.calls[-1].usage
    return f"cached {usage.cache_read_tokens:>4} of {usage.input_tokens:>4} input tokens"


# -- 1. a query engine ----------------------------------------------------------------------------

QUERIES = [
    "What happens when a client exceeds the rate limits?",
    "How are webhook deliveries retried when the endpoint fails?",
    "How does a merchant file a claim for a lost parcel, and is the label refunded?",
    "Who can create and revoke API keys?",
]


def query_engine_section(index: VectorStoreIndex) -> None:
    print("\n1. Query engine: VectorStoreIndex over the handbook, Settings.llm = GLM, StableNodeOrder")
    # Retrieved sections sorted by title: the same sections always form the same context text.
    engine = index.as_query_engine(similarity_top_k=3, node_postprocessors=[StableNodeOrder(key="section")])
    with get_cache_usage_handler() as handler:
        for n, question in enumerate(QUERIES, 1):
            response = engine.query(question)
            sections = ", ".join(node.metadata["section"] for node in response.source_nodes)
            print(f"Q{n}  {cached(handler)} | {sections}")
    print(handler.report())


# -- 2. stock ContextChatEngine versus CacheFriendlyContextChatEngine -------------------------------

CONVERSATION = [
    "A parcel has had no tracking scan for a week: is it lost?",
    "When can the merchant file a claim for it?",
    "What documents does the claim need?",
    "Is the label fee refunded too?",
    "The merchant's client also gets 429 errors: what should it do?",
    "And how many API keys can their workspace have?",
]


def chat_engine_section(index: VectorStoreIndex, llm: GLM) -> None:
    print("\n2. The same conversation through ContextChatEngine (stock) and CacheFriendlyContextChatEngine")
    handlers = {}
    for engine_cls in (ContextChatEngine, CacheFriendlyContextChatEngine):
        engine = engine_cls.from_defaults(  # the same arguments for both engines
            retriever=index.as_retriever(similarity_top_k=2),
            llm=llm,
            system_prompt=SYSTEM_PROMPT,
            memory=Memory.from_defaults(token_limit=100_000),  # never evicts: the history stays a prefix
        )
        with get_cache_usage_handler() as handler:  # a fresh handler per engine
            for question in CONVERSATION:
                engine.chat(question)
        handlers[engine_cls.__name__] = handler
    stock, friendly = handlers.values()

    print(f"{'':<4}{'question':<64}{'cached: stock':>14}{'cache-friendly':>16}")
    for n, (question, a, b) in enumerate(zip(CONVERSATION, stock.calls, friendly.calls, strict=True), 1):
        print(f"T{n:<3}{question:<64}{a.usage.cache_read_tokens:>14}{b.usage.cache_read_tokens:>16}")

    print(f"\n{'engine':<32}{'calls':>6}{'input':>7}{'cached':>8}{'hit %':>7}{'cost':>11}{'saved':>11}")
    for name, handler in handlers.items():
        t = handler.total
        tokens = f"{t.calls:>6}{t.input_tokens:>7}{t.cache_read_tokens:>8}{100 * t.hit_rate:>7.1f}"
        print(f"{name:<32}{tokens}{f'${t.cost:.6f}':>11}{f'${t.saved:.6f}':>11}")
    print(
        "Why: ContextChatEngine writes each turn's retrieved context at the top of the system message, ahead of "
        "the system prompt\nand the history, so requests differ almost from their first token; "
        "CacheFriendlyContextChatEngine sends it in the newest turn."
    )
    for name, handler in handlers.items():
        print(f"\nCache report, {name}\n{handler.report()}")


# -- 3. a FunctionAgent with two tools ------------------------------------------------------------

PARCELS = {
    "KX10442": "in_transit; last scan 9 days ago at the Leipzig hub; flagged as stalled",
    "KX10587": "delivered yesterday at 14:02, signed by 'M. Ortega'",
}

AGENT_TURNS = [
    "Can you track parcel 'KX10442'? The merchant says it never arrived.",
    "What does the handbook say about 'lost parcel claims'?",
    "Track parcel 'KX10587' as well, it belongs to the same order.",
]


def describe(event: AgentOutput) -> str:
    """What one model call did: the tool calls it made, or the start of its answer."""
    if event.tool_calls:
        return "calls " + ", ".join(
            f"{c.tool_name}({', '.join(map(repr, c.tool_kwargs.values()))})" for c in event.tool_calls
        )
    return "answers: " + textwrap.shorten(str(event.response.content), 44, placeholder="...")


async def agent_section(index: VectorStoreIndex, llm: GLM) -> None:
    print("\n3. FunctionAgent on GLM: two tools, three questions")
    retriever = index.as_retriever(similarity_top_k=1)

    def track_parcel(tracking_number: str) -> str:
        """Current tracking status and last scan of a parcel, by tracking number."""
        return PARCELS.get(tracking_number.upper(), f"unknown tracking number {tracking_number!r}")

    def handbook(topic: str) -> str:
        """The handbook section that best matches a topic (a few keywords)."""
        return retriever.retrieve(topic)[0].node.get_content()

    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(track_parcel), FunctionTool.from_defaults(handbook)],
        llm=llm,
        system_prompt=SYSTEM_PROMPT,
    )
    memory = Memory.from_defaults(session_id="ticket-4711", token_limit=100_000)  # one conversation, kept whole
    with get_cache_usage_handler() as handler:
        for turn in AGENT_TURNS:
            print(f"agent: {turn}")
            run = agent.run(turn, memory=memory)
            async for event in run.stream_events():
                if isinstance(event, AgentOutput):  # a model call has finished, and the handler has counted it
                    print(f"  step {len(handler.calls)}: model {describe(event):<52} {cached(handler)}")
                elif isinstance(event, ToolCallResult):
                    print(f"          tool {event.tool_name} -> {textwrap.shorten(str(event.tool_output), 60)}")
            await run
    print(handler.report())


def main() -> None:
    with glm_connection() as connection:
        llm = GLM(model="glm-4.7", thinking="disabled", max_tokens=300, **connection)
        Settings.llm = llm  # what the query engine (section 1) uses; sections 2 and 3 take it explicitly
        index = handbook_index()
        query_engine_section(index)
        chat_engine_section(index, llm)
        asyncio.run(agent_section(index, llm))


if __name__ == "__main__":
    main()
