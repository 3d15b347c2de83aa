"""Any server that speaks OpenAI's chat completions: DeepSeek, DashScope (Qwen), vLLM, SGLang, llama.cpp, gateways.

The transport is GLM's (`providers.glm`: canonical per-message encoding, prefix fingerprints, tool-call
parsing, ``stream_options.include_usage`` on every stream), without GLM's quirks (error code 1113, at most one
stop sequence, temperature up to 1, ``thinking``). What differs per server is read here:

- the price label (`provider`): ``deepseek``, ``dashscope``, ``vllm``, ``sglang``, ``llamacpp``, ``openai``,
  ``openai_compatible`` or any genai-prices provider id; by default inferred from the host
  (`strategies.provider_from_hints`). Calls are priced under it, and a model nobody prices shows n/a;
- usage, wherever each server puts it: OpenAI's ``prompt_tokens_details.cached_tokens``, DeepSeek's
  ``prompt_cache_hit_tokens``, DashScope's ``cache_creation_input_tokens`` (`usage.usage_from_openai`), vLLM's
  usage without ``prompt_tokens_details`` on a miss (0 cached), and llama.cpp's ``timings.cache_n`` (the
  prompt tokens its slot reused: llama.cpp's usage has no cache field; recorded for llama.cpp server b7010,
  charmbracelet/fantasy ``providertests/testdata/TestOpenAICompatibleCommon/llama-cpp-gpt-oss``);
- errors: OpenAI's ``{"error": {"message", "type", "param", "code"}}``, vLLM's flat
  ``{"object": "error", "message", "type", "code"}``, typed by status.

An assistant message's reasoning is not sent back (DeepSeek answers 400 when ``reasoning_content`` is in the
input, and OpenAI-compatible servers do not read it); the reasoning of answers is read from
``reasoning_content`` (DeepSeek, vLLM's reasoning parsers, llama.cpp).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from functools import cache
from typing import Any, ClassVar

from pydantic import SecretStr

from ..errors import ConfigurationError, InvalidRequestError, ProviderError, ServerError
from ..media import as_media_part
from ..messages import ChatRequest, ChatResponse, ForcedTool, ImagePart, MediaPart, StreamChunk
from ..usage import Usage
from ..validation import SamplingLimits, validate_request
from ._body import decode_event
from ._http import STATUS_ERRORS, HTTPProvider
from .glm import StreamParser, encode_request, parse_response

__all__ = [
    "LABELS",
    "LOCAL_LABELS",
    "OPENAI_COMPATIBLE_LIMITS",
    "OpenAICompatibleProvider",
    "api_key_env",
    "check_label",
    "label_for",
    "usage_with_timings",
]

LOCAL_LABELS: tuple[str, ...] = ("vllm", "sglang", "llamacpp", "openai_compatible")
"""Servers that usually run without an API key (one is sent only when given)."""
_KEY_ENV: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "dashscope": "DASHSCOPE_API_KEY",
}
LABELS: tuple[str, ...] = (*_KEY_ENV, *LOCAL_LABELS)
"""The labels this package knows; any genai-prices provider id (``groq``, ``together``, ...) is accepted too."""

# OpenAI's chat completions: temperature in [0, 2], top_p in [0, 1] (platform.openai.com API reference);
# vLLM, SGLang and llama.cpp accept the same ranges.
OPENAI_COMPATIBLE_LIMITS = SamplingLimits("OpenAI-compatible", temperature=(0.0, 2.0), top_p=(0.0, 1.0))
_OPENAI_MAX_STOP = 4  # OpenAI's documented maximum; other servers take more
_CHAT_PATH = "chat/completions"
_HOSTED = frozenset(("openai", "deepseek", "dashscope", "zhipuai"))


@cache
def _genai_price_ids() -> frozenset[str]:
    from genai_prices.data_snapshot import get_snapshot

    return frozenset(p.id for p in get_snapshot().providers)


def check_label(label: str, *, field: str = "provider") -> str:
    """`label` when it is a known label or a genai-prices provider id; else `ConfigurationError` naming both."""
    if not isinstance(label, str) or not label:
        raise ConfigurationError(f"{field}: expected a provider label, got {label!r}; allowed: {list(LABELS)}")
    if label in LABELS or label in _genai_price_ids():
        return label
    raise ConfigurationError(
        f"{field}: {label!r} is not one of {list(LABELS)} nor a genai-prices provider id (groq, together, ...)"
    )


def label_for(base_url: str, provider: str | None = None) -> str:
    """The price label of a server: `provider` when given, else the known host's (``api.deepseek.com`` ->
    ``deepseek``, ``dashscope...`` -> ``dashscope``, ``api.openai.com`` -> ``openai``), else ``openai_compatible``."""
    if provider is not None:
        return check_label(provider)
    from ..strategies import provider_from_hints

    hinted = provider_from_hints(base_url=base_url)
    return hinted if hinted in _HOSTED else "openai_compatible"


def api_key_env(label: str) -> str:
    """The environment variable a label's API key is read from (``OPENAI_COMPATIBLE_API_KEY`` for the rest)."""
    return _KEY_ENV.get(label, "OPENAI_COMPATIBLE_API_KEY")


