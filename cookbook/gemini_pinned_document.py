"""Long-document Q&A on an explicitly pinned Gemini cache: pin once, ask ten questions, delete.

`ChatGemini.cache_context()` puts the system instruction and the document in a Gemini
``cachedContents`` resource right away and returns a handle; `handle.invoke(question)` sends only the
question, and Gemini bills the pinned tokens at the cached rate. Unlike implicit caching, an explicit
cache also costs storage (tokens x hours it lives): the report's ``cost`` includes that storage, so
``saved`` is the net saving. Deleting the cache at the end stops the storage.

Run it:
    python cookbook/gemini_pinned_document.py                       # offline, on the emulator
    GEMINI_API_KEY=... python cookbook/gemini_pinned_document.py    # the real Gemini API
"""

from __future__ import annotations

from _common import gemini_connection, handbook

from cache_integrations.langchain import ChatGemini, get_cache_usage_callback

SYSTEM = (
    "You answer support agents' questions about the Kestrel handbook you are given. Answer only from "
    "the handbook, quote numbers exactly, and name the section you used."
)

QUESTIONS = [
    "How many webhook endpoints can a workspace register, and when is one disabled?",
    "What does the Growth plan cost per month and per label?",
    "How long do postage refunds take to come back?",
    "Which items does the API refuse as restricted?",
    "When are recipient names pseudonymized?",
    "What service credit does a Scale customer get at 99.2 % uptime?",
    "When is the yearly deploy freeze?",
    "How quickly must a Scale severity 1 issue get a first answer?",
    "What happens after the third failed card charge?",
    "How long can a shipment creation be retried with the same Idempotency-Key?",
]


def main() -> None:
    with gemini_connection() as connection:
        # cache_ttl: how long the cache may live (storage is booked for it); thinking_budget=0 turns
        # Flash's thinking off, which only adds output tokens.
        llm = ChatGemini(model="gemini-2.5-flash", cache_ttl=900, thinking_budget=0, max_tokens=300, **connection)

        with get_cache_usage_callback() as handler:
            pinned = llm.cache_context(handbook(), system=SYSTEM)  # creates the cache now
            print(f"Pinned {pinned.name}: {pinned.tokens} tokens, expires {pinned.expire_time:%Y-%m-%d %H:%M:%S} UTC")
            try:
                for n, question in enumerate(QUESTIONS, 1):
                    reply = pinned.invoke(question)
                    details = reply.usage_metadata["input_token_details"]
                    print(
                        f"Q{n:<2} cached {details.get('cache_read', 0):>5} of {reply.usage_metadata['input_tokens']:>5}"
                        f" input tokens (written {details.get('cache_creation', 0)})"
                    )
            finally:
                pinned.delete()  # stop paying for storage, even if a question failed
                print(f"Deleted {pinned.name}")

    total = handler.total
    print(
        f"\nNet savings after storage: saved {total.saved:.6f} USD of {total.cost_without_caching:.6f} "
        f"({100 * total.saved / total.cost_without_caching:.1f} %); storage {total.storage_cost:.6f} USD, "
        f"booked for the whole {llm.cache_ttl / 60:g}-minute TTL at creation"
    )
    print()
    print(handler.report())


if __name__ == "__main__":
    main()
