"""Zhipu GLM (open.bigmodel.cn) and Z.ai chat completions over httpx.

GLM caches implicitly: the provider reuses the longest prefix it has seen and reports the hit in
``usage.prompt_tokens_details.cached_tokens``. So this module's job is to send byte-stable prefixes
(the core layout plus canonical per-message encoding) and to read usage wherever GLM puts it.

Wire facts honoured here (recorded 2025-2026): streamed usage usually rides on the chunk that
carries ``finish_reason``, sometimes on a separate ``choices: []`` chunk; older models omit
``prompt_tokens_details``; tool-call ``arguments`` is a JSON string; error bodies are
``{"error": {"code": "1214", "message": ...}}`` with a string code, sometimes without the wrapper;
HTTP 429 with code ``1113`` means the account has no balance and must not be retried.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from pydantic import SecretStr

from .._memo import MessageFacts, chain_of, facts_of
from ..errors import (
    InsufficientBalanceError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ServerError,
)
from ..layout import PrefixFingerprints, apply_layout, canonical_json, layout_order, stable_prefix_length
from ..media import as_media_part, part_mime_type, read_media
from ..messages import (
    ChatRequest,
    ChatResponse,
    ForcedTool,
    ImagePart,
    MediaPart,
    Message,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolCallChunk,
    ToolDefinition,
)
from ..usage import usage_from_openai
from ..validation import GLM_LIMITS, validate_request
from ._body import as_object, decode_event, get_list, get_object, get_str, kind_of, malformed
from ._endpoints import GLM_BASE_URL, ZAI_BASE_URL
from ._http import STATUS_ERRORS, EncodedRequest, HTTPProvider

__all__ = [
    "GLM_BASE_URL",
    "ZAI_BASE_URL",
    "EncodedRequest",
    "GLMProvider",
    "check_media",
    "glm_options",
    "usage_from_openai",
]

PROVIDER = "zhipuai"
_CHAT_PATH = "chat/completions"
INSUFFICIENT_BALANCE = "1113"


def glm_options(*, thinking: str | None = None, reasoning_effort: str | None = None) -> dict[str, Any]:
    """Body fields for GLM's reasoning settings (``thinking`` for glm-4.5+, ``reasoning_effort`` for 5.2+)."""
    extra: dict[str, Any] = {}
    if thinking is not None:
        extra["thinking"] = {"type": thinking}
    if reasoning_effort is not None:
        extra["reasoning_effort"] = reasoning_effort
    return extra


# GLM vision models that take video (``video_url``): GLM-4V-Plus and the GLM-4.1V/4.5V/4.6V families
# (https://docs.bigmodel.cn/api-reference, "video_url": {"url": "https://xxx/xx.mp4"}). Video goes by URL.
_VIDEO_MODELS = ("glm-4v-plus", "glm-4.1v", "glm-4.5v", "glm-4.6v")


def _check_media(media: MediaPart, model: str, where: str) -> None:
    """Raise for media GLM cannot take on `model`, naming it; never drop it silently."""
    if media.kind == "image" and media.file_uri is None:
        if media.url is not None:
            scheme = media.url.split(":", 1)[0].lower()
            if scheme not in ("http", "https", "data"):
                raise InvalidRequestError(f"{where}: image URL scheme {scheme!r} is not supported; use https: or data:")
        return
    if media.kind == "video" and model.lower().removeprefix("zai-org/").startswith(_VIDEO_MODELS):
        if media.url is not None and media.url.startswith(("http://", "https://")):
            return
        raise InvalidRequestError(
            f"{where}: GLM takes video by http(s) URL only ({model} video_url); this video part has a {media.source}"
        )
    if media.kind == "video":
        what = f"video parts; of GLM's vision models only {', '.join(_VIDEO_MODELS)} take video (by URL)"
    elif media.file_uri is not None:
        what = "provider file references (it has no Files API); send the image bytes or an https URL"
    else:
        what = f"{media.kind} parts; it takes images (all vision models) and video URLs"
    raise InvalidRequestError(f"{where}: GLM ({model}) does not accept {what}")


def check_media(request: ChatRequest) -> None:
    """Every media part of `request` is one GLM takes (cheap: nothing is read or encoded)."""
    for i, message in enumerate(request.messages):
        if isinstance(message.content, str):
            continue
        for j, part in enumerate(message.content):
            if isinstance(part, (ImagePart, MediaPart)):
                _check_media(as_media_part(part), request.model, f"messages[{i}].content[{j}]")


