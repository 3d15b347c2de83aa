"""LangChain RAG with a cache-friendly prompt: retrieved documents in a stable order, before the question.

A retriever returns its documents in score order, which changes with every question. Pasted in that
order, two questions that retrieve overlapping sections produce different prompts right after the
system prompt, and the prefix cache stops there. Sorted by a stable key with `stable_order` (here the
document id), the same sections always appear in the same order, so overlapping retrievals share a
longer prefix. The prompt is laid out most-stable first: system prompt, then the retrieved context,
then the question (the only part that is always new).

The recipe sends ten support questions through two chains that differ only in that ordering, each
with its own usage handler, and prints the cached tokens per question and the two hit rates side by
side. The retriever is an `InMemoryVectorStore` over the handbook's fifteen sections with
`DeterministicFakeEmbedding` (no network, the same vectors on every run, but arbitrary similarities:
swap in your embedding model). How much sorting gains depends on how your retrievals overlap: most
when the same sections come back in a different order, nothing when the sets are disjoint, and it
can even lose when two retrievals differ in a section that sorts first. Measure on your own traffic
(this recipe's two handlers are how).

Run it:
    python cookbook/langchain_rag.py                        # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/langchain_rag.py    # the real GLM API
"""

from __future__ import annotations

from collections.abc import Callable

from _common import glm_connection, handbook_sections
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM
from cache_integrations.layout import stable_order

SYSTEM_PROMPT = (
    "You are Kestrel's support assistant. Answer the question using only the handbook sections in the "
    "context. Quote numbers exactly as written and name the sections you used. If the sections do not "
    "answer the question, say which information is missing instead of guessing."
)

QUESTIONS = [
    # ticket 1: a parcel that never arrived
    "A parcel has had no tracking scan for a week: is it lost?",
    "When can the merchant file a claim for the lost parcel?",
    "What documents does a claim for a lost parcel need?",
    "Is the label fee refunded when the parcel is lost?",
    # ticket 2: a developer hitting errors
    "The merchant's API key returns 401 auth_invalid: what does that mean?",
    "How should the client handle 429 rate_limited errors?",
    "How many API keys can the workspace have, and how is a key rotated?",
    # ticket 3: billing
    "The merchant's card charge failed: what happens next?",
    "Can the merchant pay invoices by bank transfer instead of card?",
    "How does the merchant get a correction on a wrong invoice?",
]


def as_context(docs: list[Document]) -> str:
    return "\n\n".join(f"[{doc.id}] {doc.page_content}" for doc in docs)


def stable_context(docs: list[Document]) -> str:
    """The retrieved documents sorted by id: the same set always gives the same text."""
    return as_context(stable_order(docs, key=lambda doc: doc.id))


def naive_context(docs: list[Document]) -> str:
    """The retrieved documents in retrieval (score) order, as most RAG examples paste them."""
    return as_context(docs)


def rag_chain(retriever: Runnable, llm: ChatGLM, arrange: Callable[[list[Document]], str], tag: str) -> Runnable:
    # System prompt first, then the context, then the question. The tag opens the system prompt so
    # that the two runs below cannot share cache entries (on the real API too): both start cold.
    prompt = ChatPromptTemplate.from_messages(
        [("system", f"[{tag}] {SYSTEM_PROMPT}"), ("human", "Handbook sections:\n\n{context}\n\nQuestion: {question}")]
    )
    context = retriever | RunnableLambda(arrange)
    return {"context": context, "question": RunnablePassthrough()} | prompt | llm | StrOutputParser()


def main() -> None:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=256))
    store.add_documents(handbook_sections())  # ids are the section slugs, e.g. "rate-limits"
    retriever = store.as_retriever(search_kwargs={"k": 4})

    with glm_connection() as connection:
        llm = ChatGLM(model="glm-4.7", thinking="disabled", max_tokens=300, **connection)
        handlers = {"stable": CacheUsageCallbackHandler(), "naive": CacheUsageCallbackHandler()}
        chains = {
            "stable": rag_chain(retriever, llm, stable_context, tag="stable run"),
            "naive": rag_chain(retriever, llm, naive_context, tag="naive run"),
        }
        rows = []
        for question in QUESTIONS:
            cached = {}
            for name, chain in chains.items():
                chain.invoke(question, config={"callbacks": [handlers[name]]})
                cached[name] = handlers[name].calls[-1].usage.cache_read_tokens
            ids = ", ".join(doc.id for doc in retriever.invoke(question))  # the same retrieval the chains made
            rows.append((ids, cached["stable"], cached["naive"]))

    width = max(len(ids) for ids, _, _ in rows)
    print(f"\n{'':<4} {'retrieved (score order)':<{width}} {'cached: stable':>14} {'naive':>6}")
    for n, (ids, stable, naive) in enumerate(rows, 1):
        print(f"Q{n:<3} {ids:<{width}} {stable:>14} {naive:>6}")

    print(f"\n{'placement':<26} {'calls':>5} {'input':>6} {'cached':>6} {'hit %':>6}")
    for name, label in (("stable", "stable (sorted by id)"), ("naive", "naive (retrieval order)")):
        t = handlers[name].total
        print(f"{label:<26} {t.calls:>5} {t.input_tokens:>6} {t.cache_read_tokens:>6} {100 * t.hit_rate:>6.1f}")
    for name, handler in handlers.items():
        print(f"\nCache report, {name} placement\n{handler.report()}")


if __name__ == "__main__":
    main()
