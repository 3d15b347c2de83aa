"""The shared HTTP layer against a hostile or broken network: keys that cannot be sent, redirects,
servers that echo the key, ``Retry-After`` garbage, bodies that drip or inflate without end.

Loopback servers (`raw_server`) for what needs real sockets (httpcore's DEBUG log lines, dripping,
gzip), `httpx.MockTransport` where only the request matters. Delays are observed through the
provider's injectable sleep; no test asserts a duration.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cache_integrations.errors import (
    AuthenticationError,
    ConfigurationError,
    DeadlineExceededError,
    MalformedResponseError,
    ProviderConnectionError,
    ProviderError,
    ResponseTooLargeError,
    UnexpectedRedirectError,
)
from cache_integrations.langchain import ChatGemini, ChatGLM
from cache_integrations.llama_index import GLM, Gemini
from cache_integrations.messages import ChatRequest, Message
from cache_integrations.providers import GeminiProvider, GLMProvider, HTTPProvider
from cache_integrations.providers._body import SSEDecoder
from cache_integrations.providers._http import parse_retry_after
from cache_integrations.testing import Emulator, Fault

from .raw_server import RawRequest, canned, raw_server, response

SECRET = "test-not-a-real-key-9f8e7d6c5b4a3928"
GLM_ANSWER = {
    "id": "r1",
    "model": "glm-4.7",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1},
}


def _ask(question: str = "hello", model: str = "glm-4.7") -> ChatRequest:
    return ChatRequest(model, (Message("user", question),))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _assert_secret_absent(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    for link in _chain(exc):
        assert SECRET not in str(link) and SECRET not in repr(link), f"{type(link).__name__} shows the key"
        for value in vars(link).values():
            assert SECRET not in repr(value), f"an attribute of {type(link).__name__} holds the key"
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    for name in ("httpx", "httpcore", "cache_integrations"):
        caplog.set_level(logging.DEBUG, logger=name)
    caplog.set_level(logging.DEBUG)
    yield caplog


# ---------------------------------------------------------------------------------------- API keys


def test_a_key_with_a_trailing_newline_is_stripped_and_sent_exactly() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=GLM_ANSWER)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    llm = ChatGLM(api_key=f"  {SECRET}\n", base_url="http://glm.test/api/paas/v4", http_client=client)
    assert llm.invoke("hello").content == "hi"
    assert seen == [f"Bearer {SECRET}"]


@pytest.mark.parametrize(
    ("bad_key", "what"),
    [
        (SECRET[:10] + "\n" + SECRET[10:], "a line break"),
        (SECRET[:10] + " " + SECRET[10:], "whitespace"),
        (SECRET[:10] + "\x00" + SECRET[10:], "a control character"),
        (SECRET[:10] + "é" + SECRET[10:], "a non-ASCII character"),
    ],
)
@pytest.mark.parametrize("model", [ChatGLM, ChatGemini, GLM, Gemini])
def test_a_key_that_cannot_be_a_header_is_refused_at_construction(
    model: type[Any], bad_key: str, what: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    # LangChain models are pydantic models: the ConfigurationError arrives wrapped in a ValidationError
    # (also a ValueError), which must not print the raw input either.
    with pytest.raises(ValueError) as info:
        model(api_key=bad_key, cache_registry="memory") if model in (ChatGemini, Gemini) else model(api_key=bad_key)
    message = str(info.value)
    assert "api_key" in message and what in message and "position 10" in message
    for link in _chain(info.value):
        for fragment in (SECRET[:10], SECRET[10:]):
            assert fragment not in str(link) and fragment not in repr(link)
    assert SECRET[10:] not in debug_logs.text


def test_a_provider_built_directly_checks_its_key_too() -> None:
    with pytest.raises(ConfigurationError, match=r"GLMProvider api_key contains a line break at position 3"):
        GLMProvider(api_key=SecretStr("abc\ndef-0123456789"))
    provider = GLMProvider(api_key=SecretStr(f"\t{SECRET}\r\n"))
    assert provider._headers["Authorization"] == f"Bearer {SECRET}"


def test_default_headers_that_cannot_be_sent_are_refused_without_printing_the_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        GLMProvider(api_key=SecretStr(SECRET), default_headers={"X-Proxy-Auth": f"{SECRET}\n"})
    assert "X-Proxy-Auth" in str(info.value) and SECRET not in str(info.value)


# --------------------------------------------------------------------------------------- redirects


def _two_hosts() -> tuple[httpx.MockTransport, dict[str, list[httpx.Request]]]:
    seen: dict[str, list[httpx.Request]] = {"api.test": [], "evil.test": []}

    def answer(request: httpx.Request) -> httpx.Response:
        seen[request.url.host].append(request)
        if request.url.host == "api.test":
            return httpx.Response(302, headers={"location": "http://evil.test/steal"})
        return httpx.Response(200, json=GLM_ANSWER)

    return httpx.MockTransport(answer), seen


@pytest.mark.parametrize("kind", ["gemini", "glm"])
def test_a_redirect_is_a_typed_error_and_the_key_never_reaches_the_other_host(kind: str) -> None:
    transport, seen = _two_hosts()
    client = httpx.Client(transport=transport, follow_redirects=True)  # the user's client follows redirects
    provider: HTTPProvider
    if kind == "gemini":
        provider = GeminiProvider(api_key=SecretStr(SECRET), base_url="http://api.test/v1beta", http_client=client)
        call = lambda: provider.chat(_ask(model="gemini-2.5-flash"))  # noqa: E731
    else:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url="http://api.test/api/paas/v4", http_client=client)
        call = lambda: provider.chat(_ask())  # noqa: E731
    with pytest.raises(UnexpectedRedirectError) as info:
        call()
    assert info.value.status_code == 302 and info.value.location == "http://evil.test/steal"
    assert "evil.test/steal" in str(info.value) and "redirect" in str(info.value)
    assert seen["evil.test"] == [] and len(seen["api.test"]) == 1  # not followed, not retried


async def test_a_redirect_on_an_async_stream_is_typed_too() -> None:
    transport, seen = _two_hosts()
    client = httpx.AsyncClient(transport=transport, follow_redirects=True)
    provider = GeminiProvider(api_key=SecretStr(SECRET), base_url="http://api.test/v1beta", async_http_client=client)
    with pytest.raises(UnexpectedRedirectError):
        async for _ in provider.astream(_ask(model="gemini-2.5-flash")):
            pass
    assert seen["evil.test"] == []


def test_auth_headers_go_only_to_the_base_urls_origin() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    gemini = GeminiProvider(api_key=SecretStr(SECRET), base_url="https://api.test/v1beta", http_client=client)
    gemini.request("GET", "https://api.test/upload/v1beta/files?upload_id=1")  # same origin, other path
    gemini.request("GET", "https://uploads.other.test/v1beta/files")  # another host
    gemini.request("GET", "http://api.test/v1beta/files")  # same host, another scheme (and port)
    glm = GLMProvider(api_key=SecretStr(SECRET), base_url="https://api.test/api/paas/v4", http_client=client)
    glm.request("GET", "https://api.test:8443/api/paas/v4/x")  # same host, another port
    assert seen[0].headers.get("x-goog-api-key") == SECRET
    for request in seen[1:3]:
        assert "x-goog-api-key" not in request.headers and SECRET not in str(request.headers.raw)
    assert "authorization" not in seen[3].headers


# ------------------------------------------------------------------------ keys echoed by the server


def _echo_key_in_error_body(conn: socket.socket, request: RawRequest) -> bool:
    body = {"error": {"code": "1000", "message": f"Authentication failed for key {SECRET}"}}
    conn.sendall(response(401, json.dumps(body).encode(), {"x-echo": SECRET}))
    return True


def test_a_key_echoed_in_an_error_body_and_header_is_scrubbed_everywhere(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    with raw_server(_echo_key_in_error_body) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url)
        with pytest.raises(AuthenticationError) as info:
            provider.chat(_ask())
    assert "Authentication failed for key [REDACTED]" in str(info.value)
    assert "[REDACTED]" in json.dumps(info.value.body)
    assert any(r.name.startswith("httpcore") for r in debug_logs.records)  # the DEBUG lines were captured
    assert any("[REDACTED]" in r.getMessage() for r in debug_logs.records if r.name.startswith("httpcore"))
    _assert_secret_absent(info.value, debug_logs)


def test_a_key_echoed_in_a_redirect_location_is_scrubbed(debug_logs: pytest.LogCaptureFixture) -> None:
    answer = canned(307, b"", {"location": f"https://mirror.test/v1beta?key={SECRET}"})
    with raw_server(answer) as server:
        provider = GeminiProvider(api_key=SecretStr(SECRET), base_url=f"{server.url}/v1beta")
        with pytest.raises(UnexpectedRedirectError) as info:
            provider.chat(_ask(model="gemini-2.5-flash"))
    assert info.value.location == "https://mirror.test/v1beta?key=[REDACTED]"
    _assert_secret_absent(info.value, debug_logs)


def test_a_key_echoed_in_a_malformed_body_is_scrubbed_from_the_excerpt(debug_logs: pytest.LogCaptureFixture) -> None:
    page = f"<html><body>proxy login for {SECRET}</body></html>".encode()
    with raw_server(canned(200, page, {"content-type": "text/html"})) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url)
        with pytest.raises(MalformedResponseError) as info:
            provider.chat(_ask())
    assert "proxy login for [REDACTED]" in str(info.value)
    _assert_secret_absent(info.value, debug_logs)


def _garbage_status_line(conn: socket.socket, request: RawRequest) -> bool:
    conn.sendall(f"HTTP/1.1 200 OK\r\nbroken header line {SECRET}\r\n\r\n".encode())
    return False


def test_a_protocol_error_that_quotes_the_server_is_never_chained(debug_logs: pytest.LogCaptureFixture) -> None:
    with raw_server(_garbage_status_line) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url, max_retries=0)
        with pytest.raises(ProviderConnectionError) as info:
            provider.chat(_ask())
    assert "RemoteProtocolError" in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    _assert_secret_absent(info.value, debug_logs)


# -------------------------------------------------------------------------------------- Retry-After


def _sleeps(emu: Emulator, retry_after: str | None, *, asynchronous: bool = False) -> list[float]:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    emu.inject_fault(Fault(status=429, endpoint="glm", headers=headers), times=1)
    slept: list[float] = []

    async def async_sleep(seconds: float) -> None:
        slept.append(seconds)

    provider = GLMProvider(
        api_key=SecretStr(SECRET),
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=emu.transport()),
        async_http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.asgi_app)),
        sleep=slept.append,
        async_sleep=async_sleep,
    )
    if asynchronous:
        import asyncio

        asyncio.run(provider.achat(_ask()))
    else:
        provider.chat(_ask())
    return slept


def test_retry_after_seconds_are_slept_exactly() -> None:
    assert _sleeps(Emulator(), "7") == [7.0]  # default backoff would be 0.5-0.625 s
    assert _sleeps(Emulator(), "7", asynchronous=True) == [7.0]


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-3", "1e999", "soon", "Mon, 99 Foo 2026 99:99:99 GMT"])
@pytest.mark.parametrize("asynchronous", [False, True])
def test_unusable_retry_after_falls_back_to_the_default_backoff(value: str, asynchronous: bool) -> None:
    slept = _sleeps(Emulator(), value, asynchronous=asynchronous)
    assert len(slept) == 1 and 0.5 <= slept[0] <= 0.625, slept


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after": "0"}) == 0.0
    for garbage in ("nan", "inf", "-1", "", "soon"):
        assert parse_retry_after({"retry-after": garbage}) is None
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=lambda: 1445412470.0) == 10.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past


# ----------------------------------------------------------------------------------------- deadline


def _drip(content_type: str, prefix: bytes, rest: bytes, interval: float = 0.02) -> Any:
    """A valid answer whose first bytes (`prefix`) arrive one every `interval` seconds (about 8 s):
    without a deadline the call would succeed, slowly; with one it must stop."""
    body = prefix + rest
    head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode()

    def answer(conn: socket.socket, request: RawRequest) -> bool:
        conn.sendall(head)
        for i in range(len(prefix)):
            time.sleep(interval)
            conn.sendall(prefix[i : i + 1])
        conn.sendall(rest)
        return False

    return answer


def _drip_json() -> Any:
    return _drip("application/json", b" " * 400, json.dumps(GLM_ANSWER).encode())


def _drip_sse() -> Any:
    final = {"id": "r1", "model": "glm-4.7", **{"choices": [{"index": 0, "delta": {"content": "hi"}}]}}
    final["choices"][0]["finish_reason"] = "stop"
    final["usage"] = {"prompt_tokens": 5, "completion_tokens": 1}
    events = b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n"
    return _drip("text/event-stream", b":" * 400, b"\n\n" + events)


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_a_server_dripping_bytes_hits_the_deadline(mode: str) -> None:
    import asyncio

    answer = _drip_sse() if "stream" in mode else _drip_json()
    with raw_server(answer) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url, deadline=0.5)

        async def consume() -> None:
            if mode == "ainvoke":
                await provider.achat(_ask())
            else:
                async for _ in provider.astream(_ask()):
                    pass

        with pytest.raises(DeadlineExceededError) as info:
            if mode == "invoke":
                provider.chat(_ask())
            elif mode == "stream":
                list(provider.stream(_ask()))
            else:
                asyncio.run(consume())
    assert isinstance(info.value, ProviderConnectionError) and info.value.deadline == 0.5
    assert info.value.maybe_sent and "deadline of 0.5 s" in str(info.value)


@pytest.mark.parametrize("model", [ChatGLM, GLM])
def test_the_chat_models_pass_their_deadline_through(model: type[Any]) -> None:
    with raw_server(_drip_json()) as server:
        llm = model(api_key=SECRET, base_url=server.url, deadline=0.5)
        assert llm.client.deadline == 0.5 if model is ChatGLM else llm._client.deadline == 0.5
        with pytest.raises(DeadlineExceededError):
            llm.invoke("hello") if model is ChatGLM else llm.complete("hello")


def test_the_gemini_models_take_a_deadline() -> None:
    assert ChatGemini(api_key=SECRET, deadline=3, cache_registry="memory").cache_manager.client.deadline == 3.0  # type: ignore[attr-defined]
    assert Gemini(api_key=SECRET, deadline=3, cache_registry="memory").cache_manager.client.deadline == 3.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "soon", True])
def test_a_bad_deadline_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="deadline"):
        GLMProvider(api_key=SecretStr(SECRET), deadline=bad)


def test_retries_that_would_overrun_the_deadline_raise_the_real_error_at_once() -> None:
    emu = Emulator()
    emu.inject_fault(Fault(status=429, endpoint="glm", headers={"Retry-After": "20"}), times=3)
    slept: list[float] = []
    provider = GLMProvider(
        api_key=SecretStr(SECRET),
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=emu.transport()),
        deadline=10,
        sleep=slept.append,
    )
    with pytest.raises(ProviderError) as info:
        provider.chat(_ask())
    assert info.value.status_code == 429 and slept == []


# --------------------------------------------------------------------------------------- size caps


def _gzip_bomb(size: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * (1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, compressor.flush()])


_BOMB: dict[int, bytes] = {}


def bomb(size: int = 256 << 20) -> bytes:
    if size not in _BOMB:
        _BOMB[size] = _gzip_bomb(size)
    return _BOMB[size]


def test_a_gzip_bomb_stops_at_the_default_cap() -> None:
    body = bomb()
    assert len(body) < 300_000  # ~255 KB on the wire, 256 MiB once inflated
    with raw_server(canned(200, body, {"content-encoding": "gzip"})) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url)
        with pytest.raises(ResponseTooLargeError) as info:
            provider.chat(_ask())
    assert info.value.limit == 64 * 1024 * 1024 and "max_response_bytes" in str(info.value)


def test_a_gzip_bomb_never_inflates_far_past_a_small_cap() -> None:
    with raw_server(canned(200, bomb(), {"content-encoding": "gzip"})) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url, max_response_bytes=1 << 20)
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError):
                provider.chat(_ask())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak >> 20} MiB while reading a body capped at 1 MiB"


async def test_a_gzip_bomb_in_a_stream_stops_at_the_cap() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    event = b"data: " + b"0" * (8 << 20)  # one 8 MiB line that never ends
    body = compressor.compress(event) + compressor.flush()
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
    with raw_server(canned(200, body, headers)) as server:
        provider = GeminiProvider(
            api_key=SecretStr(SECRET), base_url=f"{server.url}/v1beta", max_response_bytes=1 << 20
        )
        with pytest.raises(ResponseTooLargeError, match="max_response_bytes=1048576"):
            async for _ in provider.astream(_ask(model="gemini-2.5-flash")):
                pass


def test_one_stream_event_is_capped_even_when_split_across_many_reads() -> None:
    decoder = SSEDecoder(limit=1000, provider="google")
    assert decoder.feed(b"data: {}\r") == []  # CR at the end of a read: maybe half of a CRLF
    assert decoder.feed(b"\n\r\n") == ["{}"]
    with pytest.raises(ResponseTooLargeError, match="stream event"):
        for _ in range(20):
            decoder.feed(b"data: " + b"x" * 100 + b"\n")  # lines of one event that never ends
    with pytest.raises(ResponseTooLargeError, match="stream event"):
        partial = SSEDecoder(limit=1000, provider="google")
        for _ in range(20):
            partial.feed(b"x" * 100)  # one line that never ends


def test_deflate_and_plain_gzip_bodies_still_decode() -> None:
    data = json.dumps(GLM_ANSWER).encode()
    for encoding, body in (("gzip", gzip.compress(data)), ("deflate", zlib.compress(data)), ("identity", data)):
        with raw_server(canned(200, body, {"content-encoding": encoding})) as server:
            provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url)
            assert provider.chat(_ask()).message.text == "hi"


def test_an_unsupported_content_encoding_is_malformed() -> None:
    with raw_server(canned(200, b"\x0b\x02\x80{}\x03", {"content-encoding": "br"})) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url)
        with pytest.raises(MalformedResponseError, match="Content-Encoding 'br'"):
            provider.chat(_ask())
        assert server.requests[0].header("accept-encoding") == "gzip, deflate"


def test_an_oversized_error_body_is_truncated_not_fatal() -> None:
    body = json.dumps({"error": {"code": "1214", "message": "x" * (1 << 20)}}).encode()
    with raw_server(canned(400, body)) as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.url)
        with pytest.raises(ProviderError) as info:
            provider.chat(_ask())
    assert info.value.status_code == 400 and len(info.value.message) <= 64 * 1024


def test_threads_share_one_provider_under_the_new_transport() -> None:
    emu = Emulator()
    with emu.serve() as server:
        provider = GLMProvider(api_key=SecretStr(SECRET), base_url=server.glm_base_url)
        answers: dict[int, str] = {}

        def ask(i: int) -> None:
            answers[i] = provider.chat(_ask(f"thread question {i}")).message.text

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert all(f"thread question {i}" in answers[i] for i in range(8))


def test_the_new_errors_survive_pickling() -> None:
    import pickle

    errors: list[Exception] = [
        MalformedResponseError("the response is not valid JSON", status_code=200, provider="google"),
        ResponseTooLargeError("too large", limit=10, status_code=200, provider="zhipuai"),
        UnexpectedRedirectError("moved", location="http://x.test/", status_code=302, provider="google"),
        DeadlineExceededError("late", provider="zhipuai", maybe_sent=False, deadline=2.5),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
