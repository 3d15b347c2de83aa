"""Fault injection, counters, request log, latency, concurrency, speed, and the three run modes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, Fault
from cache_integrations.testing.__main__ import main
from cache_integrations.testing.faults import (
    gemini_resource_exhausted,
    gemini_unavailable,
    glm_insufficient_balance,
    glm_rate_limit,
    openai_rate_limit,
    stream_cut,
)

GLM = "/api/paas/v4/chat/completions"
GLM_AUTH = {"Authorization": "Bearer test-key"}
GEMINI_AUTH = {"x-goog-api-key": "test-key"}
SYSTEM = "Stable system prompt for every call. " * 60


def glm_body(user: str = "hello", **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return {"model": "glm-4.6", "messages": messages, **extra}


def gemini_body(text: str = "hello") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


# ------------------------------------------------------------------------------------------ faults


def test_glm_rate_limit_then_recovery(client: httpx.Client, emu: Emulator) -> None:
    emu.inject_fault(glm_rate_limit(), times=2)
    assert emu.pending_faults == 2
    for _ in range(2):
        r = client.post(GLM, json=glm_body(), headers=GLM_AUTH)
        assert r.status_code == 429
        assert r.json() == {"error": {"code": "1302", "message": "Rate limit reached for requests"}}
        assert r.headers["retry-after"] == "0"
    assert client.post(GLM, json=glm_body(), headers=GLM_AUTH).status_code == 200
    counters = emu.counters
    assert counters.errors_injected == 2 and counters.error_responses == 2 and counters.requests_total == 3


def test_fault_defaults_and_targeting(client: httpx.Client, emu: Emulator) -> None:
    emu.inject_fault(glm_insufficient_balance())
    emu.inject_fault(503, endpoint="gemini")
    emu.inject_fault(500, path_prefix="/v1/", body={"custom": True}, headers={"x-test": "1"})
    gemini = client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=gemini_body(), headers=GEMINI_AUTH)
    assert gemini.status_code == 503
    assert gemini.json() == {
        "error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}
    }
    r = client.post(GLM, json=glm_body(), headers=GLM_AUTH)
    assert r.status_code == 429 and r.json()["error"]["code"] == "1113"
    r = client.post("/v1/chat/completions", json=glm_body(), headers=GLM_AUTH)
    assert (r.status_code, r.json(), r.headers["x-test"]) == (500, {"custom": True}, "1")
    assert emu.pending_faults == 0


@pytest.mark.parametrize(
    ("fault", "status", "body"),
    [
        (
            gemini_resource_exhausted(),
            429,
            {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"},
        ),
        (
            gemini_unavailable(),
            503,
            {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"},
        ),
    ],
)
def test_gemini_fault_helpers(client: httpx.Client, emu: Emulator, fault: Fault, status: int, body: Any) -> None:
    emu.inject_fault(fault)
    # a GLM request does not consume a Gemini fault
    assert client.post(GLM, json=glm_body(), headers=GLM_AUTH).status_code == 200
    r = client.post("/v1beta/cachedContents", json={}, headers=GEMINI_AUTH)
    assert (r.status_code, r.json()) == (status, {"error": body})


def test_default_bodies_per_endpoint(client: httpx.Client, emu: Emulator) -> None:
    emu.inject_fault(500, times=3)
    glm = client.post(GLM, json=glm_body(), headers=GLM_AUTH).json()
    openai = client.post("/v1/chat/completions", json=glm_body(), headers=GLM_AUTH).json()
    gemini = client.get("/v1beta/cachedContents", headers=GEMINI_AUTH).json()
    assert isinstance(glm["error"]["code"], str)
    assert openai["error"]["type"] == "server_error"
    assert gemini["error"]["status"] == "INTERNAL"
    emu.inject_fault(openai_rate_limit())
    assert client.post("/v1/chat/completions", json=glm_body(), headers=GLM_AUTH).json()["error"]["code"] == (
        "rate_limit_exceeded"
    )


def test_stream_cut_drops_usage(client: httpx.Client, emu: Emulator) -> None:
    emu.inject_fault(stream_cut(after_chunks=2, endpoint="glm"))
    plain = client.post(GLM, json=glm_body(), headers=GLM_AUTH)  # not a stream: fault stays armed
    assert plain.status_code == 200 and emu.pending_faults == 1
    cut = client.post(GLM, json=glm_body(stream=True), headers=GLM_AUTH)
    assert cut.status_code == 200
    assert cut.text.count("data: ") == 2 and "usage" not in cut.text and "[DONE]" not in cut.text
    full = client.post(GLM, json=glm_body(stream=True), headers=GLM_AUTH)
    assert "[DONE]" in full.text


def test_clear_faults(client: httpx.Client, emu: Emulator) -> None:
    emu.inject_fault(429, times=5)
    emu.clear_faults()
    assert client.post(GLM, json=glm_body(), headers=GLM_AUTH).status_code == 200
    with pytest.raises(ValueError):
        emu.inject_fault(429, times=0)


# ---------------------------------------------------------------------------- counters and the log


def test_counters_and_reset(client: httpx.Client, emu: Emulator) -> None:
    first = client.post(GLM, json=glm_body("one"), headers=GLM_AUTH).json()["usage"]
    second = client.post(GLM, json=glm_body("two"), headers=GLM_AUTH).json()["usage"]
    client.post("/v1beta/models/gemini-2.5-flash:generateContent", json=gemini_body(), headers=GEMINI_AUTH)
    c = emu.counters
    assert c.requests_total == 3 and dict(c.requests_by_endpoint) == {"glm": 2, "gemini": 1}
    assert c.cached_tokens_implicit == second["prompt_tokens_details"]["cached_tokens"] > 0
    assert c.implicit_cache_hits == 1 and c.generate_calls == 1
    assert c.prompt_tokens > first["prompt_tokens"] + second["prompt_tokens"]
    assert c.cached_tokens == c.cached_tokens_implicit
    emu.reset_counters()
    assert emu.counters.requests_total == 0 and emu.counters.requests_by_endpoint == {}


def test_request_log_redacts_keys_and_keeps_bodies(client: httpx.Client, emu: Emulator) -> None:
    client.post(GLM, json=glm_body("logged"), headers=GLM_AUTH)
    client.post("/v1beta/models/gemini-2.5-flash:generateContent", params={"key": "secret"}, json=gemini_body())
    client.get("/nowhere")
    glm, gemini, missing = emu.requests
    assert glm.body["messages"][1]["content"] == "logged" and glm.model == "glm-4.6"
    assert glm.headers["authorization"] == "***" and glm.status == 200 and glm.endpoint == "glm"
    assert gemini.query["key"] == "***" and gemini.model == "gemini-2.5-flash"
    assert missing.status == 404 and missing.endpoint is None
    assert emu.last_request == missing
    # the kind of assertion the integration tests make
    assert not any(r.body and r.body.get("cachedContent") and r.body.get("systemInstruction") for r in emu.requests)
    emu.clear_requests()
    assert emu.requests == []


def test_faulted_requests_are_logged_with_their_body(client: httpx.Client, emu: Emulator) -> None:
    emu.inject_fault(glm_rate_limit())
    client.post(GLM, json=glm_body("retry me"), headers=GLM_AUTH)
    client.post(GLM, json=glm_body("retry me"), headers=GLM_AUTH)
    refused, served = emu.requests
    assert (refused.status, served.status) == (429, 200)
    assert refused.body == served.body and refused.model == "glm-4.6"


def test_request_log_is_bounded(clock: FakeClock) -> None:
    emu = Emulator(clock=clock, request_log_size=3)
    for _ in range(5):
        emu.handle("GET", "/v1/models", headers=GLM_AUTH)
    assert [r.seq for r in emu.requests] == [3, 4, 5]


# --------------------------------------------------------------------------------- core and speed


def test_handle_directly(emu: Emulator) -> None:
    response = emu.handle("POST", GLM, {}, GLM_AUTH, json.dumps(glm_body()).encode())
    assert response.status == 200 and not response.is_stream
    assert response.json()["object"] == "chat.completion"
    streamed = emu.handle("POST", GLM, {}, GLM_AUTH, json.dumps(glm_body(stream=True)).encode())
    assert streamed.is_stream and streamed.read().endswith(b"data: [DONE]\n\n")


def test_thread_safety(emu: Emulator) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with httpx.Client(transport=emu.transport(), base_url="http://e") as c:
                for i in range(20):
                    assert c.post(GLM, json=glm_body(f"w{n} {i}"), headers=GLM_AUTH).status_code == 200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert emu.counters.requests_total == 160 and len({r.seq for r in emu.requests}) == 160


def test_many_long_prompts_are_fast(clock: FakeClock) -> None:
    emu = Emulator(clock=clock)
    shared = " ".join(f"rule{i % 997} applies." for i in range(6_000))  # ~18k tokens
    start = time.perf_counter()
    for i in range(120):
        body = glm_body(f"question number {i} about section {i % 7}")
        body["messages"][0]["content"] = shared
        response = emu.handle("POST", GLM, {}, GLM_AUTH, json.dumps(body).encode())
        usage = response.json()["usage"]
        assert usage["prompt_tokens"] > 18_000
        if i:
            assert usage["prompt_tokens_details"]["cached_tokens"] > 18_000
    assert time.perf_counter() - start < 3.0


# ------------------------------------------------------------------------------------- run modes


async def test_asgi_app_with_httpx_asgi_transport(emu: Emulator) -> None:
    transport = httpx.ASGITransport(app=emu.asgi_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator") as c:
        r = await c.post(GLM, json=glm_body(), headers=GLM_AUTH)
        assert r.status_code == 200 and r.json()["object"] == "chat.completion"
        async with c.stream("POST", GLM, json=glm_body(stream=True), headers=GLM_AUTH) as s:
            lines = [line async for line in s.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        r = await c.get("/v1beta/cachedContents", headers=GEMINI_AUTH)
        assert r.json() == {}


async def test_async_transport_streams_chunk_by_chunk(emu: Emulator) -> None:
    emu.stream_chunk_delay = 0.001
    async with (
        httpx.AsyncClient(transport=emu.transport(), base_url="http://emulator") as c,
        c.stream("POST", GLM, json=glm_body(stream=True), headers=GLM_AUTH) as s,
    ):
        chunks = [chunk async for chunk in s.aiter_raw()]
    assert len(chunks) > 3 and all(chunk.startswith(b"data: ") for chunk in chunks)


def test_sync_transport_streams_and_latency(emu: Emulator) -> None:
    emu.latency = 0.05
    with httpx.Client(transport=emu.transport(), base_url="http://emulator") as c:
        start = time.perf_counter()
        assert c.post(GLM, json=glm_body(), headers=GLM_AUTH).status_code == 200
        assert time.perf_counter() - start >= 0.05
        emu.latency = 0.0
        with c.stream("POST", GLM, json=glm_body(stream=True), headers=GLM_AUTH) as s:
            chunks = list(s.iter_raw())
    assert len(chunks) > 3 and chunks[-1] == b"data: [DONE]\n\n"


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_serve_over_loopback(emu: Emulator) -> None:
    with emu.serve() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.glm_base_url == f"{server.url}/api/paas/v4"
        assert server.openai_base_url == f"{server.url}/v1"
        assert server.gemini_base_url == f"{server.url}/v1beta"
        with httpx.Client(base_url=server.glm_base_url, timeout=10) as c:
            r = c.post("/chat/completions", json=glm_body(), headers=GLM_AUTH)
            assert r.status_code == 200 and r.json()["object"] == "chat.completion"
            with c.stream("POST", "/chat/completions", json=glm_body(stream=True), headers=GLM_AUTH) as s:
                lines = [line for line in s.iter_lines() if line]
            assert lines[-1] == "data: [DONE]"
        with httpx.Client(base_url=server.gemini_base_url, timeout=10) as c:
            r = c.post("/cachedContents", json={"model": "models/gemini-2.5-flash"}, headers=GEMINI_AUTH)
            assert r.status_code == 400 and "too small" in r.json()["error"]["message"]
        url = server.url
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as c:
        c.get(url + "/v1/models")


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
async def test_serve_with_async_client_and_latency(emu: Emulator) -> None:
    emu.latency = 0.02
    with emu.serve() as server:
        async with httpx.AsyncClient(base_url=server.openai_base_url, timeout=10) as c:
            body = glm_body(stream=True, stream_options={"include_usage": True})
            async with c.stream("POST", "/chat/completions", json=body, headers=GLM_AUTH) as s:
                lines = [line async for line in s.aiter_lines() if line]
    usage_chunk = json.loads(lines[-2][len("data: ") :])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["prompt_tokens"] > 0


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--port" in capsys.readouterr().out
