"""Strict mode: unknown models and wrong keys get the providers' real errors; cold bursts all miss.

Off by default (``Emulator()`` serves any model name to any non-empty key and caches a prompt as soon
as it is answered); ``Emulator(strict=True)``, ``known_models=`` and ``api_keys=`` turn it on.
Expected bodies are written out here from the providers' answers (sources in ``_strict.py``).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock

GLM_URL = "/api/paas/v4/chat/completions"
OPENAI_URL = "/v1/chat/completions"
SYSTEM = "You are a meticulous reviewer of Python code. Follow the house style guide strictly. " * 80


def glm(model: str, user: str = "hi", **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return {"model": model, "messages": messages, **extra}


def gemini_body(user: str = "hi") -> dict[str, Any]:
    return {
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "contents": [{"role": "user", "parts": [{"text": user}]}],
    }


def client_for(emu: Emulator) -> httpx.Client:
    return httpx.Client(transport=emu.transport(), base_url="http://e")


# ------------------------------------------------------------------------------------ model names


def test_strict_glm_unknown_model_is_400_code_1211(clock: FakeClock) -> None:
    with client_for(Emulator(clock=clock, strict=True)) as c:
        r = c.post(GLM_URL, json=glm("glm-9-turbo"), headers={"Authorization": "Bearer k"})
        ok = c.post(GLM_URL, json=glm("glm-4.7"), headers={"Authorization": "Bearer k"})
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "1211", "message": "Model does not exist, please check the model code"}}
    assert ok.status_code == 200


def test_strict_openai_unknown_model_is_404_model_not_found(clock: FakeClock) -> None:
    with client_for(Emulator(clock=clock, strict=True)) as c:
        r = c.post(OPENAI_URL, json=glm("gpt-9"), headers={"Authorization": "Bearer sk-test"})
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "message": "The model `gpt-9` does not exist or you do not have access to it.",
            "type": "invalid_request_error",
            "param": None,
            "code": "model_not_found",
        }
    }


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1beta/models/gemini-9-ultra:generateContent", "generateContent"),
        ("/v1beta/models/gemini-9-ultra:streamGenerateContent", "StreamGenerateContent"),
        ("/v1beta/models/gemini-9-ultra:countTokens", "countTokens"),
    ],
)
def test_strict_gemini_unknown_model_is_404_not_found(clock: FakeClock, path: str, method: str) -> None:
    with client_for(Emulator(clock=clock, strict=True)) as c:
        r = c.post(path, json=gemini_body(), headers={"x-goog-api-key": "k"})
    assert r.status_code == 404
    assert r.json() == {
        "error": {
            "code": 404,
            "message": f"models/gemini-9-ultra is not found for API version v1beta, or is not supported for {method}. "
            "Call ListModels to see the list of available models and their supported methods.",
            "status": "NOT_FOUND",
        }
    }


def test_strict_gemini_cache_for_unknown_model_is_404(clock: FakeClock) -> None:
    body = {"model": "models/gemini-9-ultra", "contents": gemini_body()["contents"]}
    with client_for(Emulator(clock=clock, strict=True)) as c:
        r = c.post("/v1beta/cachedContents", json=body, headers={"x-goog-api-key": "k"})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


def test_known_models_alone_restricts_and_default_accepts_anything(clock: FakeClock) -> None:
    auth = {"Authorization": "Bearer k"}
    with client_for(Emulator(clock=clock, known_models={"my-finetune"})) as c:
        assert c.post(GLM_URL, json=glm("my-finetune"), headers=auth).status_code == 200
        assert c.post(GLM_URL, json=glm("glm-4.7"), headers=auth).status_code == 400
    with client_for(Emulator(clock=clock)) as c:
        assert c.post(GLM_URL, json=glm("anything-goes"), headers=auth).status_code == 200


# ------------------------------------------------------------------------------------------ keys


def test_wrong_keys_get_each_providers_body(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, api_keys={"right"})
    with client_for(emu) as c:
        glm_r = c.post(GLM_URL, json=glm("glm-4.7"), headers={"Authorization": "Bearer wrong"})
        gem_r = c.post(
            "/v1beta/models/gemini-2.5-flash:generateContent", json=gemini_body(), headers={"x-goog-api-key": "wrong"}
        )
        oai_r = c.post(OPENAI_URL, json=glm("gpt-4o-mini"), headers={"Authorization": "Bearer sk-wrong-key-123"})
    assert glm_r.status_code == 401
    assert glm_r.json() == {"error": {"code": "1000", "message": "Authentication Failed"}}
    assert gem_r.status_code == 400
    assert gem_r.json() == {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": "API key not valid. Please pass a valid API key.",
                },
            ],
        }
    }
    assert oai_r.status_code == 401 and oai_r.json()["error"]["code"] == "invalid_api_key"
    assert "sk-wrong-key-123" not in oai_r.text  # OpenAI masks the key it echoes


# ------------------------------------------------------------------------- concurrent cold requests


def _cached(response_body: Any) -> int:
    return int(response_body["usage"]["prompt_tokens_details"]["cached_tokens"])


def test_strict_concurrent_cold_requests_all_miss(clock: FakeClock) -> None:
    """N identical requests in flight at once: none of them can read what the others are writing."""
    emu = Emulator(clock=clock, strict=True)
    headers = {"authorization": "Bearer k"}
    body = json.dumps(glm("glm-4.7", "same question")).encode()
    in_flight = [emu.handle("POST", GLM_URL, headers=headers, body=body) for _ in range(5)]
    assert [_cached(r.json()) for r in in_flight] == [0, 0, 0, 0, 0]  # .json() delivers each answer
    warm = emu.handle("POST", GLM_URL, headers=headers, body=body).json()
    assert _cached(warm) > 1000  # written once the first answer was delivered
    assert emu.counters.implicit_cache_hits == 1


def test_default_mode_keeps_the_instant_cache(clock: FakeClock) -> None:
    emu = Emulator(clock=clock)
    headers = {"authorization": "Bearer k"}
    body = json.dumps(glm("glm-4.7", "same question")).encode()
    _undelivered, second = (emu.handle("POST", GLM_URL, headers=headers, body=body) for _ in range(2))
    assert _cached(second.json()) > 1000


def test_open_streams_do_not_feed_each_other(clock: FakeClock) -> None:
    """Over the httpx transport: a stream's prompt is cacheable once its last chunk has been read."""
    emu = Emulator(clock=clock, cache_write_on_completion=True)
    body = glm("glm-4.7", "same question", stream=True, stream_options={"include_usage": True})
    with client_for(emu) as c:
        requests = [
            c.build_request("POST", GLM_URL, json=body, headers={"Authorization": "Bearer k"}) for _ in range(3)
        ]
        open_streams = [c.send(r, stream=True) for r in requests]  # all sent, none read yet
        usages = []
        for response in open_streams:
            text = response.read().decode()
            response.close()
            usages.append(json.loads(text.split("data: ")[-2])["usage"])
        after = c.post(GLM_URL, json=glm("glm-4.7", "same question"), headers={"Authorization": "Bearer k"}).json()
    assert [u["prompt_tokens_details"]["cached_tokens"] for u in usages] == [0, 0, 0]
    assert _cached(after) > 1000


