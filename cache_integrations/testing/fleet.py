"""Drive a fleet of worker processes at one cold prefix, as many service workers would.

Used by the project's tests and benchmark, and by users who want to check that their registry set-up
creates one cache per prefix: `run_fleet(...)` spawns `processes` workers, each sending `threads`
concurrent questions over the same document through ChatGemini at the same instant. `run_file_fleet`
does the same with a file (a PDF) attached to every question: it must be uploaded once.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["FleetResult", "ask_about_one_file", "run_file_fleet", "run_fleet"]


@dataclass(frozen=True, slots=True)
class FleetResult:
    replies: tuple[tuple[int, str], ...]
    """(cached tokens, cache name) per request."""
    seconds: float
    """Wall time from the common start instant until the last reply."""


def ask_cold_prefix(
    base_url: str, registry: str, api_key: str, document: str, threads: int, start_at: float
) -> list[tuple[int, str]]:
    """In a worker: `threads` concurrent questions over one prefix; (cached tokens, cache name) each."""
    from pydantic import SecretStr

    from cache_integrations.langchain import ChatGemini

    llm = ChatGemini(api_key=SecretStr(api_key), base_url=base_url, cache_registry=registry, cache_mode="always")
    llm.cache_manager.lease_poll = 0.02

    def ask(i: int) -> tuple[int, str]:
        reply = llm.invoke([("system", document), ("human", f"Worker {os.getpid()} question {i}?")])
        cached = reply.usage_metadata["input_token_details"].get("cache_read", 0) if reply.usage_metadata else 0
        return cached, (reply.response_metadata.get("cache") or {}).get("name", "")

    time.sleep(max(start_at - time.time(), 0))  # every process fires at the same instant
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(ask, range(threads)))


def run_fleet(
    base_url: str,
    registry: str,
    document: str,
    *,
    processes: int = 4,
    threads: int = 25,
    api_key: str = "fleet-key",
    warmup: float = 4.0,
) -> FleetResult:
    """Run the fleet (spawned processes) and collect every reply; `warmup` covers their start-up."""
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        start_at = time.time() + warmup
        futures = [
            pool.submit(ask_cold_prefix, base_url, registry, api_key, document, threads, start_at)
            for _ in range(processes)
        ]
        replies = tuple(r for f in futures for r in f.result(timeout=300))
        return FleetResult(replies, time.time() - start_at)


def ask_about_one_file(
    base_url: str, registry: str, api_key: str, data: bytes, mime_type: str, threads: int, start_at: float
) -> int:
    """In a worker: `threads` concurrent questions, each carrying `data` (always through the Files API).
    Returns how many were answered; the server's log shows which file each one referred to."""
    import base64

    from langchain_core.messages import HumanMessage
    from pydantic import SecretStr

    from cache_integrations.langchain import ChatGemini

    llm = ChatGemini(
        api_key=SecretStr(api_key),
        base_url=base_url,
        cache_registry=registry,
        cache_mode="off",
        file_upload_threshold=0,
    )
    llm.files.chunk_size = 1  # rounded up to the server's granularity: several chunks, so uploads overlap
    block = {"type": "file", "base64": base64.b64encode(data).decode(), "mime_type": mime_type}

    def ask(i: int) -> bool:
        reply = llm.invoke([HumanMessage(content=[{"type": "text", "text": f"Question {i}"}, block])])
        return bool(reply.content)

    time.sleep(max(start_at - time.time(), 0))
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(ask, range(threads)))


def run_file_fleet(
    base_url: str,
    registry: str,
    data: bytes,
    mime_type: str,
    *,
    processes: int = 3,
    threads: int = 4,
    api_key: str = "fleet-key",
    warmup: float = 4.0,
) -> int:
    """Run `processes` spawned workers asking about the same file at once; how many questions were answered."""
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        start_at = time.time() + warmup
        futures = [
            pool.submit(ask_about_one_file, base_url, registry, api_key, data, mime_type, threads, start_at)
            for _ in range(processes)
        ]
        return sum(f.result(timeout=300) for f in futures)
