"""Repeated analysis of a video on one Gemini cache: upload, wait, cache, ask, delete.

Google's caching guide names "repeated analysis of long video files" as a use case: the video is
uploaded through the Files API, polled until it is no longer PROCESSING, cached, and questioned many
times while only the questions are sent. `ChatGemini` does each step:

1. `llm.upload_file(video)` uploads it once (progress bar on a terminal) and waits until Gemini has
   processed it (state ACTIVE); a FAILED file raises an error naming ``files/<id>``;
2. `llm.cache_context(handle, system=...)` caches it (Gemini counts a video's tokens per second);
3. the questions are sent through the pinned context, a LangChain chat model: here `batch` asks
   three at once, `stream` prints one as it comes;
4. `delete()` stops the cache's storage, `delete_files()` removes the upload.

The video is a one-minute Motion-JPEG AVI the recipe draws itself (`_media.countdown_video`); pass a
path to analyze your own (``python cookbook/gemini_video_analysis.py my_video.mp4``). The savings printed
at the end are net of the cache's storage, against sending the video with every question.

Run it:
    python cookbook/gemini_video_analysis.py                       # offline, on the emulator
    GEMINI_API_KEY=... python cookbook/gemini_video_analysis.py    # the real Gemini API
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import OUTPUT_DIR, gemini_connection
from _media import countdown_video, upload_bar

from cache_integrations.langchain import ChatGemini, get_cache_usage_callback

SYSTEM = (
    "You are an expert video analyzer, and your job is to answer the user's query based on the video file "
    "you have access to."
)

QUESTIONS = [
    "What happens in this video, second by second, in five bullet points?",
    "What text appears on screen, and when does it change?",
    "How long is the countdown, and what comes after it?",
    "Which colours dominate each part of the video?",
]


def main() -> None:
    video = Path(sys.argv[1]) if len(sys.argv) > 1 else countdown_video(OUTPUT_DIR / "countdown.avi")
    with gemini_connection() as connection:
        llm = ChatGemini(model="gemini-2.5-flash", cache_ttl=600, thinking_budget=0, max_tokens=300, **connection)
        with get_cache_usage_callback() as handler:
            with upload_bar(video.name) as progress:
                clip = llm.upload_file(video, display_name=video.name, progress=progress)  # waits until ACTIVE
            print(f"Uploaded {clip.name}: {clip.size} bytes, {clip.mime_type}, {clip.state}")

            doc = llm.cache_context(clip, system=SYSTEM)
            try:
                print(f"Cached {doc.cache_name}: {doc.tokens} tokens (Gemini's count), TTL {llm.cache_ttl:g} s")
                replies = doc.batch(QUESTIONS[:3])  # three questions at once, all against the one cache
                for n, reply in enumerate(replies, 1):
                    details = reply.usage_metadata["input_token_details"] if reply.usage_metadata else {}
                    total = reply.usage_metadata["input_tokens"] if reply.usage_metadata else 0
                    print(f"Q{n} cached {details.get('cache_read', 0):>5} of {total:>5} input tokens")
                print(f"Q{len(QUESTIONS)} (streamed): ", end="")
                for chunk in doc.stream(QUESTIONS[-1]):
                    print(chunk.content, end="", flush=True)
                print()
            finally:
                doc.delete()  # storage stops, even if a question failed
                print(f"Deleted {doc.cache_name}")
            print(f"Deleted {llm.delete_files()} uploaded file(s)")

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
