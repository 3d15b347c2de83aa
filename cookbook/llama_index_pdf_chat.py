"""LlamaIndex: a multi-turn chat about a PDF held in a Gemini cache (`DocumentBlock`).

`Gemini.cache_context` takes LlamaIndex messages: here one user message holding the flight plan as a
`DocumentBlock` (from its path) and a line of text. The PDF goes through the Files API once, the
cache holds it, and the returned LLM is bound to that cache: each turn sends the conversation so far
(after the cached document), never the document itself. The ``with`` block deletes the cache.

`get_cache_usage_handler` reports every call (cached tokens, cost with the cache's storage, the cost
without caching), so the savings printed at the end are net of storage, against sending the PDF with
every turn.

Run it:
    python cookbook/llama_index_pdf_chat.py                       # offline, on the emulator
    GEMINI_API_KEY=... python cookbook/llama_index_pdf_chat.py    # the real Gemini API
"""

from __future__ import annotations

from _common import OUTPUT_DIR, gemini_connection
from _media import flight_plan_pdf
from llama_index.core.base.llms.types import ChatMessage, DocumentBlock, TextBlock

from cache_integrations.llama_index import Gemini, get_cache_usage_handler

SYSTEM = "You are an expert at analyzing transcripts. Answer from the flight plan; cite its page numbers."

TURNS = [
    "What are the three moonwalks in this plan?",
    "Which one drove the farthest, and how far?",
    "And what did they find at Shorty crater on that one?",
    "How long after the last moonwalk did the ascent stage lift off?",
]


def main() -> None:
    pdf = flight_plan_pdf(OUTPUT_DIR / "a17_flight_plan.pdf")
    with gemini_connection() as connection:
        # LlamaIndex's Gemini takes the same settings as ChatGemini (cache_registry, api_key, base_url, ...)
        llm = Gemini(model="gemini-2.5-flash", cache_ttl=900, thinking_budget=0, max_tokens=300, **connection)
        document = ChatMessage(
            role="user",
            blocks=[
                DocumentBlock(path=pdf, title="A17 flight plan", document_mimetype="application/pdf"),
                TextBlock(text="This is the mission's summary flight plan."),
            ],
        )
        with get_cache_usage_handler() as usage:
            with llm.cache_context([document], system=SYSTEM) as doc:
                print(f"Cached {doc.name}: {doc.tokens} tokens (Gemini's count), TTL {llm.cache_ttl:g} s")
                history: list[ChatMessage] = []
                for n, turn in enumerate(TURNS, 1):
                    history.append(ChatMessage(role="user", content=turn))
                    reply = doc.chat(history)  # the cached document, then the conversation
                    history.append(reply.message)
                    tokens = reply.raw["usage"] if reply.raw else {}
                    read = tokens.get("prompt_tokens_details", {}).get("cached_tokens", 0)
                    print(f"T{n} cached {read:>5} of {tokens.get('prompt_tokens', 0):>5} input tokens")
            print(f"Deleted {doc.name}")
            print(f"Deleted {llm.delete_files()} uploaded file(s)")

    total = usage.total
    saved_share = 100 * total.saved / total.cost_without_caching if total.cost_without_caching else 0
    print(
        f"\nNet savings after storage: saved {total.saved:.6f} USD of {total.cost_without_caching:.6f} "
        f"({saved_share:.1f} %); storage {total.storage_cost:.6f} USD for the {llm.cache_ttl / 60:g}-minute TTL"
    )
    print()
    print(usage.report())


if __name__ == "__main__":
    main()
