"""What the server sent: usage blocks read from recorded cassettes and from the emulator's request log.

Tests that check caching "is reported exactly" compare the library's numbers with these, never with
numbers the library computed itself. The field names are the providers' own (GLM/OpenAI ``usage``,
Gemini ``usageMetadata``); nothing here imports the library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cache_integrations.testing import Emulator


def _parse_body(text: str) -> list[Any]:
    """A JSON body as ``[obj]``; an SSE body as its events (``[DONE]`` dropped)."""
    if not text.lstrip().startswith("data:"):
        return [json.loads(text)]
    events = []
    for line in text.splitlines():
        if line.startswith("data: ") and line[6:].strip() != "[DONE]":
            events.append(json.loads(line[6:]))
    return events


class Cassette:
    """The responses of the vcrpy cassette in use (what is on file when replaying, what was just
    recorded when recording), in order. Wraps the object pytest-recording's ``vcr`` fixture yields."""

    def __init__(self, vcr_cassette: Any) -> None:
        self._cassette = vcr_cassette

    def responses(self, method: str = "POST", path_contains: str = "") -> list[list[Any]]:
        """Parsed bodies (one list of JSON objects each) of the matching 2xx responses."""
        out = []
        for request, response in self._cassette.data:
            if request.method != method or path_contains not in request.uri:
                continue
            if 200 <= response["status"]["code"] < 300:
                body = response["body"]["string"]
                out.append(_parse_body(body.decode() if isinstance(body, bytes) else body))
        return out

    def usage(self, response_id: str) -> Mapping[str, Any]:
        """The usage block of the response whose ``id`` (GLM) or ``responseId`` (Gemini) is ``response_id``.

        For a stream, the last usage block sent (GLM: the finish chunk; Gemini: the final chunk).
        """
        for events in self.responses():
            ids = {e.get("id") or e.get("responseId") for e in events if isinstance(e, Mapping)}
            if response_id in ids:
                blocks = [e.get("usage") or e.get("usageMetadata") for e in events if isinstance(e, Mapping)]
                found = [b for b in blocks if b]
                assert found, f"response {response_id} carried no usage"
                return found[-1]  # type: ignore[no-any-return]
        raise AssertionError(f"no recorded response with id {response_id!r}")

    def created_cache_tokens(self, name: str | None = None) -> list[int]:
        """``usageMetadata.totalTokenCount`` of each ``cachedContents`` resource created (named ``name``)."""
        created = [events[0] for events in self.responses("POST", "/cachedContents")]
        return [c["usageMetadata"]["totalTokenCount"] for c in created if name in (None, c["name"])]


def created_caches(emu: Emulator) -> list[int]:
    """``usageMetadata.totalTokenCount`` of each ``cachedContents`` resource the emulator created, in order."""
    return [
        int(r.usage["totalTokenCount"])
        for r in emu.requests
        if r.method == "POST" and r.path.endswith("/cachedContents") and r.usage is not None
    ]


def model_usages(emu: Emulator) -> list[Mapping[str, Any]]:
    """The usage blocks of chat / generate answers only (cache resources left out), oldest first."""
    return [r.usage for r in emu.requests if r.usage is not None and not r.path.endswith("/cachedContents")]


def cached_tokens(usage: Mapping[str, Any]) -> int:
    """Cached input as sent, GLM/OpenAI or Gemini."""
    return gemini_cached(usage) if "promptTokenCount" in usage else glm_cached(usage)


def prompt_tokens(usage: Mapping[str, Any]) -> int:
    """Input as sent (including cached tokens), GLM/OpenAI or Gemini."""
    if "promptTokenCount" in usage:
        return int(usage["promptTokenCount"]) + int(usage.get("toolUsePromptTokenCount") or 0)
    return int(usage["prompt_tokens"])


def glm_cached(usage: Mapping[str, Any]) -> int:
    """GLM/OpenAI: ``usage.prompt_tokens_details.cached_tokens`` (absent = 0)."""
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)


def gemini_cached(usage: Mapping[str, Any]) -> int:
    """Gemini: ``usageMetadata.cachedContentTokenCount`` (omitted when 0)."""
    return int(usage.get("cachedContentTokenCount") or 0)


def assert_glm_reported(usage_metadata: Any, sent: Mapping[str, Any]) -> None:
    """A LangChain ``usage_metadata`` carries GLM's numbers as sent (prompt_tokens includes cached)."""
    assert usage_metadata is not None
    assert usage_metadata["input_tokens"] == sent["prompt_tokens"]
    assert usage_metadata["output_tokens"] == sent["completion_tokens"]
    assert usage_metadata["input_token_details"].get("cache_read", 0) == glm_cached(sent)
    reasoning = (sent.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    assert usage_metadata.get("output_token_details", {}).get("reasoning", 0) == reasoning


def assert_gemini_reported(usage_metadata: Any, sent: Mapping[str, Any], *, written: int = 0) -> None:
    """A LangChain ``usage_metadata`` carries Gemini's numbers as sent (thoughts are output).

    ``written``: the ``totalTokenCount`` of a ``cachedContents`` resource the call created, which the
    library books as ``cache_creation`` input on top of the generate call's prompt.
    """
    assert usage_metadata is not None
    prompt = int(sent.get("promptTokenCount") or 0) + int(sent.get("toolUsePromptTokenCount") or 0)
    thoughts = int(sent.get("thoughtsTokenCount") or 0)
    assert usage_metadata["input_tokens"] == prompt + written
    assert usage_metadata["input_token_details"].get("cache_creation", 0) == written
    assert usage_metadata["output_tokens"] == int(sent.get("candidatesTokenCount") or 0) + thoughts
    assert usage_metadata["input_token_details"].get("cache_read", 0) == gemini_cached(sent)
    assert usage_metadata.get("output_token_details", {}).get("reasoning", 0) == thoughts