def _media_part(part: ImagePart | MediaPart, model: str, where: str) -> dict[str, Any]:
    """GLM's ``image_url`` / ``video_url`` part."""
    media = as_media_part(part)
    _check_media(media, model, where)
    if media.kind == "video":
        return {"type": "video_url", "video_url": {"url": media.url}}
    if media.url is not None:
        url = media.url
    else:
        data = base64.b64encode(read_media(media, where)).decode("ascii")
        url = f"data:{part_mime_type(media, where)};base64,{data}"
    image: dict[str, Any] = {"url": url}
    if media.detail:
        image["detail"] = media.detail
    return {"type": "image_url", "image_url": image}


def _encode_content(message: Message, index: int, model: str = "") -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.content):
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, (ImagePart, MediaPart)):
            if message.role != "user":
                kind = "images" if isinstance(part, ImagePart) or part.kind == "image" else "media"
                raise InvalidRequestError(
                    f"messages[{index}]: GLM accepts {kind} only in user messages, not in a {message.role!r} message"
                )
            parts.append(_media_part(part, model, f"messages[{index}].content[{j}]"))
        else:  # pragma: no cover - the Part union is closed
            raise InvalidRequestError(f"messages[{index}]: unsupported content part {type(part).__name__}")
    if message.role in ("system", "assistant", "tool"):
        # GLM takes plain strings for these roles; text parts concatenate without a separator.
        return "".join(p["text"] for p in parts)
    return parts


def _encode_message(message: Message, index: int, model: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role}
    content = _encode_content(message, index, model)
    if content or not message.tool_calls:
        out["content"] = content
    if message.name and message.role == "user":
        out["name"] = message.name
    if message.role == "assistant":
        if message.reasoning:
            out["reasoning_content"] = message.reasoning
        if message.tool_calls:
            out["tool_calls"] = [_encode_tool_call(tc, index) for tc in message.tool_calls]
    if message.role == "tool":
        if not message.tool_call_id:
            raise InvalidRequestError(f"messages[{index}]: a tool message needs the tool_call_id it answers")
        out["tool_call_id"] = message.tool_call_id
    return out


def _encode_tool_call(call: ToolCall, index: int) -> dict[str, Any]:
    if call.error is not None and call.raw_arguments is not None:
        arguments = call.raw_arguments  # replay malformed arguments exactly as the model produced them
    else:
        arguments = canonical_json(call.arguments, what=f"messages[{index}].tool_calls[{call.name!r}].arguments")
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def _encode_tool(tool: ToolDefinition) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
    }
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _encode_tool_choice(choice: Any) -> Any:
    if isinstance(choice, ForcedTool):
        return {"type": "function", "function": {"name": choice.name}}
    return choice


def _validate(request: ChatRequest) -> None:
    if not request.messages:
        raise InvalidRequestError("messages: at least one message is required, got an empty list")
    if not request.model:
        raise InvalidRequestError("model: a model name is required")
    if len(request.stop) > 1:
        raise InvalidRequestError(
            f"stop: GLM accepts at most one stop sequence, got {len(request.stop)}: {list(request.stop)!r}"
        )
    if isinstance(request.tool_choice, ForcedTool) and request.tool_choice.name not in {t.name for t in request.tools}:
        raise InvalidRequestError(
            f"tool_choice: {request.tool_choice.name!r} is not one of the bound tools "
            f"{sorted(t.name for t in request.tools)!r}"
        )
    if request.tool_choice is not None and not request.tools:
        raise InvalidRequestError("tool_choice: given without any tools")