def test_gemini_implicit_cache_waits_for_completion_too(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, strict=True)
    headers = {"x-goog-api-key": "k"}
    body = json.dumps(gemini_body("same question")).encode()
    path = "/v1beta/models/gemini-2.5-flash:generateContent"
    pending = [emu.handle("POST", path, headers=headers, body=body) for _ in range(3)]
    assert all("cachedContentTokenCount" not in r.json()["usageMetadata"] for r in pending)
    assert (
        emu.handle("POST", path, headers=headers, body=body).json()["usageMetadata"]["cachedContentTokenCount"] > 1000
    )


async def test_strict_sequential_requests_hit_over_every_transport(clock: FakeClock) -> None:
    """Delivery is signalled by the httpx transport (sync and async) and by the ASGI app alike."""
    body = glm("glm-4.7", "same question")
    headers = {"Authorization": "Bearer k"}
    emu = Emulator(clock=clock, strict=True)
    with client_for(emu) as c:
        assert [_cached(c.post(GLM_URL, json=body, headers=headers).json()) > 1000 for _ in range(2)] == [False, True]
    emu = Emulator(clock=clock, strict=True)
    async with httpx.AsyncClient(transport=emu.transport(), base_url="http://e") as ac:
        first, second = [(await ac.post(GLM_URL, json=body, headers=headers)).json() for _ in range(2)]
    assert _cached(first) == 0 and _cached(second) > 1000
    emu = Emulator(clock=clock, strict=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.asgi_app), base_url="http://e") as ac:
        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        await ac.post(GLM_URL, json=stream_body, headers=headers)
        second = (await ac.post(GLM_URL, json=body, headers=headers)).json()
    assert _cached(second) > 1000
