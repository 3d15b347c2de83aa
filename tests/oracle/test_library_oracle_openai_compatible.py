"""The OpenAI-compatible transport's readers on the shapes each server answers with (bodies written by hand after
the sources named in each test; expected values by hand)."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from cache_integrations.errors import BadRequestError, ServerError
from cache_integrations.providers.openai_compatible import OpenAICompatibleProvider, usage_with_timings
from cache_integrations.usage import Usage, usage_from_openai


def _provider(label: str) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(label=label, api_key=SecretStr("sk-test"), base_url="http://localhost:8080/v1")


def _answer(usage: dict[str, object], **extra: object) -> dict[str, object]:
    message = {"role": "assistant", "content": "Olá!"}
    return {"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": usage, **extra}  # fmt: skip


def test_llamacpp_reused_prompt_tokens_are_cache_reads() -> None:
    # llama.cpp server b7010 (charmbracelet/fantasy providertests/testdata/TestOpenAICompatibleCommon/
    # llama-cpp-gpt-oss, 2025-11): usage without prompt_tokens_details; the slot's reuse in timings.cache_n,
    # the prompt tokens evaluated anew in timings.prompt_n (cache_n + prompt_n = prompt_tokens).
    cold = _answer(
        {"completion_tokens": 47, "prompt_tokens": 84, "total_tokens": 131}, timings={"cache_n": 0, "prompt_n": 84}
    )
    warm = _answer(
        {"completion_tokens": 57, "prompt_tokens": 84, "total_tokens": 141}, timings={"cache_n": 83, "prompt_n": 1}
    )
    llamacpp = _provider("llamacpp")
    assert llamacpp._parse(cold, "fp").usage == Usage(input_tokens=84, output_tokens=47)
    assert llamacpp._parse(warm, "fp").usage == Usage(input_tokens=84, cache_read_tokens=83, output_tokens=57)


def test_llamacpp_stream_takes_timings_from_the_usage_chunk() -> None:
    from cache_integrations.providers.openai_compatible import _TimingsParser

    parser = _TimingsParser("fp", provider="llamacpp")
    head = {"id": "c", "model": "m", "object": "chat.completion.chunk"}
    events = [
        {**head, "choices": [{"index": 0, "finish_reason": None, "delta": {"role": "assistant", "content": "Olá"}}]},
        {**head, "choices": [{"index": 0, "finish_reason": "stop", "delta": {}}]},
        {
            **head,
            "choices": [],
            "usage": {"completion_tokens": 57, "prompt_tokens": 84, "total_tokens": 141},
            "timings": {"cache_n": 83, "prompt_n": 1, "prompt_ms": 8.9},
        },
    ]
    for event in events:
        parser.feed(json.dumps(event))
    parser.feed("[DONE]")
    assert parser.finish().usage == Usage(input_tokens=84, cache_read_tokens=83, output_tokens=57)


def test_a_reported_cache_field_wins_over_timings() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 64}}
    assert usage_with_timings(usage_from_openai(usage), usage, {"cache_n": 99}) == Usage(100, 64, 0, 1)
    garbage = {"prompt_tokens": 100, "completion_tokens": 1}
    for timings in ({"cache_n": -1}, {"cache_n": "83"}, {"cache_n": True}, None, [83]):
        assert usage_with_timings(usage_from_openai(garbage), garbage, timings) == Usage(100, 0, 0, 1)
    assert usage_with_timings(usage_from_openai(garbage), garbage, {"cache_n": 500}) == Usage(100, 100, 0, 1)


def test_vllm_omits_prompt_tokens_details_on_a_miss() -> None:
    # vLLM's OpenAI server (vllm/entrypoints/openai serving_chat: `if self.enable_prompt_tokens_details and
    # num_cached_tokens:`): the details only when something was cached; null otherwise.
    vllm = _provider("vllm")
    miss = _answer(
        {"prompt_tokens": 1741, "total_tokens": 1771, "completion_tokens": 30, "prompt_tokens_details": None}
    )
    hit = _answer({"prompt_tokens": 1741, "total_tokens": 1771, "completion_tokens": 30,
                   "prompt_tokens_details": {"cached_tokens": 1728}})  # fmt: skip
    assert vllm._parse(miss, "fp").usage == Usage(input_tokens=1741, output_tokens=30)  # known, 0 cached
    assert vllm._parse(hit, "fp").usage == Usage(input_tokens=1741, cache_read_tokens=1728, output_tokens=30)


def test_dashscope_explicit_writes_through_the_transport() -> None:
    # Alibaba Model Studio context cache (explicit mode, "created" example): writes in prompt_tokens_details.
    details = {"cache_creation": {"ephemeral_5m_input_tokens": 29713}, "cache_creation_input_tokens": 29713,
               "cache_type": "ephemeral", "cached_tokens": 0}  # fmt: skip
    body = _answer({"prompt_tokens": 29719, "completion_tokens": 3, "prompt_tokens_details": details})
    assert _provider("dashscope")._parse(body, "fp").usage == Usage(
        input_tokens=29719, cache_write_tokens=29713, output_tokens=3
    )


def test_error_bodies_of_openai_and_vllm() -> None:
    openai = {"error": {"message": "Invalid 'messages'.", "type": "invalid_request_error", "param": "messages",
                        "code": "empty_array"}}  # fmt: skip
    error = _provider("openai").error_from_body(400, openai)
    assert isinstance(error, BadRequestError) and (error.code, error.provider) == ("empty_array", "openai")
    # vLLM: a flat ErrorResponse {"object": "error", "message", "type", "param", "code"}
    flat = {"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "param": None,
            "code": 404}  # fmt: skip
    error = _provider("vllm").error_from_body(404, flat)
    assert error.status_code == 404 and error.code == "404" and "does not exist" in str(error)
    error = _provider("sglang").error_from_body(503, {"error": {"message": "overloaded"}})
    assert isinstance(error, ServerError) and error.provider == "sglang"


@pytest.mark.parametrize("label", ["vllm", "deepseek"])
def test_malformed_answers_name_the_server(label: str) -> None:
    from cache_integrations.errors import MalformedResponseError

    with pytest.raises(MalformedResponseError, match=f"^{label} HTTP 200: the response has no choices"):
        _provider(label)._parse({"id": "x", "choices": []}, "fp")