def encode_request(
    request: ChatRequest, *, stream: bool, layout: bool = True, validate: Callable[[ChatRequest], None] | None = None
) -> EncodedRequest:
    """Encode `request` into GLM's wire format (OpenAI's chat completions), deterministically.

    With `layout` (the default) system messages come first and tools are ordered by name; every
    JSON value is canonical either way, so only the ordering differs when it is off. `validate` replaces
    GLM's own checks (another OpenAI-compatible server's limits).
    """
    facts = facts_of(request.messages)
    if validate is None:
        _validate(request)
        validate_request(request, GLM_LIMITS, facts)
    else:
        validate(request)
    if layout:
        laid_out = apply_layout(request)
        if laid_out.messages is not request.messages:
            facts = [facts[i] for i in layout_order(request.messages)]
        request = laid_out
    head: dict[str, Any] = {"model": request.model}
    if request.tools:
        head["tools"] = [_encode_tool(t) for t in request.tools]
    header = canonical_json(head, what="tools")
    segments = [_segment(m, f, i, request.model) for i, (m, f) in enumerate(zip(request.messages, facts, strict=True))]
    params: dict[str, Any] = {}
    if request.tool_choice is not None:
        params["tool_choice"] = _encode_tool_choice(request.tool_choice)
    if request.temperature is not None:
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["top_p"] = request.top_p
    if request.max_tokens is not None:
        params["max_tokens"] = request.max_tokens
    if request.stop:
        params["stop"] = list(request.stop)
    if request.response_format is not None:
        params["response_format"] = request.response_format
    if stream:
        params["stream"] = True
        # Every recorded GLM / Z.ai stream request sends this; OpenAI-compatible servers send no usage
        # on a stream without it, and a stream without usage would report its cached tokens as unknown.
        params["stream_options"] = {"include_usage": True}
    for key, value in request.extra.items():
        if key == "stream_options" and stream and isinstance(value, Mapping):
            params[key] = {**params[key], **value}
            continue
        if key in params or key in ("model", "messages", "tools"):
            raise InvalidRequestError(f"extra body field {key!r} collides with a field this client sets")
        params[key] = value
    tail = canonical_json(params, what="request parameters")
    # The body is assembled from the same bytes the fingerprints cover: the header object with its
    # closing brace replaced by the messages array and the remaining parameters.
    body = b"".join(
        (
            header[:-1].encode(),
            b',"messages":[',
            b",".join(segments),
            b"]",
            b"," + tail[1:].encode() if len(tail) > 2 else b"}",
        )
    )
    chain = tuple(chain_of(header.encode(), segments))
    return EncodedRequest(body, PrefixFingerprints(chain, stable_prefix_length(request.messages)), request.model)


def _segment(message: Message, facts: MessageFacts, index: int, model: str) -> bytes:
    """A message's canonical JSON, encoded once per distinct message (and model, for one with media: which
    media GLM takes depends on the model)."""
    known = facts.glm
    if type(known) is bytes:
        return known
    if known is not None and known[0] == model:
        return bytes(known[1])
    segment = canonical_json(_encode_message(message, index, model), what=f"messages[{index}]").encode()
    has_media = not isinstance(message.content, str) and any(
        isinstance(p, (ImagePart, MediaPart)) for p in message.content
    )
    facts.glm = (model, segment) if has_media else segment
    return segment


def tool_call_from_wire(call_id: str, name: str, arguments: Any) -> ToolCall:
    """Parse a wire tool call whose `arguments` is a JSON string (or, from some gateways, an object)."""
    if not isinstance(arguments, str):
        if arguments is None or isinstance(arguments, dict):
            return ToolCall(call_id, name, arguments or {})
        return ToolCall(call_id, name, {}, json.dumps(arguments), "arguments is not a JSON object")
    if not arguments.strip():
        return ToolCall(call_id, name, {}, arguments)
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        return ToolCall(call_id, name, {}, arguments, f"arguments is not valid JSON: {exc}")
    if not isinstance(parsed, dict):
        return ToolCall(call_id, name, {}, arguments, "arguments is not a JSON object")
    return ToolCall(call_id, name, parsed, arguments)


def _parse_tool_calls(raw_calls: list[Any], where: str, body: Any, provider: str = PROVIDER) -> tuple[ToolCall, ...]:
    calls = []
    for i, raw in enumerate(raw_calls):
        call = as_object(raw, f"{where}[{i}]", provider, body)
        fn = get_object(call, "function", f"{where}[{i}]", provider, body)
        call_id = get_str(call, "id", f"{where}[{i}]", provider, body) or ""
        name = get_str(fn, "name", f"{where}[{i}].function", provider, body) or ""
        calls.append(tool_call_from_wire(call_id, name, fn.get("arguments")))
    return tuple(calls)


