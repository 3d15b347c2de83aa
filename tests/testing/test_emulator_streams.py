"""Stream usage as the real services send it: GLM only when asked, Gemini's partial final usage.

- GLM / OpenAI-compatible streams carry usage only when the request sets
  ``stream_options.include_usage`` (Z.ai's shape: on the finish_reason chunk), so a client that forgets
  to ask sees no usage instead of having the emulator hide the omission.
- A Gemini stream with built-in tools ends with ``usageMetadata`` that has no ``candidatesTokenCount``
  after chunks with provisional running counts (recorded from gemini-3-flash-preview in pydantic-ai's
  tests/models/google/cassettes/test_code_execution/test_code_execution_stream.yaml).
- ``RecordedRequest.usage`` is the usage block exactly as sent, for tests to compare clients against.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock

GLM_URL = "/api/paas/v4/chat/completions"
GLM_AUTH = {"Authorization": "Bearer test-key"}
GEMINI_AUTH = {"x-goog-api-key": "test-key"}
SYSTEM = "You are a meticulous reviewer of Python code. Follow the house style guide strictly. " * 40


def glm_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "glm-4.7",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Stream please"}],
        "stream": True,
        **extra,
    }


def glm_events(text: str) -> list[Any]:
    events = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def gemini_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(block[len("data: ") :]) for block in text.split("\r\n\r\n") if block.startswith("data: ")]


def gemini_stream(client: httpx.Client, body: dict[str, Any], model: str = "gemini-3-flash") -> list[dict[str, Any]]:
    r = client.post(
        f"/v1beta/models/{model}:streamGenerateContent", params={"alt": "sse"}, json=body, headers=GEMINI_AUTH
    )
    assert r.status_code == 200, r.text
    return gemini_events(r.text)


def question(text: str = "What is 65465-6544 * 65464-6+1.02255?") -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


# ------------------------------------------------------------------------------------------- GLM


def test_glm_stream_without_include_usage_carries_no_usage(client: httpx.Client, emu: Emulator) -> None:
    events = glm_events(client.post(GLM_URL, json=glm_body(), headers=GLM_AUTH).text)
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in e for e in events[:-1])
    assert emu.last_request is not None and emu.last_request.usage is None


def test_glm_stream_with_include_usage_has_it_on_the_finish_chunk(client: httpx.Client, emu: Emulator) -> None:
    body = glm_body(stream_options={"include_usage": True})
    events = glm_events(client.post(GLM_URL, json=body, headers=GLM_AUTH).text)
    finish = events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop" and finish["choices"][0]["delta"]["content"] == ""
    assert set(finish["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }
    assert all("usage" not in e for e in events[:-2])
    assert emu.last_request is not None and emu.last_request.usage == finish["usage"]


@pytest.mark.parametrize("options", [{"include_usage": False}, {}, None])
def test_glm_stream_usage_needs_a_true_include_usage(client: httpx.Client, options: dict[str, Any] | None) -> None:
    events = glm_events(client.post(GLM_URL, json=glm_body(stream_options=options), headers=GLM_AUTH).text)
    assert all("usage" not in e for e in events[:-1])


def test_glm_separate_usage_chunk_also_only_when_asked(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, glm_usage_chunk="separate")
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        silent = glm_events(c.post(GLM_URL, json=glm_body(), headers=GLM_AUTH).text)
        asked = glm_events(
            c.post(GLM_URL, json=glm_body(stream_options={"include_usage": True}), headers=GLM_AUTH).text
        )
    assert all(e == "[DONE]" or e["choices"] for e in silent)  # no choices: [] usage chunk
    assert asked[-2]["choices"] == [] and asked[-2]["usage"]["total_tokens"] > 0


def test_glm_stream_usage_always_reproduces_the_docs_example(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, glm_stream_usage="always")
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        events = glm_events(c.post(GLM_URL, json=glm_body(), headers=GLM_AUTH).text)
    assert events[-2]["usage"]["prompt_tokens"] > 0


def test_non_stream_usage_is_recorded_as_sent(client: httpx.Client, emu: Emulator) -> None:
    body = {k: v for k, v in glm_body().items() if k != "stream"}
    sent = client.post(GLM_URL, json=body, headers=GLM_AUTH).json()["usage"]
    assert emu.last_request is not None and emu.last_request.usage == sent


# ---------------------------------------------------------------------------------------- Gemini


@pytest.mark.parametrize("builtin", [{"codeExecution": {}}, {"googleSearch": {}}, {"url_context": {}}])
def test_gemini_builtin_tool_stream_ends_without_candidates(
    client: httpx.Client, emu: Emulator, builtin: dict[str, Any]
) -> None:
    events = gemini_stream(client, {"contents": [question()], "tools": [builtin]})
    assert len(events) > 2
    *early, final = events
    assert final["candidates"][0]["finishReason"] == "STOP"
    usage = final["usageMetadata"]
    assert "candidatesTokenCount" not in usage
    assert usage["thoughtsTokenCount"] > 0
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["thoughtsTokenCount"]
    running = [e["usageMetadata"]["candidatesTokenCount"] for e in early]
    assert all(n > 0 for n in running) and running == sorted(running)  # provisional, growing counts
    assert all(e["usageMetadata"]["thoughtsTokenCount"] == usage["thoughtsTokenCount"] for e in early)
    assert emu.last_request is not None and emu.last_request.usage == usage


def test_gemini_function_tools_stream_ends_with_complete_usage(client: httpx.Client) -> None:
    decl = {"name": "calc", "description": "Calculate.", "parameters": {"type": "object", "properties": {}}}
    body = {
        "contents": [question()],
        "tools": [{"functionDeclarations": [decl]}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
    }
    *early, final = gemini_stream(client, body)
    assert final["usageMetadata"]["candidatesTokenCount"] > 0
    assert all("candidatesTokenCount" not in e["usageMetadata"] for e in early)


def test_gemini_stream_usage_modes_can_be_forced(clock: FakeClock) -> None:
    plain = {"contents": [question()]}
    with_search = {"contents": [question()], "tools": [{"googleSearch": {}}]}
    forced = Emulator(clock=clock, gemini_stream_usage="without_candidates")
    complete = Emulator(clock=clock, gemini_stream_usage="complete")
    with httpx.Client(transport=forced.transport(), base_url="http://e") as c:
        assert "candidatesTokenCount" not in gemini_stream(c, plain)[-1]["usageMetadata"]
        plain_reply = c.post("/v1beta/models/gemini-3-flash:generateContent", json=plain, headers=GEMINI_AUTH)
        assert plain_reply.json()["usageMetadata"]["candidatesTokenCount"] > 0  # non-stream answers are whole
    with httpx.Client(transport=complete.transport(), base_url="http://e") as c:
        assert gemini_stream(c, with_search)[-1]["usageMetadata"]["candidatesTokenCount"] > 0


def test_gemini_partial_usage_counters_follow_the_wire(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, gemini_stream_usage="without_candidates")
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        final = gemini_stream(c, {"contents": [question()]})[-1]["usageMetadata"]
    assert emu.counters.completion_tokens == final["thoughtsTokenCount"]
    assert emu.counters.prompt_tokens == final["promptTokenCount"]
