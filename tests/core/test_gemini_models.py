"""Which Gemini models take explicit caches (one table, with its source), and Gemini's refusal as a typed error."""

from __future__ import annotations

import base64
import pickle
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from pydantic import SecretStr

from cache_integrations import CachedContentNotSupportedError, ExplicitCachingUnsupportedError, NotFoundError
from cache_integrations.gemini_models import explicit_caching_supported, min_cache_tokens
from cache_integrations.langchain import ChatGemini
from cache_integrations.providers.gemini import GeminiProvider
from cache_integrations.testing import CacheRules, Emulator, FakeClock
from tests.media import samples


@pytest.mark.parametrize(
    ("model", "supported", "minimum"),
    [
        ("gemini-2.5-flash", True, 2048),
        ("gemini-2.5-pro", True, 2048),
        ("gemini-2.5-flash-lite", True, 2048),
        ("models/gemini-3.1-pro-preview", True, 4096),
        ("gemini-3-flash", True, 4096),
        ("gemini-3.8-flash", True, 4096),
        ("gemini-4-argon", False, 4096),
        ("gemini-4.1-argon-preview", False, 4096),
        ("gemini-omni-flash-preview", False, None),
        ("gemini-flash-latest", False, None),  # an alias may move to a generation without explicit caches
        ("gemini-2.0-flash", True, None),
    ],
)
def test_the_capability_table(model: str, supported: bool, minimum: int | None) -> None:
    assert explicit_caching_supported(model) is supported
    assert min_cache_tokens(model) == minimum


def test_gemini_refusing_a_cache_is_a_typed_error_naming_the_model() -> None:
    provider = GeminiProvider(api_key=SecretStr("k"))
    message = (
        "models/gemini-2.5-flash-lite is not found for API version v1beta, or is not supported for "
        "createCachedContent. Call ListModels to see the list of available models and their supported methods."
    )
    error = provider.error_from_body(404, {"error": {"code": 404, "message": message, "status": "NOT_FOUND"}})
    assert isinstance(error, CachedContentNotSupportedError) and isinstance(error, NotFoundError)
    assert (error.model, error.status_code, error.code) == ("gemini-2.5-flash-lite", 404, "NOT_FOUND")
    assert pickle.loads(pickle.dumps(error)).model == "gemini-2.5-flash-lite"
    other = provider.error_from_body(
        404, {"error": {"code": 404, "message": "models/x is not found", "status": "NOT_FOUND"}}
    )
    assert not isinstance(other, CachedContentNotSupportedError)
    unsupported = ExplicitCachingUnsupportedError("gemini-4-argon does not ...", model="gemini-4-argon")
    assert pickle.loads(pickle.dumps(unsupported)).model == "gemini-4-argon"


def test_the_emulator_offers_no_cache_method_on_gemini_4() -> None:
    emu = Emulator()
    client = httpx.Client(transport=emu.transport(), headers={"x-goog-api-key": "k"})
    methods = client.get("http://emulator/v1beta/models/gemini-4-argon").json()["supportedGenerationMethods"]
    assert methods == ["generateContent", "countTokens"]
    answer = client.post(
        "http://emulator/v1beta/cachedContents",
        json={"model": "models/gemini-4-argon", "contents": [{"role": "user", "parts": [{"text": "x " * 5000}]}]},
    )
    assert answer.status_code == 404 and "not supported for createCachedContent" in answer.json()["error"]["message"]
    assert (
        "createCachedContent"
        in client.get("http://emulator/v1beta/models/gemini-2.5-flash").json()["supportedGenerationMethods"]
    )


async def test_async_auto_mode_counts_a_media_prefix_with_count_tokens() -> None:
    clock = FakeClock()
    emu = Emulator(clock=clock, gemini_rules=CacheRules(enabled=False))
    transport = emu.transport()
    llm = ChatGemini(  # no sync client: a blocking countTokens inside the async path would fail
        api_key="k", base_url="http://emulator/v1beta", http_async_client=httpx.AsyncClient(transport=transport),
        cache_registry="memory", file_upload_threshold=0,
    )  # fmt: skip
    llm.cache_manager.clock = clock.time
    pdf = base64.b64encode(samples.pdf(12)).decode()
    prefix = HumanMessage(
        content=[{"type": "file", "base64": pdf, "mime_type": "application/pdf"}],
        additional_kwargs={"cache_control": {"type": "ephemeral"}},
    )
    replies: list[Any] = []
    for i in range(6):
        replies.append(await llm.ainvoke([("system", "Analyst."), prefix, HumanMessage(f"Q{i}")]))
    assert len([r for r in emu.requests if r.path.endswith(":countTokens")]) == 1
    assert emu.counters.caches_created == 1
    assert replies[-1].usage_metadata["input_token_details"]["cache_read"] >= 12 * 258
