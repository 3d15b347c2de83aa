"""A PDF in a Gemini cache: the flight-plan flow of Google's caching guide, through ChatGemini.

Google's caching guide uploads the Apollo 17 flight plan through the Files API, caches it with the
system instruction "You are an expert at analyzing transcripts." and asks questions against the
cache. Here the same flow runs on `ChatGemini`:

1. `llm.upload_file(pdf)` uploads the PDF once (resumable upload, with a progress bar on a terminal)
   and returns a handle; the same content is never uploaded twice under one key, in any process
   sharing the registry, and it is uploaded again by itself after its 48 hours;
2. `llm.cache_context(handle, system=...)` puts the file in an explicit cache (the cache's contents
   hold a ``fileData`` part; Gemini counts its tokens, 258 a page) and returns a chat model bound to it;
3. every question sends only itself; the ``with`` block deletes the cache at the end.

The PDF is a twelve-page summary flight plan the recipe writes itself (`_media.flight_plan_pdf`), so
nothing is downloaded. The report's cost includes the cache's storage, so the savings printed at the
end are net of storage, against sending the PDF inline with every question.

Run it:
    python cookbook/gemini_pdf_cache.py                       # offline, on the emulator
    GEMINI_API_KEY=... python cookbook/gemini_pdf_cache.py    # the real Gemini API
"""

from __future__ import annotations

from _common import OUTPUT_DIR, gemini_connection
from _media import flight_plan_pdf, upload_bar

from cache_integrations.langchain import ChatGemini, get_cache_usage_callback

SYSTEM = "You are an expert at analyzing transcripts."

QUESTIONS = [
    "Please summarize this flight plan.",
    "Who is the crew, and which spacecraft did each of them fly?",
    "When and where did the lunar module land?",
    "How long were the three moonwalks, and which was the longest?",
    "How many kilograms of samples came back in total?",
    "When was the splashdown, and which ship recovered the crew?",
]


def main() -> None:
    pdf = flight_plan_pdf(OUTPUT_DIR / "a17_flight_plan.pdf")
    with gemini_connection() as connection:
        llm = ChatGemini(model="gemini-2.5-flash", cache_ttl=900, thinking_budget=0, max_tokens=300, **connection)
        with get_cache_usage_callback() as handler:
            with upload_bar(pdf.name) as progress:
                plan = llm.upload_file(pdf, display_name="A17 flight plan", progress=progress)
            print(f"Uploaded {plan.name}: {plan.size} bytes, {plan.mime_type}, {plan.state}")
            again = llm.upload_file(pdf)  # the same content: no second upload
            print(f"Uploaded again: {again.name} (the same file, nothing sent)")

            with llm.cache_context(plan, system=SYSTEM) as doc:  # deleted when the block ends
                print(f"Cached {doc.cache_name}: {doc.tokens} tokens (Gemini's count), TTL {llm.cache_ttl:g} s")
                for n, question in enumerate(QUESTIONS, 1):
                    reply = doc.invoke(question)
                    details = reply.usage_metadata["input_token_details"] if reply.usage_metadata else {}
                    total = reply.usage_metadata["input_tokens"] if reply.usage_metadata else 0
                    print(f"Q{n} cached {details.get('cache_read', 0):>5} of {total:>5} input tokens")
            print(f"Deleted {doc.cache_name}")
            deleted_files = llm.delete_files()  # the files this library uploaded under this key
            print(f"Deleted {deleted_files} uploaded file(s)")

    total = handler.total
    saved_share = 100 * total.saved / total.cost_without_caching if total.cost_without_caching else 0
    print(
        f"\nNet savings after storage: saved {total.saved:.6f} USD of {total.cost_without_caching:.6f} "
        f"({saved_share:.1f} %); storage {total.storage_cost:.6f} USD for the {llm.cache_ttl / 60:g}-minute TTL"
    )
    print()
    print(handler.report())


if __name__ == "__main__":
    main()