def _choice(data: Mapping[str, Any], provider: str = PROVIDER) -> Mapping[str, Any] | None:
    """The first choice (None when the list is empty), checked to be an object."""
    choices = get_list(data, "choices", "", provider, data)
    return as_object(choices[0], "choices[0]", provider, data) if choices else None


def parse_response(
    data: Mapping[str, Any], fingerprint: str | None = None, *, provider: str = PROVIDER
) -> ChatResponse:
    """A non-streaming GLM response to `ChatResponse` (tool-call arguments parsed from JSON).

    A body of the wrong shape raises `MalformedResponseError`; usage that is missing or invalid is
    reported as unknown (``usage=None``). `provider` names the server in errors.
    """
    choice = _choice(as_object(data, "the response", provider, data), provider)
    if choice is None:
        raise malformed(provider, "the response has no choices", data)
    msg = get_object(choice, "message", "choices[0]", provider, data)
    where = "choices[0].message"
    message = Message(
        role="assistant",
        content=get_str(msg, "content", where, provider, data) or "",
        tool_calls=_parse_tool_calls(
            get_list(msg, "tool_calls", where, provider, data), f"{where}.tool_calls", data, provider
        ),
        reasoning=get_str(msg, "reasoning_content", where, provider, data) or None,
    )
    raw_usage = data.get("usage")
    return ChatResponse(
        message=message,
        finish_reason=get_str(choice, "finish_reason", "choices[0]", provider, data),
        usage=usage_from_openai(raw_usage),
        model=str(data.get("model") or ""),
        id=_text_id(data.get("id") or data.get("request_id")),
        prefix_fingerprint=fingerprint,
        raw_usage=raw_usage if isinstance(raw_usage, Mapping) else None,
    )


def _text_id(value: Any) -> str | None:
    return None if value is None else str(value)


def _tool_call_chunk(raw: Any, where: str, body: Any, provider: str = PROVIDER) -> ToolCallChunk:
    """A streamed tool call. GLM sends each call whole (unless ``tool_stream`` is on); a whole call
    carries no index, so frameworks never merge it with another block that happens to share one."""
    call = as_object(raw, where, provider, body)
    fn = get_object(call, "function", where, provider, body)
    args = fn.get("arguments")
    call_id = get_str(call, "id", where, provider, body)
    name = get_str(fn, "name", f"{where}.function", provider, body)
    whole = bool(call_id and name) and not tool_call_from_wire("", "", args).error
    if isinstance(args, str) and not args.strip():
        whole = False
    if not (args is None or isinstance(args, str)):
        args = json.dumps(args)  # some gateways send an object; the chunk carries JSON text
    index = call.get("index")
    if not whole and index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise malformed(provider, f"{where}.index is {kind_of(index)}, expected an integer", body)
    return ToolCallChunk(index=None if whole else int(index or 0), id=call_id, name=name, arguments=args)


class StreamParser:
    """Turns GLM SSE `data` payloads into `StreamChunk`s; `finish()` yields the single final chunk.

    Usage is taken from whichever chunk carries it (the finish chunk or a trailing
    ``choices: []`` chunk), the last non-null one winning, and reported only on the final chunk
    (``usage=None`` there when the stream carried none, or none that is valid). An event that is not
    a JSON object of the documented shape raises `MalformedResponseError`.
    """

    __slots__ = ("_done", "_fingerprint", "_finish_reason", "_id", "_model", "_provider", "_raw_usage")

    def __init__(self, fingerprint: str | None = None, *, provider: str = PROVIDER) -> None:
        self._fingerprint = fingerprint
        self._provider = provider
        self._done = False
        self._finish_reason: str | None = None
        self._raw_usage: Any = None
        self._model: str | None = None
        self._id: str | None = None

    def feed(self, data: str) -> StreamChunk | None:
        if data == "[DONE]":
            self._done = True
            return None
        event = decode_event(data, self._provider)
        if "error" in event:  # an error delivered inside the stream
            raise _error_from_body(200, event, self._provider)
        self._model = str(event.get("model") or "") or self._model
        self._id = _text_id(event.get("id")) or self._id
        if event.get("usage") is not None:
            self._raw_usage = event["usage"]
        choice = _choice(event, self._provider)
        if choice is None:
            return None
        finish = get_str(choice, "finish_reason", "choices[0]", self._provider, event)
        if finish:
            self._finish_reason = finish
        delta = get_object(choice, "delta", "choices[0]", self._provider, event)
        where = "choices[0].delta"
        text = get_str(delta, "content", where, self._provider, event) or ""
        reasoning = get_str(delta, "reasoning_content", where, self._provider, event) or ""
        tool_chunks = tuple(
            _tool_call_chunk(tc, f"{where}.tool_calls[{i}]", event, self._provider)
            for i, tc in enumerate(get_list(delta, "tool_calls", where, self._provider, event))
        )
        if not (text or reasoning or tool_chunks):
            return None
        return StreamChunk(text=text, reasoning=reasoning, tool_call_chunks=tool_chunks)

    def finish(self) -> StreamChunk:
        if not self._done and self._finish_reason is None:
            # The connection closed mid-answer: the text is incomplete and usage was never sent.
            raise ProviderConnectionError(
                f"{self._provider}: the stream ended before the answer finished (no finish_reason, no [DONE])",
                provider=self._provider,
            )
        return StreamChunk(
            final=True,
            finish_reason=self._finish_reason,
            usage=usage_from_openai(self._raw_usage),
            model=self._model,
            id=self._id,
            prefix_fingerprint=self._fingerprint,
            raw_usage=self._raw_usage if isinstance(self._raw_usage, Mapping) else None,
        )


