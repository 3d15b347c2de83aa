"""Fixtures for the LlamaIndex adapter: LLMs wired to an in-process emulator, clean global state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from llama_index.core import Settings

from cache_integrations.llama_index import GLM, CacheUsageHandler, Gemini, get_cache_usage_handler
from cache_integrations.testing import Emulator, FakeClock

GLM_BASE_URL = "http://emulator/api/paas/v4"
GEMINI_BASE_URL = "http://emulator/v1beta"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    return Emulator(clock=clock)


def make_glm(emu: Emulator, **kwargs: Any) -> GLM:
    transport = emu.transport()
    return GLM(
        api_key=kwargs.pop("api_key", "sk-emulated-secret-0123456789"),
        base_url=GLM_BASE_URL,
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )


def make_gemini(emu: Emulator, clock: FakeClock, **kwargs: Any) -> Gemini:
    transport = emu.transport()
    kwargs.setdefault("cache_registry", "memory")
    llm = Gemini(
        api_key=kwargs.pop("api_key", "gemini-test-key"),
        base_url=GEMINI_BASE_URL,
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )
    llm.cache_manager.clock = clock.time
    return llm


@pytest.fixture
def glm(emu: Emulator) -> GLM:
    return make_glm(emu)


@pytest.fixture
def usage() -> Iterator[CacheUsageHandler]:
    with get_cache_usage_handler() as handler:
        yield handler


@pytest.fixture
def settings() -> Iterator[Any]:
    """`Settings` for one test; the global LLM, embedding and callback manager are restored after."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    try:
        yield Settings
    finally:
        Settings._llm, Settings._embed_model, Settings._callback_manager = saved
