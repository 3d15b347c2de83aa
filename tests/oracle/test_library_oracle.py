"""The library's parsers against hand-copied real provider bodies (see ``tests/oracle/__init__.py``).

Expected values are written out from the oracle files by hand; nothing here comes from the emulator.
Bodies are parsed directly (``parse_response``, ``StreamParser``, ``parse_cached_content``) and, for
errors, served through ``httpx.MockTransport`` so the provider's own error classification runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cache_integrations.errors import (
    AuthenticationError,
    BadRequestError,
    CachedContentNotFoundError,
    CachedContentTooSmallError,
    InsufficientBalanceError,
    ProviderError,
    RateLimitError,
)
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers import RetryPolicy
from cache_integrations.providers import gemini as gemini_wire
from cache_integrations.providers import glm as glm_wire
from cache_integrations.usage import Usage

from . import HERE, error, load

# ------------------------------------------------------------------------------------------- GLM


def test_glm_non_stream_with_cached_tokens() -> None:
    body = load("glm_chat_tool_call_cached_tokens")["body"]
    reply = glm_wire.parse_response(body)
    assert reply.usage == Usage(input_tokens=179, cache_read_tokens=44, output_tokens=70)
    assert reply.finish_reason == "tool_calls"
    assert reply.model == "glm-4.6v" and reply.id == "20251111175629f43492c8ddc74b40"
    (call,) = reply.message.tool_calls
    assert (call.id, call.name, dict(call.arguments)) == (
        "call_-8170221349237369383",
        "weather",
        {"location": "Florence,Italy"},
    )
    assert reply.message.reasoning is not None and reply.message.reasoning.startswith("\nThe user")


def test_glm_stream_usage_from_the_finish_chunk() -> None:
    events = load("glm_stream_finish_chunk")["sse_events"]
    parser = glm_wire.StreamParser()
    chunks = [c for c in (parser.feed(e if isinstance(e, str) else _dumps(e)) for e in events) if c is not None]
    final = parser.finish()
    assert "".join(c.reasoning for c in chunks) == "The" and "".join(c.text for c in chunks) == "2"
    assert final.finish_reason == "stop" and final.model == "glm-4.7"
    assert final.usage == Usage(input_tokens=13, cache_read_tokens=1, output_tokens=59, reasoning_tokens=49)


@pytest.mark.parametrize(
    ("name", "cls", "status", "code"),
    [
        ("messages_illegal", BadRequestError, 400, "1214"),
        ("insufficient_balance", InsufficientBalanceError, 429, "1113"),
        ("overloaded", RateLimitError, 429, "1305"),
    ],
)
def test_glm_errors_are_typed(name: str, cls: type[ProviderError], status: int, code: str) -> None:
    entry = error("glm_errors", name)
    provider = glm_wire.GLMProvider(
        api_key=SecretStr("oracle-key"),
        base_url="https://open.bigmodel.cn/api/paas/v4",
        http_client=_serving(entry["status"], entry["body"]),
        retry_policy=RetryPolicy(max_retries=0),
    )
    with pytest.raises(ProviderError) as caught:
        provider.chat(ChatRequest("glm-4.7", (Message("user", "hi"),)))
    assert type(caught.value) is cls
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert caught.value.message == entry["body"]["error"]["message"]


# ---------------------------------------------------------------------------------------- Gemini


def test_gemini_generate_with_cached_content() -> None:
    body = load("gemini_generate_cached_content_usage")["body"]
    reply = gemini_wire.parse_response(body)
    # promptTokenCount includes the cached tokens; thoughts are output
    assert reply.usage == Usage(input_tokens=3520, cache_read_tokens=3512, output_tokens=44, reasoning_tokens=42)
    assert reply.message.content == "Paris." and reply.finish_reason == "STOP"
    assert reply.model == "gemini-2.5-flash" and reply.id == "_VQYaqvRGbW6qtsPg4TDoAg"


def test_gemini_cached_content_resource() -> None:
    cache = gemini_wire.parse_cached_content(load("gemini_cached_content_resource")["body"])
    assert cache.name == "cachedContents/7lf5him5ev4iemi1yjv2gwli5bhpz3yidzejwllo"
    assert cache.model == "gemini-2.5-flash" and cache.display_name == ""
    assert cache.total_token_count == 3512
    assert cache.create_time == cache.update_time == datetime(2026, 5, 28, 14, 45, 17, 41985, tzinfo=UTC)
    assert cache.expire_time == datetime(2026, 5, 28, 14, 47, 16, 701652, tzinfo=UTC)  # 9 digits cut to 6


@pytest.mark.parametrize(
    ("name", "cls", "status", "code"),
    [
        ("cache_not_found", CachedContentNotFoundError, 403, "PERMISSION_DENIED"),
        ("cache_too_small", CachedContentTooSmallError, 400, "INVALID_ARGUMENT"),
        ("api_key_invalid", AuthenticationError, 400, "INVALID_ARGUMENT"),
    ],
)
def test_gemini_errors_are_typed(name: str, cls: type[ProviderError], status: int, code: str) -> None:
    entry = error("gemini_errors", name)
    provider = gemini_wire.GeminiProvider(
        api_key=SecretStr("oracle-key"),
        http_client=_serving(entry["status"], entry["body"]),
        retry_policy=RetryPolicy(max_retries=0),
    )
    with pytest.raises(ProviderError) as caught:
        provider.chat(ChatRequest("gemini-2.5-flash", (Message("user", "hi"),)))
    assert type(caught.value) is cls
    assert (caught.value.status_code, caught.value.code) == (status, code)
    if isinstance(caught.value, CachedContentTooSmallError):
        assert (caught.value.total_token_count, caught.value.min_total_token_count) == (896, 1024)


def test_gemini_builtin_tools_stream_reports_the_final_chunk() -> None:
    events = load("gemini_stream_builtin_tools")["sse_events"]
    parser = gemini_wire.StreamParser(model="gemini-3-flash-preview")
    for event in events:
        parser.feed(_dumps(event))
    final = parser.finish()
    # final chunk: promptTokenCount 213 + toolUsePromptTokenCount 426, candidatesTokenCount 57, no thoughts
    assert final.usage == Usage(input_tokens=639, output_tokens=57)
    assert final.usage.total_tokens == 696  # Google's totalTokenCount


def _dumps(obj: Any) -> str:
    return json.dumps(obj)


def _serving(status: int, body: Any) -> httpx.Client:
    """An httpx client whose every request is answered with ``status`` and ``body`` (no network)."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"content-type": "application/json; charset=UTF-8"})

    return httpx.Client(transport=httpx.MockTransport(answer))


def test_every_oracle_body_names_its_source_and_dates() -> None:
    files = sorted(HERE.glob("*.json"))
    assert len(files) >= 7
    for path in files:
        data = load(path.stem)
        assert data["source"] and data["copied"].startswith("2026-"), path.name
        for entry in data.get("errors", [data]):
            assert entry.get("source") and entry.get("status") in (200, 400, 401, 403, 404, 429), path.name