def _error_from_body(status: int, body: Any, provider: str) -> ProviderError:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        err = body if isinstance(body, dict) else {}
    code = err.get("code")
    code = str(code) if code is not None else None
    message = str(err.get("message") or f"HTTP {status}")
    request_id = body.get("request_id") if isinstance(body, dict) else None
    if code == INSUFFICIENT_BALANCE:
        cls: type[ProviderError] = InsufficientBalanceError
    elif status >= 500:
        cls = ServerError
    else:
        cls = STATUS_ERRORS.get(status, ProviderError)
    return cls(message, status_code=status, code=code, provider=provider, request_id=request_id, body=body)


class GLMProvider(HTTPProvider):
    """Sync and async GLM chat completions with pooled connections and bounded retries."""

    provider = PROVIDER

    def __init__(self, *, api_key: SecretStr, base_url: str = GLM_BASE_URL, **kwargs: Any) -> None:
        super().__init__(api_key=api_key, base_url=base_url, **kwargs)

    @property
    def price_provider(self) -> str:
        """The genai-prices provider id for this endpoint (Z.ai bills in USD, bigmodel in CNY)."""
        return "zai" if "z.ai" in self.base_url else "zhipuai"

    def auth_headers(self, api_key: SecretStr) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key.get_secret_value()}"}

    def error_from_body(self, status: int, body: Any) -> ProviderError:
        return _error_from_body(status, body, self.provider)

    def is_retryable(self, error: ProviderError) -> bool:
        if isinstance(error, InsufficientBalanceError):
            return False
        return super().is_retryable(error)

    def chat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        enc = encode_request(request, stream=False, layout=layout)
        response = parse_response(self.request("POST", _CHAT_PATH, enc.body), enc.fingerprints.prefix)
        self._note_usage(response.usage, response.raw_usage)
        return response

    async def achat(self, request: ChatRequest, *, layout: bool = True) -> ChatResponse:
        enc = encode_request(request, stream=False, layout=layout)
        response = parse_response(await self.arequest("POST", _CHAT_PATH, enc.body), enc.fingerprints.prefix)
        self._note_usage(response.usage, response.raw_usage)
        return response

    def stream(self, request: ChatRequest, *, layout: bool = True) -> Iterator[StreamChunk]:
        enc = encode_request(request, stream=True, layout=layout)
        parser = StreamParser(enc.fingerprints.prefix)
        for data in self.stream_events(_CHAT_PATH, enc.body):
            chunk = parser.feed(data)
            if chunk is not None:
                yield chunk
        final = parser.finish()
        self._note_usage(final.usage, final.raw_usage)
        yield final

    async def astream(self, request: ChatRequest, *, layout: bool = True) -> AsyncIterator[StreamChunk]:
        enc = encode_request(request, stream=True, layout=layout)
        parser = StreamParser(enc.fingerprints.prefix)
        async for data in self.astream_events(_CHAT_PATH, enc.body):
            chunk = parser.feed(data)
            if chunk is not None:
                yield chunk
        final = parser.finish()
        self._note_usage(final.usage, final.raw_usage)
        yield final
