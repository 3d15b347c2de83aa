"""`ExplicitCacheManager`'s plan-level API for clients that send requests themselves: acquire, settle,
invalidate, recover (sync and async), in-process against the emulator."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from cache_integrations import Message
from cache_integrations.explicit import ExplicitCacheManager, MemoryRegistry
from cache_integrations.messages import ChatRequest
from cache_integrations.providers.gemini import GeminiProvider
from cache_integrations.testing import Emulator, FakeClock
from cache_integrations.usage import Usage

from ._support import API_KEY, BASE_URL, DOC, SYSTEM


def _manager(emu: Emulator, clock: FakeClock, **kwargs: Any) -> ExplicitCacheManager:
    transport = emu.transport()
    provider = GeminiProvider(
        api_key=SecretStr(API_KEY),
        base_url=BASE_URL,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )
    registry = MemoryRegistry()
    return ExplicitCacheManager(provider, registry=registry, clock=clock.time, registry_cache_seconds=0, **kwargs)


def _request(question: str = "What did unit 3 do?") -> ChatRequest:
    return ChatRequest("gemini-2.5-flash", (Message("system", f"{SYSTEM}\n{DOC}"), Message("user", question)))


def test_acquire_settle_invalidate() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock)
    manager = _manager(emu, clock, mode="always")
    assert manager.acquire(ChatRequest("gemini-2.5-flash", (Message("user", "no prefix"),))) is None
    decision = manager.acquire(_request())
    assert decision is not None and decision.name is not None and decision.cached_messages == 0
    assert decision.use is not None and decision.use.created and decision.use.written_tokens == decision.use.tokens
    manager.settle(decision, Usage(input_tokens=10, cache_read_tokens=decision.use.tokens))
    (entry,) = manager.registry.entries(manager.namespace)
    assert entry.uses == 1 and entry.name == decision.name
    again = manager.acquire(_request("Another?"))
    assert again is not None and again.name == decision.name and again.use is not None and not again.use.created
    manager.invalidate(again)
    assert manager.registry.entries(manager.namespace) == []
    assert emu.counters.caches_created == 1  # invalidating only forgets: the client reported it gone


def test_off_mode_and_inline_decisions() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock)
    assert _manager(emu, clock, mode="off").acquire(_request()) is None
    auto = _manager(emu, clock)
    first = auto.acquire(_request())
    assert first is not None and first.name is None and first.use is None and first.cached_messages == 0
    auto.settle(first, Usage(input_tokens=100, cache_read_tokens=0))  # an inline send: nothing to touch
    assert emu.counters.caches_created == 0


async def test_async_acquire_and_recover() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock)
    manager = _manager(emu, clock, mode="always")
    decision = await manager.aacquire(_request())
    assert decision is not None and decision.name is not None
    emu.delete_cached_content(decision.name)
    recovered = await manager.arecover(decision, _request())
    assert recovered.name not in (None, decision.name) and recovered.use is not None and recovered.use.recovered
    assert [e.name for e in manager.registry.entries(manager.namespace)] == [recovered.name]
