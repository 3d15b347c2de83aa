"""Code that runs in separate worker processes of the fleet tests (spawned, so it is a module)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from cache_integrations.explicit import registry_from_spec
from cache_integrations.langchain import ChatGemini


def ask_cold_prefix(
    base_url: str, registry: str, api_key: str, document: str, threads: int, start_at: float
) -> list[tuple[int, str]]:
    """`threads` concurrent questions over one cold prefix; returns (cached tokens, cache name) each."""
    llm = ChatGemini(api_key=api_key, base_url=base_url, cache_registry=registry, cache_mode="always")
    llm.cache_manager.lease_poll = 0.02

    def ask(i: int) -> tuple[int, str]:
        reply = llm.invoke([("system", document), ("human", f"Worker {os.getpid()} question {i}?")])
        cached = reply.usage_metadata["input_token_details"].get("cache_read", 0) if reply.usage_metadata else 0
        return cached, (reply.response_metadata.get("cache") or {}).get("name", "")

    time.sleep(max(start_at - time.time(), 0))  # every process fires at the same instant
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(ask, range(threads)))


def hold_lease_and_hang(registry: str, namespace: str, key: str, ttl: float) -> None:
    """A creator that took the lease and then died without releasing it (the parent kills it)."""
    reg = registry_from_spec(registry)
    assert reg.acquire_lease(namespace, key, f"doomed-{os.getpid()}", ttl=ttl, now=time.time())
    print("lease held", flush=True)
    time.sleep(3600)
