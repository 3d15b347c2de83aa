"""The emulator against hand-copied real provider bodies (see ``tests/oracle/__init__.py``).

Its answers must have the real bodies' shape (the same keys with the same JSON types, nothing the
providers never send) and the real error texts. Keys the emulator may add or leave out are listed
below with the recording that justifies each; nothing here imports the library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Set
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, count_tokens
from cache_integrations.testing.faults import glm_insufficient_balance, glm_overloaded

from . import error, load

GLM_URL = "/api/paas/v4/chat/completions"
GLM_AUTH = {"Authorization": "Bearer oracle-key"}
GEMINI_AUTH = {"x-goog-api-key": "oracle-key"}
LONG = "Paris is the capital of France. The Eiffel Tower is in Paris. " * 120
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Get weather information for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "the city"}},
            "required": ["location"],
        },
    },
}
# Keys the emulator sends that the (older) oracle recording lacks, each seen in another real recording:
# "object": "chat.completion" and usage.completion_tokens_details on every 2026 api.z.ai answer
# (pydantic/pydantic-ai tests/models/cassettes/test_zai/test_zai_thinking_across_turns.yaml, 2026-08-30).
GLM_EXTRA = {"object", "usage.completion_tokens_details", "usage.completion_tokens_details.reasoning_tokens"}
# usageMetadata.serviceTier appears in 2026 Gemini API answers; the emulator does not send it (optional).
GEMINI_MISSING = {"usageMetadata.serviceTier"}


def shape(value: Any, path: str = "") -> dict[str, str]:
    """Every key path of a JSON value with its JSON type; list items share the path ``[]``."""
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value))
    if kind is None:
        kind = "number" if isinstance(value, int | float) else type(value).__name__
    out = {path: kind} if path else {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(shape(item, f"{path}.{key}" if path else key))
    elif isinstance(value, list) and value:
        for item in value:
            out.update(shape(item, f"{path}[]"))
    return out


def assert_same_shape(
    emulated: Any, real: Any, *, extra: Set[str] = frozenset(), missing: Set[str] = frozenset()
) -> None:
    mine, theirs = shape(emulated), shape(real)
    added, lacking = set(mine) - set(theirs) - extra, set(theirs) - set(mine) - missing
    assert not added, f"keys the provider never sends: {added}"
    assert not lacking, f"keys the emulator lacks: {lacking}"
    wrong = {k: (mine[k], theirs[k]) for k in set(mine) & set(theirs) if mine[k] != theirs[k]}
    assert not wrong, f"JSON types differ: {wrong}"


@pytest.fixture
def emu() -> Emulator:
    return Emulator(clock=FakeClock())


@pytest.fixture
def client(emu: Emulator) -> httpx.Client:
    return httpx.Client(transport=emu.transport(), base_url="http://emulator")


# ------------------------------------------------------------------------------------------- GLM


def test_glm_non_stream_tool_call_with_cached_tokens(client: httpx.Client) -> None:
    real = load("glm_chat_tool_call_cached_tokens")["body"]
    body = {
        "model": "glm-4.6v",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant"},
            {"role": "user", "content": "What's the weather in Florence,Italy?"},
        ],
        "tools": [WEATHER],
        "thinking": {"type": "enabled"},
    }
    client.post(GLM_URL, json=body, headers=GLM_AUTH)
    r = client.post(GLM_URL, json=body, headers=GLM_AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json; charset=UTF-8"
    emulated = r.json()
    assert_same_shape(emulated, real, extra=GLM_EXTRA)
    assert emulated["id"] == emulated["request_id"] and re.fullmatch(r"\d{14}[0-9a-f]{16}", emulated["id"])
    assert emulated["usage"]["prompt_tokens_details"]["cached_tokens"] > 0  # the repeated prompt was cached
    call = emulated["choices"][0]["message"]["tool_calls"][0]
    assert re.fullmatch(r"call_-?\d+", call["id"]) and isinstance(call["function"]["arguments"], str)


def test_glm_stream_chunks_and_finish_chunk(client: httpx.Client) -> None:
    oracle = load("glm_stream_finish_chunk")
    reasoning_chunk, content_chunk, finish_chunk, done = oracle["sse_events"]
    body = {
        "model": "glm-4.7",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "thinking": {"type": "enabled"},
    }
    r = client.post(GLM_URL, json=body, headers=GLM_AUTH)
    assert r.headers["content-type"] == oracle["content_type"]
    events = [e if e == "[DONE]" else json.loads(e) for e in re.findall(r"^data: (.*)$", r.text, re.MULTILINE)]
    assert events[-1] == done
    assert_same_shape(events[0], reasoning_chunk)
    first_content = next(e for e in events[:-1] if e["choices"][0]["delta"].get("content"))
    assert_same_shape(first_content, content_chunk)
    assert_same_shape(events[-2], finish_chunk)
    assert events[-2]["choices"][0]["delta"] == finish_chunk["choices"][0]["delta"]  # {"role", "content": ""}


def test_glm_error_texts(client: httpx.Client, emu: Emulator) -> None:
    illegal = error("glm_errors", "messages_illegal")
    r = client.post(GLM_URL, json={"model": "glm-4.7", "messages": []}, headers=GLM_AUTH)
    assert (r.status_code, r.json()) == (illegal["status"], illegal["body"])
    for name, fault in (("insufficient_balance", glm_insufficient_balance()), ("overloaded", glm_overloaded())):
        real = error("glm_errors", name)
        emu.inject_fault(fault)
        r = client.post(
            GLM_URL, json={"model": "glm-4.7", "messages": [{"role": "user", "content": "hi"}]}, headers=GLM_AUTH
        )
        assert (r.status_code, r.json()) == (real["status"], real["body"])


# ---------------------------------------------------------------------------------------- Gemini


def _create_cache(client: httpx.Client, text: str) -> httpx.Response:
    body = {
        "model": "models/gemini-2.5-flash",
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "ttl": "120s",
    }
    return client.post("/v1beta/cachedContents", json=body, headers=GEMINI_AUTH)


def test_gemini_generate_with_cached_content(client: httpx.Client) -> None:
    real = load("gemini_generate_cached_content_usage")["body"]
    name = _create_cache(client, LONG).json()["name"]
    body = {
        "cachedContent": name,
        "contents": [{"role": "user", "parts": [{"text": "What is the capital of France?"}]}],
    }
    r = client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=GEMINI_AUTH)
    assert r.headers["content-type"] == "application/json; charset=UTF-8"
    emulated = r.json()
    assert_same_shape(emulated, real, missing=GEMINI_MISSING)
    usage = emulated["usageMetadata"]
    assert usage["promptTokenCount"] > usage["cachedContentTokenCount"] > 1000  # prompt includes cached
    assert (
        usage["totalTokenCount"]
        == usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )


def test_gemini_cached_content_resource(client: httpx.Client) -> None:
    real = load("gemini_cached_content_resource")["body"]
    emulated = _create_cache(client, LONG).json()
    assert_same_shape(emulated, real)
    name = re.compile(r"cachedContents/[a-z0-9]{40}")
    stamp = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6}|\.\d{9})?Z")
    for resource in (real, emulated):
        assert name.fullmatch(resource["name"]) and resource["model"] == "models/gemini-2.5-flash"
        assert all(stamp.fullmatch(resource[k]) for k in ("createTime", "updateTime", "expireTime"))
        assert resource["displayName"] == ""


def test_gemini_cache_not_found_text(client: httpx.Client, emu: Emulator) -> None:
    real = error("gemini_errors", "cache_not_found")
    name = _create_cache(client, LONG).json()["name"]
    emu.delete_cached_content(name)
    body = {"cachedContent": name, "contents": [{"role": "user", "parts": [{"text": "Still there?"}]}]}
    generate = client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=body, headers=GEMINI_AUTH)
    get = client.get(f"/v1beta/{name}", headers=GEMINI_AUTH)
    for r in (generate, get):
        assert (r.status_code, r.json()) == (real["status"], real["body"])


def test_gemini_cache_too_small_text() -> None:
    real = error("gemini_errors", "cache_too_small")  # total_token_count=896, min_total_token_count=1024
    text = next(t for t in (" ".join(["word"] * n) for n in range(880, 900)) if count_tokens("<|user|>\n" + t) == 896)
    with httpx.Client(
        transport=Emulator(clock=FakeClock(), gemini_cache_min_tokens=1024).transport(), base_url="http://e"
    ) as c:
        r = _create_cache(c, text)
    assert (r.status_code, r.json()) == (real["status"], real["body"])


def test_gemini_api_key_invalid_body() -> None:
    real = error("gemini_errors", "api_key_invalid")
    with httpx.Client(transport=Emulator(clock=FakeClock(), api_keys={"right"}).transport(), base_url="http://e") as c:
        r = c.post(
            "/v1beta/models/gemini-2.5-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": "wrong"},
        )
    assert (r.status_code, r.json()) == (real["status"], real["body"])


def test_gemini_builtin_tools_stream_has_provisional_then_partial_usage(client: httpx.Client) -> None:
    """As recorded: earlier chunks carry provisional running counts; the final one omits a field they had."""
    real_first, *_, real_final = load("gemini_stream_builtin_tools")["sse_events"]
    body = {
        "contents": [{"role": "user", "parts": [{"text": "What is 65465-6544 * 65464-6+1.02255?"}]}],
        "tools": [{"codeExecution": {}}],
    }
    r = client.post(
        "/v1beta/models/gemini-3-flash:streamGenerateContent", params={"alt": "sse"}, json=body, headers=GEMINI_AUTH
    )
    assert r.headers["content-type"] == "text/event-stream"
    first, *_, final = [json.loads(b[len("data: ") :]) for b in r.text.split("\r\n\r\n") if b.startswith("data: ")]
    assert set(first["usageMetadata"]) == set(real_first["usageMetadata"])
    for events in ((real_first, real_final), (first, final)):
        dropped = set(events[0]["usageMetadata"]) - set(events[1]["usageMetadata"])
        assert dropped & {"candidatesTokenCount", "thoughtsTokenCount"}
        assert events[1]["candidates"][0]["finishReason"] == "STOP" and "finishReason" not in events[0]["candidates"][0]