def usage_with_timings(usage: Usage | None, raw_usage: Any, timings: Any) -> Usage | None:
    """llama.cpp's reused prompt tokens (``timings.cache_n``) as cache reads, when usage itself has no cache
    field; `usage` unchanged otherwise (a server that reports ``cached_tokens`` is believed)."""
    if usage is None or not isinstance(timings, Mapping):
        return usage
    details = raw_usage.get("prompt_tokens_details") if isinstance(raw_usage, Mapping) else None
    if isinstance(details, Mapping) and details.get("cached_tokens") is not None:
        return usage
    if isinstance(raw_usage, Mapping) and raw_usage.get("prompt_cache_hit_tokens") is not None:
        return usage
    reused = timings.get("cache_n")
    if isinstance(reused, bool) or not isinstance(reused, int) or reused < 0:
        return usage
    return replace(usage, cache_read_tokens=min(reused, usage.input_tokens))


def _error(status: int, body: Any, provider: str) -> ProviderError:
    """OpenAI's error body (or vLLM's flat one) as a typed error; the code kept as the server sent it."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        err = body if isinstance(body, Mapping) else {}
    code = err.get("code")
    if code is None:
        code = err.get("type")
    message = str(err.get("message") or f"HTTP {status}")
    cls: type[ProviderError] = ServerError if status >= 500 else STATUS_ERRORS.get(status, ProviderError)
    return cls(message, status_code=status, code=None if code is None else str(code), provider=provider, body=body)


class _TimingsParser(StreamParser):
    """GLM's stream parser, also keeping llama.cpp's ``timings`` (on the final usage chunk)."""

    __slots__ = ("_timings",)

    def __init__(self, fingerprint: str | None, *, provider: str) -> None:
        super().__init__(fingerprint, provider=provider)
        self._timings: Any = None

    def feed(self, data: str) -> StreamChunk | None:
        if '"timings"' in data:  # only llama.cpp's chunks: decode once more, for the field the parser ignores
            event = decode_event(data, self._provider)
            self._timings = event.get("timings", self._timings)
        return super().feed(data)

    def finish(self) -> StreamChunk:
        final = super().finish()
        usage = usage_with_timings(final.usage, final.raw_usage, self._timings)
        return final if usage is final.usage else replace(final, usage=usage)


class OpenAICompatibleProvider(HTTPProvider):
    """Sync and async chat completions against any OpenAI-compatible server; `label` prices and names it."""

    provider: ClassVar[str] = "openai_compatible"

    def __init__(self, *, label: str, api_key: SecretStr | None, base_url: str, **kwargs: Any) -> None:
        self.label = check_label(label)
        self._keyless = api_key is None
        super().__init__(api_key=api_key or SecretStr("none"), base_url=base_url, **kwargs)

    @property
    def price_provider(self) -> str:
        """The genai-prices provider id calls are priced under: the label."""
        return self.label

    def auth_headers(self, api_key: SecretStr) -> dict[str, str]:
        return {} if self._keyless else {"Authorization": f"Bearer {api_key.get_secret_value()}"}

    def error_from_body(self, status: int, body: Any) -> ProviderError:
        return _error(status, body, self.label)

    # -- requests ------------------------------------------------------------------------------

    def check(self, request: ChatRequest) -> None:
        """Raise `InvalidRequestError` for a request this server cannot take (before anything is sent)."""
        if not request.messages:
            raise InvalidRequestError("messages: at least one message is required, got an empty list")
        if not request.model:
            raise InvalidRequestError("model: a model name is required")
        if self.label == "openai" and len(request.stop) > _OPENAI_MAX_STOP:
            raise InvalidRequestError(f"stop: OpenAI accepts at most 4 stop sequences, got {len(request.stop)}")
        names = {t.name for t in request.tools}
        if isinstance(request.tool_choice, ForcedTool) and request.tool_choice.name not in names:
            raise InvalidRequestError(
                f"tool_choice: {request.tool_choice.name!r} is not one of the bound tools {sorted(names)!r}"
            )
        if request.tool_choice is not None and not request.tools:
            raise InvalidRequestError("tool_choice: given without any tools")
        for i, message in enumerate(request.messages):
            if isinstance(message.content, str):
                continue
            for j, part in enumerate(message.content):
                if isinstance(part, ImagePart | MediaPart) and (
                    as_media_part(part).kind != "image" or as_media_part(part).file_uri is not None
                ):
                    raise InvalidRequestError(
                        f"messages[{i}].content[{j}]: {self.label} (chat completions) takes images by URL or "
                        f"bytes; this is a {as_media_part(part).kind} part"
                    )
        validate_request(request, OPENAI_COMPATIBLE_LIMITS)

    def _encode(self, request: ChatRequest, *, stream: bool, layout: bool) -> Any:
        if any(m.reasoning for m in request.messages):
            request = replace(request, messages=tuple(replace(m, reasoning=None) for m in request.messages))
        return encode_request(request, stream=stream, layout=layout, validate=self.check)

    def _parse(self, data: Mapping[str, Any], fingerprint: str) -> ChatResponse:
        response = parse_response(data, fingerprint, provider=self.label)
        usage = usage_with_timings(response.usage, response.raw_usage, data.get("timings"))
        response = response if usage is response.usage else replace(response, usage=usage)
        self._note_usage(response.usage, response.raw_usage)
        return response

    def chat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        enc = self._encode(request, stream=False, layout=layout)
        return self._parse(self.request("POST", _CHAT_PATH, enc.body), enc.fingerprints.prefix)

    async def achat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        enc = self._encode(request, stream=False, layout=layout)
        return self._parse(await self.arequest("POST", _CHAT_PATH, enc.body), enc.fingerprints.prefix)

    def stream(self, request: ChatRequest, *, layout: bool = True) -> Iterator[StreamChunk]:
        enc = self._encode(request, stream=True, layout=layout)
        parser = _TimingsParser(enc.fingerprints.prefix, provider=self.label)
        for data in self.stream_events(_CHAT_PATH, enc.body):
            chunk = parser.feed(data)
            if chunk is not None:
                yield chunk
        final = parser.finish()
        self._note_usage(final.usage, final.raw_usage)
        yield final

    async def astream(self, request: ChatRequest, *, layout: bool = True) -> AsyncIterator[StreamChunk]:
        enc = self._encode(request, stream=True, layout=layout)
        parser = _TimingsParser(enc.fingerprints.prefix, provider=self.label)
        async for data in self.astream_events(_CHAT_PATH, enc.body):
            chunk = parser.feed(data)
            if chunk is not None:
                yield chunk
        final = parser.finish()
        self._note_usage(final.usage, final.raw_usage)
        yield final
