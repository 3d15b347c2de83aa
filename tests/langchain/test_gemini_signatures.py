"""Gemini's thoughtSignature survives the trip through LangChain history, from invoke and from stream."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage

from cache_integrations.langchain._convert import (
    ai_message_from_response,
    message_chunk_from_stream,
    messages_from_langchain,
)
from cache_integrations.messages import ChatRequest
from cache_integrations.providers.gemini import StreamParser, encode_generate, parse_response

RESPONSE = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [{"functionCall": {"name": "lookup", "args": {"q": "x"}}, "thoughtSignature": "c2lnLTE="}],
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
    "modelVersion": "gemini-3.5-flash",
    "responseId": "resp-1",
}


def _replayed_part(ai: AIMessage) -> dict[str, object]:
    call = ai.tool_calls[0]
    history = [HumanMessage("find x"), ai, ToolMessage("found", tool_call_id=call["id"]), HumanMessage("thanks")]
    request = ChatRequest("gemini-3.5-flash", messages_from_langchain(history))
    body = json.loads(encode_generate(request, stream=False).body)
    part: dict[str, object] = body["contents"][1]["parts"][0]
    return part


def test_signature_from_invoke_is_replayed() -> None:
    ai = ai_message_from_response(parse_response(RESPONSE), "google")
    assert _replayed_part(ai) == {
        "functionCall": {"name": "lookup", "args": {"q": "x"}},
        "thoughtSignature": "c2lnLTE=",
    }


def test_signature_from_stream_is_replayed() -> None:
    parser = StreamParser()
    chunks = [parser.feed(json.dumps(RESPONSE))]
    merged: AIMessageChunk | None = None
    for c in [*(c for c in chunks if c), parser.finish()]:
        piece = message_chunk_from_stream(c, "google")
        merged = piece if merged is None else merged + piece
    assert merged is not None and merged.tool_calls
    assert _replayed_part(merged)["thoughtSignature"] == "c2lnLTE="
