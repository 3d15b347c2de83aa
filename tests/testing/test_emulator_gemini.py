"""Gemini v1beta: cachedContents CRUD and errors, cache use, implicit caching, streaming usage."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, count_tokens

AUTH = {"x-goog-api-key": "test-key"}
MODEL = "gemini-2.5-flash"
GEN = f"/v1beta/models/{MODEL}:generateContent"
CACHES = "/v1beta/cachedContents"
LONG_DOC = "Paris is the capital of France. The Eiffel Tower is in Paris. " * 120  # 1680 tokens
NOT_FOUND = {
    "error": {"code": 403, "message": "CachedContent not found (or permission denied)", "status": "PERMISSION_DENIED"}
}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"text": text}]}


def create_cache(client: httpx.Client, **extra: Any) -> httpx.Response:
    body = {
        "model": f"models/{MODEL}",
        "systemInstruction": {"parts": [{"text": "You are a geography expert. Be concise."}], "role": "user"},
        "contents": [user(LONG_DOC)],
        **extra,
    }
    return client.post(CACHES, json=body, headers=AUTH)


def generate(client: httpx.Client, body: dict[str, Any], model: str = MODEL) -> httpx.Response:
    return client.post(f"/v1beta/models/{model}:generateContent", json=body, headers=AUTH)


def sse(text: str) -> list[Any]:
    assert "[DONE]" not in text
    return [json.loads(block[len("data: ") :]) for block in text.split("\r\n\r\n") if block.startswith("data: ")]


# -------------------------------------------------------------------------------------------- auth


def test_missing_key_is_403_and_empty_key_is_400(client: httpx.Client) -> None:
    r = client.post(GEN, json={"contents": [user("hi")]})
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    assert r.json()["error"]["message"].startswith("Method doesn't allow unregistered callers")
    r = client.post(GEN, params={"key": ""}, json={"contents": [user("hi")]})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "API key not valid. Please pass a valid API key."
    assert r.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert client.post(GEN, params={"key": "k"}, json={"contents": [user("hi")]}).status_code == 200


# ------------------------------------------------------------------------------------ cache CRUD


def test_create_get_list_patch_delete(client: httpx.Client, clock: FakeClock, emu: Emulator) -> None:
    assert client.get(CACHES, headers=AUTH).json() == {}
    created = create_cache(client, ttl="120s")
    assert created.status_code == 200
    res = created.json()
    assert list(res) == ["name", "model", "createTime", "updateTime", "expireTime", "displayName", "usageMetadata"]
    assert re.fullmatch(r"cachedContents/[a-z0-9]{40}", res["name"])
    assert res["model"] == f"models/{MODEL}" and res["displayName"] == ""
    assert res["createTime"] == res["updateTime"] == "2026-01-01T00:00:00Z"
    assert res["expireTime"] == "2026-01-01T00:02:00Z"
    expected_tokens = count_tokens("<|system|>\nYou are a geography expert. Be concise.") + count_tokens(
        "<|user|>\n" + LONG_DOC
    )
    assert res["usageMetadata"] == {"totalTokenCount": expected_tokens}
    assert not {"contents", "systemInstruction", "tools"} & set(res)

    got = client.get(f"/v1beta/{res['name']}", headers=AUTH).json()
    assert got == res
    assert client.get(CACHES, headers=AUTH).json() == {"cachedContents": [res]}

    clock.advance(30)
    patched = client.patch(f"/v1beta/{res['name']}", params={"updateMask": "ttl"}, json={"ttl": "600.5s"}, headers=AUTH)
    assert patched.status_code == 200
    assert patched.json()["expireTime"] == "2026-01-01T00:10:30.500Z"
    assert patched.json()["updateTime"] == "2026-01-01T00:00:30Z"
    assert patched.json()["createTime"] == res["createTime"]
    by_time = client.patch(
        f"/v1beta/{res['name']}", json={"expireTime": "2026-01-01T02:00:00.123456789+01:00"}, headers=AUTH
    )
    assert by_time.json()["expireTime"] == "2026-01-01T01:00:00.123456789Z"

    deleted = client.delete(f"/v1beta/{res['name']}", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json() == {}
    for method in ("GET", "DELETE"):
        r = client.request(method, f"/v1beta/{res['name']}", headers=AUTH)
        assert (r.status_code, r.json()) == (403, NOT_FOUND)
    r = client.patch(f"/v1beta/{res['name']}", json={"ttl": "10s"}, headers=AUTH)
    assert (r.status_code, r.json()) == (403, NOT_FOUND)
    assert client.get(CACHES, headers=AUTH).json() == {}
    counters = emu.counters
    assert (counters.caches_created, counters.caches_deleted, counters.caches_alive) == (1, 1, 0)


def test_default_ttl_is_one_hour_and_display_name_kept(client: httpx.Client) -> None:
    res = create_cache(client, displayName="geo").json()
    assert res["expireTime"] == "2026-01-01T01:00:00Z" and res["displayName"] == "geo"


def test_pagination(client: httpx.Client) -> None:
    names = [create_cache(client).json()["name"] for _ in range(5)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        page = client.get(CACHES, params=params, headers=AUTH).json()
        pages += 1
        seen += [c["name"] for c in page["cachedContents"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == names and pages == 3
    assert client.get(CACHES, params={"pageToken": "garbage!"}, headers=AUTH).status_code == 400


def test_too_small_is_rejected_with_exact_message(client: httpx.Client) -> None:
    r = client.post(
        CACHES,
        json={"model": f"models/{MODEL}", "contents": [user("Tiny text here, 16 tokens at most.")]},
        headers=AUTH,
    )
    assert r.status_code == 400
    n = count_tokens("<|user|>\nTiny text here, 16 tokens at most.")
    assert r.json() == {
        "error": {
            "code": 400,
            "message": f"Cached content is too small. total_token_count={n}, min_total_token_count=1024",
            "status": "INVALID_ARGUMENT",
        }
    }


def test_minimum_is_configurable_per_model(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, gemini_cache_min_tokens={"gemini-2.5-pro": 4096, "*": 10})
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        small = {"contents": [user("a few words of content here")]}
        assert c.post(CACHES, json={"model": f"models/{MODEL}", **small}, headers=AUTH).status_code == 200
        r = c.post(CACHES, json={"model": "models/gemini-2.5-pro", **small}, headers=AUTH)
        assert "min_total_token_count=4096" in r.json()["error"]["message"]


def test_patch_rejects_other_fields(client: httpx.Client) -> None:
    name = create_cache(client).json()["name"]
    r = client.patch(f"/v1beta/{name}", json={"displayName": "x"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = client.patch(f"/v1beta/{name}", params={"updateMask": "contents"}, json={"ttl": "5s"}, headers=AUTH)
    assert r.status_code == 400
    r = client.patch(f"/v1beta/{name}", json={"ttl": "5 minutes"}, headers=AUTH)
    assert r.status_code == 400 and "duration" in r.json()["error"]["message"]


def test_expiry_by_clock(client: httpx.Client, clock: FakeClock, emu: Emulator) -> None:
    name = create_cache(client, ttl="60s").json()["name"]
    clock.advance(59.9)
    assert client.get(f"/v1beta/{name}", headers=AUTH).status_code == 200
    clock.advance(0.1)
    assert client.get(f"/v1beta/{name}", headers=AUTH).status_code == 403
    r = generate(client, {"cachedContent": name, "contents": [user("hi")]})
    assert (r.status_code, r.json()) == (403, NOT_FOUND)
    assert emu.counters.caches_expired == 1


# ------------------------------------------------------------------------------------ using caches


def test_generate_with_cache_usage_includes_cached(client: httpx.Client, emu: Emulator) -> None:
    cache = create_cache(client).json()
    total = cache["usageMetadata"]["totalTokenCount"]
    data = generate(
        client, {"cachedContent": cache["name"], "contents": [user("What is the capital of France?")]}
    ).json()
    assert list(data) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    candidate = data["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["index"] == 0
    assert candidate["content"]["role"] == "model"
    text = candidate["content"]["parts"][0]["text"]
    usage = data["usageMetadata"]
    prompt = total + count_tokens("<|user|>\nWhat is the capital of France?") + count_tokens("<|model|>")
    assert usage["promptTokenCount"] == prompt
    assert usage["cachedContentTokenCount"] == total
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": total}]
    assert usage["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": prompt}]
    assert usage["candidatesTokenCount"] == count_tokens(text)
    assert usage["thoughtsTokenCount"] > 0  # 2.5 thinks by default
    assert usage["totalTokenCount"] == prompt + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    assert data["modelVersion"] == MODEL and re.fullmatch(r"[A-Za-z0-9_-]{23}", data["responseId"])
    assert emu.counters.cached_tokens_explicit == total
    assert emu.counters.generate_calls == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"systemInstruction": {"parts": [{"text": "You are a geography expert. Be concise."}]}},
        {"tools": [{"functionDeclarations": [{"name": "f"}]}]},
        {"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
    ],
)
def test_cache_plus_system_tools_or_config_is_400(client: httpx.Client, extra: dict[str, Any]) -> None:
    name = create_cache(client).json()["name"]
    r = generate(client, {"cachedContent": name, "contents": [user("hi")], **extra})
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "code": 400,
            "message": "CachedContent can not be used with GenerateContent request setting system_instruction, "
            "tools or tool_config.\n\nProposed fix: move those values to CachedContent from GenerateContent request.",
            "status": "INVALID_ARGUMENT",
        }
    }


def test_cache_model_must_match(client: httpx.Client) -> None:
    name = create_cache(client).json()["name"]
    r = generate(client, {"cachedContent": name, "contents": [user("hi")]}, model="gemini-2.5-pro")
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "models/gemini-2.5-pro" in r.json()["error"]["message"] and f"models/{MODEL}" in r.json()["error"]["message"]


def test_server_side_deletion_then_403(client: httpx.Client, emu: Emulator) -> None:
    name = create_cache(client).json()["name"]
    assert emu.cached_content_names() == [name]
    assert emu.delete_cached_content(name) is True
    assert emu.delete_cached_content(name) is False
    r = generate(client, {"cachedContent": name, "contents": [user("hi")]})
    assert (r.status_code, r.json()) == (403, NOT_FOUND)


def test_cached_tools_and_tool_config_are_honoured(client: httpx.Client) -> None:
    decl = {
        "name": "get_capital",
        "description": "Capital of a country",
        "parameters": {"type": "OBJECT", "properties": {"country": {"type": "STRING"}}, "required": ["country"]},
    }
    cache = create_cache(
        client, tools=[{"functionDeclarations": [decl]}], toolConfig={"functionCallingConfig": {"mode": "ANY"}}
    ).json()
    data = generate(client, {"cachedContent": cache["name"], "contents": [user("Capital of Portugal?")]}).json()
    assert data["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_capital", "args": {"country": "Portugal"}}}
    ]


def test_function_response_turn_answers_in_text(client: httpx.Client) -> None:
    decl = {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    contents = [
        user("weather in Oslo?"),
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"temp": "4 C"}}}]},
    ]
    data = generate(client, {"contents": contents, "tools": [{"functionDeclarations": [decl]}]}).json()
    text = data["candidates"][0]["content"]["parts"][0]["text"]
    assert "weather function returned" in text and "4 C" in text


def test_thinking_budget_zero_and_include_thoughts(client: httpx.Client) -> None:
    cfg = {"thinkingConfig": {"thinkingBudget": 0}}
    usage = generate(client, {"contents": [user("hi")], "generationConfig": cfg}).json()["usageMetadata"]
    assert "thoughtsTokenCount" not in usage
    cfg = {"thinkingConfig": {"includeThoughts": True}}
    parts = generate(client, {"contents": [user("hi")], "generationConfig": cfg}).json()["candidates"][0]["content"][
        "parts"
    ]
    assert parts[0]["thought"] is True and "thought" not in parts[1]
    old = generate(client, {"contents": [user("hi")]}, model="gemini-2.0-flash").json()["usageMetadata"]
    assert "thoughtsTokenCount" not in old


def test_max_output_tokens_and_json_mode(client: httpx.Client) -> None:
    cfg = {"maxOutputTokens": 4, "thinkingConfig": {"thinkingBudget": 0}}
    data = generate(client, {"contents": [user("Tell me about Paris")], "generationConfig": cfg}).json()
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert data["usageMetadata"]["candidatesTokenCount"] == 4
    cfg = {
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
    data = generate(client, {"contents": [user("Best city: Vienna")], "generationConfig": cfg}).json()
    assert json.loads(data["candidates"][0]["content"]["parts"][0]["text"]) == {"city": "Vienna"}


def test_validation_errors(client: httpx.Client) -> None:
    assert generate(client, {}).status_code == 400
    r = generate(client, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Please use a valid role: user, model."
    r = client.post(GEN, content=b"{oops", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


# ------------------------------------------------------------------------------------- implicit


def test_implicit_caching_only_for_2_5_plus(client: httpx.Client, emu: Emulator) -> None:
    system = {"parts": [{"text": LONG_DOC}]}
    for model, expect_hit in (("gemini-2.5-flash", True), ("gemini-3-pro-preview", True), ("gemini-2.0-flash", False)):
        generate(client, {"systemInstruction": system, "contents": [user("first question")]}, model=model)
        usage = generate(
            client, {"systemInstruction": system, "contents": [user("other question")]}, model=model
        ).json()["usageMetadata"]
        if expect_hit:
            shared = count_tokens("<|system|>\n" + LONG_DOC) + count_tokens("<|user|>")
            assert usage["cachedContentTokenCount"] == shared
            assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": shared}]
            assert usage["promptTokenCount"] > shared
        else:
            assert "cachedContentTokenCount" not in usage and "cacheTokensDetails" not in usage
    assert emu.counters.cached_tokens_implicit > 0


def test_implicit_minimum_1024(client: httpx.Client) -> None:
    system = {"parts": [{"text": "Short system prompt."}]}
    generate(client, {"systemInstruction": system, "contents": [user("q1")]})
    usage = generate(client, {"systemInstruction": system, "contents": [user("q2")]}).json()["usageMetadata"]
    assert "cachedContentTokenCount" not in usage


# ------------------------------------------------------------------------------------- streaming


def test_stream_sse_with_provisional_usage(client: httpx.Client) -> None:
    cache = create_cache(client).json()
    body = {"cachedContent": cache["name"], "contents": [user("What is the capital of France?")]}
    r = client.post(f"/v1beta/models/{MODEL}:streamGenerateContent", params={"alt": "sse"}, json=body, headers=AUTH)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("\r\n\r\n")
    events = sse(r.text)
    assert len(events) > 2
    plain = generate(client, body).json()
    final = events[-1]
    assert final["candidates"][0]["finishReason"] == "STOP"
    assert final["usageMetadata"] == plain["usageMetadata"]
    for event in events[:-1]:
        usage = event["usageMetadata"]
        assert "finishReason" not in event["candidates"][0]
        assert "candidatesTokenCount" not in usage
        assert usage["promptTokenCount"] != final["usageMetadata"]["promptTokenCount"]  # provisional
        assert usage["cachedContentTokenCount"] == cache["usageMetadata"]["totalTokenCount"]
        assert event["responseId"] == final["responseId"]
    text = "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events)
    assert text == plain["candidates"][0]["content"]["parts"][0]["text"]


def test_stream_without_alt_sse_is_a_json_array(client: httpx.Client) -> None:
    r = client.post(f"/v1beta/models/{MODEL}:streamGenerateContent", json={"contents": [user("hi")]}, headers=AUTH)
    events = json.loads(r.text)
    assert isinstance(events, list) and events[-1]["candidates"][0]["finishReason"] == "STOP"


# ------------------------------------------------------------------------------------ countTokens


def test_count_tokens_matches_generate(client: httpx.Client) -> None:
    body = {"contents": [user("How many tokens is this?")]}
    counted = client.post(f"/v1beta/models/{MODEL}:countTokens", json=body, headers=AUTH).json()
    usage = generate(client, body).json()["usageMetadata"]
    assert counted["totalTokens"] == usage["promptTokenCount"]
    cache = create_cache(client).json()
    inner = {"generateContentRequest": {"model": f"models/{MODEL}", "cachedContent": cache["name"], **body}}
    counted = client.post(f"/v1beta/models/{MODEL}:countTokens", json=inner, headers=AUTH).json()
    assert counted["cachedContentTokenCount"] == cache["usageMetadata"]["totalTokenCount"]
    assert counted["totalTokens"] == cache["usageMetadata"]["totalTokenCount"] + usage["promptTokenCount"]


def test_resource_times_follow_the_clock() -> None:
    emu = Emulator(clock=FakeClock(1_780_000_000.123456))
    with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
        res = create_cache(c, ttl="3.5s").json()
    assert res["createTime"] == "2026-05-28T20:26:40.123456Z"
    assert res["expireTime"] == "2026-05-28T20:26:43.623456Z"
