"""Gemini streams: the library must report the numbers of the final ``usageMetadata`` as sent.

Against the emulator's gemini-3-flash built-in-tools shape (earlier chunks carry provisional running
``candidatesTokenCount``; the final one has none), the expected numbers are read from the usage block
the emulator put on the wire (``RecordedRequest.usage``), never computed by the library.
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from cache_integrations.messages import ChatRequest, Message, StreamChunk
from cache_integrations.providers import RetryPolicy
from cache_integrations.providers.gemini import GeminiProvider
from cache_integrations.testing import Emulator, FakeClock

QUESTION = ChatRequest("gemini-3-flash", (Message("user", "What is 65465-6544 * 65464-6+1.02255?"),))


def _stream_final(emu: Emulator) -> StreamChunk:
    with httpx.Client(transport=emu.transport()) as client:
        provider = GeminiProvider(
            api_key=SecretStr("test-key"),
            base_url="http://emulator/v1beta",
            http_client=client,
            retry_policy=RetryPolicy(max_retries=0),
        )
        chunks = list(provider.stream(QUESTION))
    return chunks[-1]


def test_complete_final_usage_is_reported_as_sent() -> None:
    emu = Emulator(clock=FakeClock(), gemini_stream_usage="complete")
    final = _stream_final(emu)
    sent = emu.last_request.usage if emu.last_request else None
    assert sent is not None and final.usage is not None
    assert final.usage.input_tokens == sent["promptTokenCount"]
    assert final.usage.output_tokens == sent["candidatesTokenCount"] + sent["thoughtsTokenCount"]


def test_final_usage_without_candidates_is_reported_as_sent() -> None:
    emu = Emulator(clock=FakeClock(), gemini_stream_usage="without_candidates")
    final = _stream_final(emu)
    sent = emu.last_request.usage if emu.last_request else None
    assert sent is not None and final.usage is not None
    assert "candidatesTokenCount" not in sent
    assert final.usage.input_tokens == sent["promptTokenCount"]
    assert final.usage.output_tokens == sent.get("candidatesTokenCount", 0) + sent["thoughtsTokenCount"]
    assert final.usage.input_tokens + final.usage.output_tokens == sent["totalTokenCount"]
