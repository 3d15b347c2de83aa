"""Google Gemini API (generativelanguage.googleapis.com/v1beta) over httpx, with explicit caches.

Gemini caches two ways. Implicitly (2.5+), like GLM: a repeated prompt prefix is discounted and
reported in ``usageMetadata.cachedContentTokenCount``. Explicitly: a ``cachedContents`` resource
holds the system instruction, tools, tool config and the first turns of a conversation; a generate
call names it in ``cachedContent`` and sends only the turns after it. This module encodes both kinds
of call deterministically, manages the resource (create, get, list, update, delete) and maps Google's
errors, including the two a cache manager must recognise: cache gone and cache too small.

Wire facts honoured here (recorded 2025-2026): ``promptTokenCount`` includes the cached tokens;
every SSE chunk carries ``usageMetadata`` but only the last one is complete (it is taken as a whole),
and on Vertex only the intermediate chunks may carry ``cachedContentTokenCount`` (the one field kept
from an earlier chunk); there is no ``[DONE]``; a request with ``cachedContent`` must not carry
``systemInstruction``, ``tools`` or ``toolConfig`` (400, even when identical to the cached ones); a
missing or expired cache is 403 PERMISSION_DENIED (Vertex: 404 NOT_FOUND); an empty cache list is
``{}``; function calls come without ids, and Gemini 3 rejects a replayed function call that lost
its ``thoughtSignature``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote

from pydantic import SecretStr

from .._memo import Memo, MessageFacts, chain_of, facts_of, register
from ..errors import (
    AuthenticationError,
    BadRequestError,
    CachedContentNotFoundError,
    CachedContentNotSupportedError,
    CachedContentTooSmallError,
    FileNotActiveError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ServerError,
    UploadedFileNotFoundError,
)
from ..gemini_models import explicit_caching_supported, min_cache_tokens
from ..layout import PrefixFingerprints, apply_layout, canonical_json, stable_prefix_length
from ..messages import (
    ROLES,
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
)
from ..usage import InvalidUsage, Usage, strict_count
from ..validation import GEMINI_LIMITS, validate_request
from ._body import as_object, decode_event, get_list, get_object, get_str, malformed
from ._endpoints import GEMINI_BASE_URL
from ._gemini_head import _MODEL_PREFIX, _TOOL_CHOICE_MODES, _Head, head_of
from ._http import STATUS_ERRORS, EncodedRequest, HTTPProvider
from .gemini_files import GeminiFiles
from .gemini_media import check_media_support, media_to_wire

__all__ = [
    "GEMINI_BASE_URL",
    "CachedContent",
    "EncodedRequest",
    "GeminiProvider",
    "StreamParser",
    "cache_key",
    "cache_payload",
    "cached_content_name",
    "encode_cache_create",
    "encode_generate",
    "format_ttl",
    "gemini_options",
    "parse_cached_content",
    "parse_response",
    "parse_timestamp",
    "synthesize_call_id",
    "usage_from_gemini",
]

PROVIDER = "google"
_CACHES_PATH = "cachedContents"
_CACHE_PREFIX = "cachedContents/"
_MAX_STOP_SEQUENCES = 5
# Body fields this module sets from the typed request (or, for a cached call, leaves out on purpose).
_RESERVED_FIELDS = frozenset(("contents", "systemInstruction", "tools", "toolConfig", "cachedContent"))
# Google's JSON parser also accepts the proto field names; a snake_case copy would silently collide.
_SNAKE_FIELDS = {
    "system_instruction": "systemInstruction",
    "tool_config": "toolConfig",
    "cached_content": "cachedContent",
    "generation_config": "generationConfig",
}
_MEDIA_PLURAL = {"image": "images", "document": "documents", "audio": "audio", "video": "videos"}
_CACHE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")
_TOO_SMALL = re.compile(r"total_token_count=(\d+).*?min_total_token_count=(\d+)")
# Files API errors (verbatim Gemini messages): a gone file (expired after 48 h, deleted, or another
# project's) and a file used before processing finished.
_FILE_GONE = re.compile(r"^You do not have permission to access the File ([a-z0-9-]+) or it may not exist")
_FILE_NOT_ACTIVE = re.compile(r"^The File ([a-z0-9-]+) is not in an ACTIVE state")
# A model without explicit caching: Gemini's wording for a method a model does not support, as seen in
# the field ("models/<m> is not found for API version v1beta, or is not supported for createCachedContent.")
_CACHING_NOT_SUPPORTED = re.compile(r"not supported for createCachedContent", re.IGNORECASE)
_MODEL_IN_MESSAGE = re.compile(r"models/([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])")
# A quota whose limit is 0 (free tier has no cache storage) will not recover by waiting.
_ZERO_QUOTA = re.compile(r"\blimit: 0\b")


# ------------------------------------------------------------------------------------------ usage


def gemini_options(*, thinking_budget: int | None = None) -> dict[str, Any]:
    """Body fields for Gemini's thinking budget (2.5+; 0 turns thinking off on Flash)."""
    if thinking_budget is None:
        return {}
    return {"generationConfig": {"thinkingConfig": {"thinkingBudget": thinking_budget}}}


def usage_from_gemini(raw: Any) -> Usage | None:
    """Map ``usageMetadata`` to `Usage`, or None when it is missing or invalid (usage unknown).

    ``promptTokenCount`` already includes ``cachedContentTokenCount``; tool-use prompt tokens are
    input too; thoughts are billed as output. Gemini omits zero fields, so a missing count is 0,
    except ``promptTokenCount``: without it the usage is unknown. A negative or non-numeric count
    makes the whole usage unknown, never zeros.
    """
    if not isinstance(raw, Mapping):
        return None
    try:
        thoughts = strict_count(raw, "thoughtsTokenCount")
        return Usage(
            input_tokens=strict_count(raw, "promptTokenCount", required=True)
            + strict_count(raw, "toolUsePromptTokenCount"),
            cache_read_tokens=strict_count(raw, "cachedContentTokenCount"),
            output_tokens=strict_count(raw, "candidatesTokenCount") + thoughts,
            reasoning_tokens=thoughts,
        )
    except InvalidUsage:
        return None


# --------------------------------------------------------------------------------------- encoding


def _model_id(model: str) -> str:
    """The bare model id: callers may pass ``models/gemini-2.5-flash`` as the SDKs print it."""
    model = model[len(_MODEL_PREFIX) :] if model.startswith(_MODEL_PREFIX) else model
    if not model:
        raise InvalidRequestError("model: a model name is required")
    return model


def cached_content_name(name: str) -> str:
    """``cachedContents/<id>`` from either that or the bare id, rejecting anything path-like."""
    cache_id = name[len(_CACHE_PREFIX) :] if name.startswith(_CACHE_PREFIX) else name
    if not _CACHE_ID.match(cache_id):
        raise InvalidRequestError(f"cached_content: expected 'cachedContents/<id>' or a bare id, got {name!r}")
    return _CACHE_PREFIX + cache_id


def format_ttl(ttl_seconds: float) -> str:
    """A protobuf Duration string: ``3600`` -> ``"3600s"``, ``2.5`` -> ``"2.5s"`` (up to 9 decimals)."""
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)):
        raise InvalidRequestError(f"ttl_seconds: expected a number of seconds, got {ttl_seconds!r}")
    if not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise InvalidRequestError(f"ttl_seconds: must be a positive finite number of seconds, got {ttl_seconds!r}")
    text = f"{ttl_seconds:.9f}".rstrip("0").rstrip(".")
    if text == "0":
        raise InvalidRequestError(f"ttl_seconds: {ttl_seconds!r} rounds to 0 at nanosecond precision")
    return text + "s"


def _format_time(value: datetime, what: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequestError(f"{what}: a timezone-aware datetime is required, got the naive {value!r}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parts(message: Message, index: int) -> list[dict[str, Any]]:
    """Text and media parts of a message; empty text is dropped (Gemini rejects empty text parts)."""
    content = message.content
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, (tuple, list)):
        raise InvalidRequestError(
            f"messages[{index}].content: expected a string or a tuple of parts, got {type(content).__name__}"
        )
    out: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            if part.text:
                out.append({"text": part.text})
        elif isinstance(part, (ImagePart, MediaPart)):
            if message.role != "user":
                kind = "images" if isinstance(part, ImagePart) else _MEDIA_PLURAL[part.kind]
                raise InvalidRequestError(
                    f"messages[{index}]: Gemini accepts {kind} only in user messages, not in a {message.role!r} message"
                )
            out.append(media_to_wire(part, f"messages[{index}].content[{j}]"))
        else:
            raise InvalidRequestError(f"messages[{index}].content[{j}]: unsupported content part {type(part).__name__}")
    return out


def _function_call(call: ToolCall, index: int) -> dict[str, Any]:
    if not call.name:
        raise InvalidRequestError(f"messages[{index}].tool_calls: a tool call needs a name (id {call.id!r})")
    part: dict[str, Any] = {"functionCall": {"name": call.name, "args": dict(call.arguments)}}
    if call.signature:
        part["thoughtSignature"] = call.signature  # Gemini 3 rejects a replayed call without it
    return part


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _function_response_payload(text: str) -> Any:
    """A tool result as Gemini's ``response`` object: the result itself if it is a JSON object."""
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"result": text}


@dataclass(slots=True)
class _Content:
    """One wire ``Content``; `last` is the ordinal (system messages not counted) of its last message."""

    wire: dict[str, Any]
    last: int
    first_index: int
    last_index: int
    tool_turn: bool = False
    segment: bytes | None = None
    """Its canonical JSON, when it is one message's content remembered in that message's facts."""

    @property
    def where(self) -> str:
        if self.first_index == self.last_index:
            return f"messages[{self.first_index}]"
        return f"messages[{self.first_index}..{self.last_index}]"


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A validated request split into what may be cached (head, contents) and what may not."""

    request: ChatRequest
    model: str
    head: dict[str, Any]
    contents: tuple[_Content, ...]
    segments: tuple[bytes, ...]
    conversation: int
    stable: int
    encoded_head: _Head


def _validate(request: ChatRequest) -> None:
    if not request.messages:
        raise InvalidRequestError("messages: at least one message is required, got an empty list")
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            raise InvalidRequestError(f"messages[{i}].role: unknown role {message.role!r}")
    if len(request.stop) > _MAX_STOP_SEQUENCES:
        raise InvalidRequestError(
            f"stop: Gemini accepts at most {_MAX_STOP_SEQUENCES} stop sequences, got {len(request.stop)}"
        )
    if request.tool_choice is not None and not request.tools:
        raise InvalidRequestError("tool_choice: given without any tools")
    if isinstance(request.tool_choice, ForcedTool):
        if request.tool_choice.name not in {t.name for t in request.tools}:
            raise InvalidRequestError(
                f"tool_choice: {request.tool_choice.name!r} is not one of the bound tools "
                f"{sorted(t.name for t in request.tools)!r}"
            )
    elif request.tool_choice is not None and request.tool_choice not in _TOOL_CHOICE_MODES:
        raise InvalidRequestError(
            f"tool_choice: expected 'auto', 'none', 'required' or a ForcedTool, got {request.tool_choice!r}"
        )
    for i, tool in enumerate(request.tools):
        if not tool.name:
            raise InvalidRequestError(f"tools[{i}]: a tool needs a name")
    check_media_support(request)


def _encode_contents(messages: Sequence[Message], facts: Sequence[MessageFacts]) -> list[_Content]:
    """Non-system messages as Gemini contents; consecutive tool results share one user content.

    A user or assistant message is its own content: its wire form and canonical JSON are computed once
    and kept in its facts. Tool results depend on the calls before them and on their neighbours: never kept."""
    contents: list[_Content] = []
    call_names: dict[str, str] = {}
    ordinal = -1
    for i, (message, known) in enumerate(zip(messages, facts, strict=True)):
        if message.role == "system":
            continue
        ordinal += 1
        if message.role == "tool":
            if not message.tool_call_id:
                raise InvalidRequestError(f"messages[{i}]: a tool message needs the tool_call_id it answers")
            name = call_names.get(message.tool_call_id)
            if name is None:
                raise InvalidRequestError(
                    f"messages[{i}]: tool_call_id {message.tool_call_id!r} answers no tool call of an earlier "
                    "assistant message, and Gemini needs the function's name"
                )
            text = "".join(p["text"] for p in _parts(message, i))
            part = {"functionResponse": {"name": name, "response": _function_response_payload(text)}}
            last = contents[-1] if contents else None
            if last is not None and last.tool_turn:
                last.wire["parts"].append(part)
                last.last, last.last_index = ordinal, i
            else:
                contents.append(_Content({"role": "user", "parts": [part]}, ordinal, i, i, tool_turn=True))
            continue
        if message.role == "assistant":
            for call in message.tool_calls:
                call_names[call.id] = call.name
        cached = known.gemini
        if cached is None:
            cached = known.gemini = _own_content(message, i)
        wire, segment = cached
        if wire is not None:
            contents.append(_Content(wire, ordinal, i, i, segment=segment))
    return contents


def _own_content(message: Message, i: int) -> tuple[dict[str, Any] | None, bytes | None]:
    """A user or assistant message's content and its canonical JSON; (None, None) for an empty model turn."""
    parts = _parts(message, i)
    if message.role == "assistant":
        # Reasoning is not replayed: Gemini keeps thoughts server-side and only wants the signatures.
        parts.extend(_function_call(call, i) for call in message.tool_calls)
        if not parts:
            return None, None  # an empty model turn (thoughts only, or cut off) carries nothing Gemini accepts
        wire = {"role": "model", "parts": parts}
    else:
        if not parts:
            raise InvalidRequestError(f"messages[{i}]: a user message needs text or media, got empty content")
        wire = {"role": "user", "parts": parts}
    return wire, canonical_json(wire, what=f"messages[{i}]").encode()


def _prepare(request: ChatRequest, layout: bool) -> _Prepared:
    _validate(request)
    messages = request.messages
    facts = facts_of(messages)
    validate_request(request, GEMINI_LIMITS, facts)
    model = _model_id(request.model)
    if layout:
        # Gemini takes system messages out of the conversation anyway, so of the layout only the tool
        # order changes the wire; messages keep their original order so error indices match the input.
        request = apply_layout(request)
    system_texts = []
    for i, (message, known) in enumerate(zip(messages, facts, strict=True)):
        if message.role == "system":
            text = known.gemini
            if text is None:
                text = known.gemini = "".join(p["text"] for p in _parts(message, i))
            if text:
                system_texts.append(text)
    encoded_head = head_of(model, tuple(system_texts), request.tools, request.tool_choice)
    contents = tuple(_encode_contents(messages, facts))
    segments = tuple(
        c.segment if c.segment is not None else canonical_json(c.wire, what=c.where).encode() for c in contents
    )
    stable = sum(1 for m in messages[: stable_prefix_length(messages)] if m.role != "system")
    conversation = sum(1 for m in messages if m.role != "system")
    return _Prepared(request, model, encoded_head.head, contents, segments, conversation, stable, encoded_head)


def _cached_contents(prep: _Prepared, cached_messages: int) -> int:
    """How many wire contents the cache holds: those made only of the first `cached_messages` messages."""
    if isinstance(cached_messages, bool) or not isinstance(cached_messages, int):
        raise InvalidRequestError(f"cached_messages: expected an int, got {cached_messages!r}")
    if not 0 <= cached_messages <= prep.conversation:
        raise InvalidRequestError(
            f"cached_messages: must be between 0 and {prep.conversation} (the non-system messages), "
            f"got {cached_messages}"
        )
    # A boundary inside a group of tool results moves back to the group's start: Gemini rejects a
    # turn whose function responses do not match its calls one for one, so they travel together.
    # Creating and using a cache both round the same way, so they always agree.
    return sum(1 for content in prep.contents if content.last < cached_messages)


def _fingerprints(prep: _Prepared) -> PrefixFingerprints:
    """Fingerprints of the logical request (model, system, tools, then each content).

    They do not depend on whether part of it travels in a cache, so a cached and an uncached call
    of the same conversation report the same prefix. Chain positions count wire contents.
    """
    stable = sum(1 for c in prep.contents if c.last < prep.stable)
    return PrefixFingerprints(tuple(chain_of(prep.encoded_head.header, prep.segments)), stable)


def _response_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise InvalidRequestError("response_format: type 'json_schema' needs json_schema.schema (a JSON schema)")
        return {"responseMimeType": "application/json", "responseJsonSchema": schema}
    raise InvalidRequestError(
        f"response_format: unsupported type {kind!r}; Gemini takes 'text', 'json_object' or 'json_schema'"
    )


def _generation_params(request: ChatRequest) -> dict[str, Any]:
    """``generationConfig`` and the caller's extra fields (nested ``generationConfig`` keys merge)."""
    config: dict[str, Any] = {}
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.stop:
        config["stopSequences"] = list(request.stop)
    if request.response_format is not None:
        config.update(_response_format(request.response_format))
    params: dict[str, Any] = {}
    for key, value in request.extra.items():
        if key in _SNAKE_FIELDS:
            raise InvalidRequestError(f"extra body field {key!r}: use {_SNAKE_FIELDS[key]!r}")
        if key in _RESERVED_FIELDS:
            raise InvalidRequestError(
                f"extra body field {key!r} collides with a field this client sets from the request "
                "(use messages, tools, tool_choice or cached_content instead)"
            )
        if key == "generationConfig":
            if not isinstance(value, Mapping):
                raise InvalidRequestError(f"extra body field 'generationConfig': expected an object, got {value!r}")
            for name, setting in value.items():
                if name in config:
                    raise InvalidRequestError(
                        f"extra generationConfig field {name!r} collides with a field this client sets from the request"
                    )
                config[name] = setting
            continue
        params[key] = value
    if config:
        params["generationConfig"] = config
    return params


def encode_generate(
    request: ChatRequest,
    *,
    stream: bool,
    cached_content: str | None = None,
    cached_messages: int = 0,
    layout: bool = True,
) -> EncodedRequest:
    """Encode a ``generateContent`` / ``streamGenerateContent`` body, deterministically.

    With `cached_content` the body names the cache and carries no ``systemInstruction``, ``tools``
    or ``toolConfig`` (Gemini answers 400 otherwise, even for identical copies) and only the turns
    after the first `cached_messages` non-system messages. `stream` does not change the body (the
    URL selects streaming); it is accepted so every provider's encoder has the same signature.
    """
    del stream
    prep = _prepare(request, layout)
    if cached_content is None:
        if cached_messages:
            raise InvalidRequestError(f"cached_messages={cached_messages} given without cached_content")
        head, skip = prep.head, 0
    else:
        head, skip = {"cachedContent": cached_content_name(cached_content)}, _cached_contents(prep, cached_messages)
    sent = prep.segments[skip:]
    if not sent:
        raise InvalidRequestError(
            "messages: Gemini needs at least one user, assistant or tool message"
            + (" after the cached ones" if cached_content is not None else " besides the system messages")
        )
    fragments = []
    if cached_content is None:
        if head:
            fragments.append(prep.encoded_head.fragment)
    else:
        fragments.append(canonical_json(head)[1:-1].encode())
    fragments.append(b'"contents":[' + b",".join(sent) + b"]")
    tail = canonical_json(_generation_params(prep.request), what="request parameters")
    if len(tail) > 2:
        fragments.append(tail[1:-1].encode())
    body = b"{" + b",".join(fragments) + b"}"
    return EncodedRequest(body, _fingerprints(prep), prep.model)


def cache_payload(request: ChatRequest, *, cached_messages: int, layout: bool = True) -> dict[str, Any]:
    """What a cache of `request`'s first `cached_messages` non-system messages holds.

    Model, ``systemInstruction``, ``tools``, ``toolConfig`` and ``contents``: exactly what decides
    whether an existing cache can serve the request (TTL and display name do not), so a cache
    manager fingerprints this and `encode_cache_create` sends it. Read it, do not change it: its
    contents are shared with later calls.
    """
    prep = _prepare(request, layout)
    return _payload(prep, _cached_contents(prep, cached_messages))


def _payload(prep: _Prepared, count: int) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": _MODEL_PREFIX + prep.model, **prep.head}
    if count:
        payload["contents"] = [c.wire for c in prep.contents[:count]]
    return payload


# The SHA-256 of a cache payload's canonical JSON and a salt, by the fingerprint of the prefix it holds (the chain
# over its head and contents covers exactly the payload) and the salt: an unchanged prefix is never encoded again.
_PAYLOAD_KEYS: Memo[tuple[str, str], str] = Memo("Gemini cache keys", max_entries=16_384, max_weight=16_384)
register(_PAYLOAD_KEYS)


def cache_key(request: ChatRequest, *, cached_messages: int, layout: bool = True, salt: str = "") -> str:
    """``sha256(canonical_json(cache_payload(request, ...)) + salt)`` as hex, computed once per distinct prefix
    (and salt): later calls hash only the contents they add, through the request's fingerprint chain."""
    prep = _prepare(request, layout)
    count = _cached_contents(prep, cached_messages)
    chain = chain_of(prep.encoded_head.header, prep.segments)
    memo_key = (chain[count], salt)
    found = _PAYLOAD_KEYS.get(memo_key)
    if found is None:
        digest = hashlib.sha256(canonical_json(_payload(prep, count), what="cache payload").encode())
        digest.update(salt.encode())
        found = digest.hexdigest()
        _PAYLOAD_KEYS.put(memo_key, found)
    return found


def encode_cache_create(
    request: ChatRequest,
    *,
    cached_messages: int,
    ttl_seconds: float | None = None,
    display_name: str | None = None,
    layout: bool = True,
) -> bytes:
    """The ``POST cachedContents`` body: `cache_payload` plus ``ttl`` and ``displayName``."""
    body = cache_payload(request, cached_messages=cached_messages, layout=layout)
    if display_name is not None:
        body["displayName"] = display_name
    if ttl_seconds is not None:
        body["ttl"] = format_ttl(ttl_seconds)
    return canonical_json(body, what="cachedContent").encode()


def _count_tokens_body(enc: EncodedRequest) -> bytes:
    model = canonical_json(_MODEL_PREFIX + enc.model).encode()
    return b'{"generateContentRequest":{"model":' + model + b"," + enc.body[1:] + b"}"


# ---------------------------------------------------------------------------------------- parsing


def synthesize_call_id(response_id: str | None, index: int, name: str) -> str:
    """A deterministic id for the `index`-th function call of a response (Gemini sends none).

    Invoke and stream of the same response give the same ids; the name is hashed in, so equal ids
    always mean equal function names when a tool result is matched back to its call.
    """
    digest = hashlib.sha256(f"{response_id or ''}:{index}:{name}".encode()).hexdigest()
    return "call_" + digest[:24]


def _tool_call(call: Mapping[str, Any], signature: Any, response_id: str | None, index: int) -> ToolCall:
    name = str(call.get("name") or "")
    call_id = synthesize_call_id(response_id, index, name)
    signature = signature if isinstance(signature, str) else None
    args = call.get("args")
    if args is None or isinstance(args, dict):
        return ToolCall(call_id, name, args or {}, signature=signature)
    return ToolCall(call_id, name, {}, json.dumps(args), "args is not a JSON object", signature)


def _blocked(data: Mapping[str, Any]) -> ProviderError:
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
    if reason and isinstance(feedback, Mapping):
        detail = feedback.get("blockReasonMessage")
        message = f"Gemini blocked the prompt (blockReason {reason})" + (f": {detail}" if detail else "")
        return BadRequestError(message, status_code=200, code=str(reason), provider=PROVIDER, body=data)
    return malformed(PROVIDER, "the response has no candidates", data)


@dataclass(slots=True)
class _Parts:
    """What one candidate's parts say: answer text, thoughts and function calls, in order."""

    text: list[str]
    reasoning: list[str]
    calls: list[ToolCall]


def _candidate(data: Mapping[str, Any], response_id: str | None, calls_before: int) -> tuple[Any, _Parts] | None:
    """The first candidate's finishReason and parts (None when there is no candidate), shape-checked."""
    candidates = get_list(data, "candidates", "", PROVIDER, data)
    if not candidates:
        return None
    candidate = as_object(candidates[0], "candidates[0]", PROVIDER, data)
    content = get_object(candidate, "content", "candidates[0]", PROVIDER, data)
    out = _Parts([], [], [])
    for i, raw in enumerate(get_list(content, "parts", "candidates[0].content", PROVIDER, data)):
        where = f"candidates[0].content.parts[{i}]"
        part = as_object(raw, where, PROVIDER, data)
        if "functionCall" in part:
            call = get_object(part, "functionCall", where, PROVIDER, data)
            get_str(call, "name", f"{where}.functionCall", PROVIDER, data)
            out.calls.append(_tool_call(call, part.get("thoughtSignature"), response_id, calls_before + len(out.calls)))
        elif "text" in part:
            text = get_str(part, "text", where, PROVIDER, data) or ""
            (out.reasoning if part.get("thought") else out.text).append(text)
    return get_str(candidate, "finishReason", "candidates[0]", PROVIDER, data), out


def parse_response(data: Mapping[str, Any], fingerprint: str | None = None, *, model: str = "") -> ChatResponse:
    """A ``generateContent`` response to `ChatResponse`; `model` is used when ``modelVersion`` is absent.

    Parts marked ``thought`` become `Message.reasoning`; function calls get synthesized ids and keep
    their ``thoughtSignature``. A body of the wrong shape raises `MalformedResponseError`; usage that
    is missing or invalid is unknown (``usage=None``).
    """
    data = as_object(data, "the response", PROVIDER, data)
    response_id = get_str(data, "responseId", "", PROVIDER, data)
    found = _candidate(data, response_id, 0)
    if found is None:
        raise _blocked(data)
    finish_reason, parts = found
    message = Message(
        role="assistant",
        content="".join(parts.text),
        tool_calls=tuple(parts.calls),
        reasoning="".join(parts.reasoning) or None,
    )
    usage = data.get("usageMetadata")
    return ChatResponse(
        message=message,
        finish_reason=finish_reason,
        usage=usage_from_gemini(usage),
        model=str(data.get("modelVersion") or model),
        id=response_id,
        prefix_fingerprint=fingerprint,
        raw_usage=usage if isinstance(usage, Mapping) else None,
    )


class StreamParser:
    """Turns ``streamGenerateContent?alt=sse`` payloads into `StreamChunk`s; `finish()` yields the final one.

    Every chunk carries ``usageMetadata`` but the values before the last chunk are provisional, so
    the last chunk that carries usage is authoritative, as a whole: a count it omits is 0, not a
    stale value from an earlier chunk (a stale ``candidatesTokenCount`` once reported 186 tokens
    against Google's 165). Usage is reported only on the final chunk. Function calls arrive whole
    and are emitted whole (``index=None``). An event that is not a JSON object of the documented
    shape raises `MalformedResponseError`.
    """

    __slots__ = ("_cached", "_calls", "_fingerprint", "_finish_reason", "_id", "_model", "_usage")

    def __init__(self, fingerprint: str | None = None, *, model: str = "") -> None:
        self._fingerprint = fingerprint
        self._model = model
        self._finish_reason: str | None = None
        self._id: str | None = None
        self._usage: Any = None
        self._cached: Any = None
        self._calls = 0

    def feed(self, data: str) -> StreamChunk | None:
        event = decode_event(data, PROVIDER)
        if "error" in event:  # an error delivered inside the stream
            err = event["error"]
            status = err.get("code") if isinstance(err, Mapping) else None
            raise _error_from_body(status if isinstance(status, int) and 400 <= status < 600 else 200, event)
        self._model = str(event.get("modelVersion") or self._model)
        self._id = get_str(event, "responseId", "", PROVIDER, event) or self._id
        usage = event.get("usageMetadata")
        if usage is not None:
            self._usage = usage
            if isinstance(usage, Mapping) and usage.get("cachedContentTokenCount") is not None:
                self._cached = usage["cachedContentTokenCount"]
        found = _candidate(event, self._id, self._calls)
        if found is None:
            feedback = event.get("promptFeedback")
            if isinstance(feedback, Mapping) and feedback.get("blockReason"):
                raise _blocked(event)
            return None
        finish_reason, parts = found
        if finish_reason:
            self._finish_reason = finish_reason
        self._calls += len(parts.calls)
        tool_chunks = tuple(
            ToolCallChunk(
                index=None,
                id=call.id,
                name=call.name,
                arguments=call.raw_arguments if call.error else canonical_json(dict(call.arguments)),
                signature=call.signature,
            )
            for call in parts.calls
        )
        if not (parts.text or parts.reasoning or tool_chunks):
            return None
        return StreamChunk(text="".join(parts.text), reasoning="".join(parts.reasoning), tool_call_chunks=tool_chunks)

    def _final_usage(self) -> Any:
        usage = self._usage
        if isinstance(usage, Mapping) and usage.get("cachedContentTokenCount") is None and self._cached is not None:
            # The one field kept from an earlier chunk: on Vertex AI the intermediate chunks carry only
            # {cachedContentTokenCount, trafficType} and the final one may omit the cached count
            # (langchain-ai/langchainjs PR #9912, "Vertex intermediate chunks").
            return {**usage, "cachedContentTokenCount": self._cached}
        return usage

    def finish(self) -> StreamChunk:
        if self._finish_reason is None:
            # Gemini sends no terminator: a stream that stops without a finishReason was cut off.
            raise ProviderConnectionError(
                "google: the stream ended before the answer finished (no finishReason)", provider=PROVIDER
            )
        usage = self._final_usage()
        return StreamChunk(
            final=True,
            finish_reason=self._finish_reason,
            usage=usage_from_gemini(usage),
            model=self._model or None,
            id=self._id,
            prefix_fingerprint=self._fingerprint,
            raw_usage=dict(usage) if isinstance(usage, Mapping) else None,
        )


# ---------------------------------------------------------------------------------- cache resource


def parse_timestamp(value: str) -> datetime:
    """RFC 3339 to an aware `datetime`; Google prints up to 9 fractional digits, Python keeps 6."""
    match = _TIMESTAMP.match(value)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    date, clock, fraction, zone = match.groups()
    offset = "+00:00" if zone.upper() == "Z" else zone
    return datetime.fromisoformat(f"{date}T{clock}.{(fraction or '')[:6].ljust(6, '0')}{offset}")


@dataclass(frozen=True, slots=True)
class CachedContent:
    """A ``cachedContents`` resource as Gemini reports it (it never echoes what the cache holds)."""

    name: str
    model: str
    display_name: str
    create_time: datetime
    update_time: datetime
    expire_time: datetime
    total_token_count: int


def parse_cached_content(data: Any) -> CachedContent:
    """A create/get/list/patch answer to `CachedContent` (``model`` without ``models/``); a body of
    another shape raises `MalformedResponseError`."""
    try:
        model = str(data.get("model") or "")
        return CachedContent(
            name=str(data["name"]),
            model=model[len(_MODEL_PREFIX) :] if model.startswith(_MODEL_PREFIX) else model,
            display_name=str(data.get("displayName") or ""),
            create_time=parse_timestamp(data["createTime"]),
            update_time=parse_timestamp(data.get("updateTime") or data["createTime"]),
            expire_time=parse_timestamp(data["expireTime"]),
            total_token_count=strict_count(get_object(data, "usageMetadata", "", PROVIDER, data), "totalTokenCount"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problem = f"malformed cachedContent resource ({type(exc).__name__}: {exc})"
    raise malformed(PROVIDER, problem, data)


def _update_request(ttl_seconds: float | None, expire_time: datetime | None) -> tuple[bytes, dict[str, str]]:
    if (ttl_seconds is None) == (expire_time is None):
        raise InvalidRequestError("update_cached_content: give exactly one of ttl_seconds and expire_time")
    if ttl_seconds is not None:
        return canonical_json({"ttl": format_ttl(ttl_seconds)}).encode(), {"updateMask": "ttl"}
    assert expire_time is not None
    body = {"expireTime": _format_time(expire_time, "expire_time")}
    return canonical_json(body).encode(), {"updateMask": "expireTime"}


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise InvalidRequestError(f"page_size: expected a positive int, got {page_size!r}")


# ----------------------------------------------------------------------------------------- errors


def _has_reason(err: Mapping[str, Any], reason: str) -> bool:
    details = err.get("details")
    return isinstance(details, list) and any(isinstance(d, Mapping) and d.get("reason") == reason for d in details)


def _error_from_body(status: int, body: Any) -> ProviderError:
    """Google's ``{"error": {"code", "message", "status"}}`` to a typed error; `code` is the status enum."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        err = {}
    message = str(err.get("message") or f"HTTP {status}")
    code = str(err["status"]) if err.get("status") else None
    if status == 400 and message.startswith("Cached content is too small"):
        match = _TOO_SMALL.search(message)
        return CachedContentTooSmallError(
            message,
            total_token_count=int(match.group(1)) if match else None,
            min_total_token_count=int(match.group(2)) if match else None,
            status_code=status,
            code=code,
            provider=PROVIDER,
            body=body,
        )
    if status in (400, 404) and _CACHING_NOT_SUPPORTED.search(message):
        named = _MODEL_IN_MESSAGE.search(message)
        return CachedContentNotSupportedError(
            message,
            model=named.group(1) if named else None,
            status_code=status,
            code=code,
            provider=PROVIDER,
            body=body,
        )
    cls: type[ProviderError]
    if status == 400 and _has_reason(err, "API_KEY_INVALID"):
        cls = AuthenticationError  # Google answers a bad key with 400, not 401
    elif status == 403 and message.startswith("CachedContent not found"):
        cls = CachedContentNotFoundError
    elif (file_match := _FILE_GONE.match(message) if status == 403 else _FILE_NOT_ACTIVE.match(message)) is not None:
        file_cls = UploadedFileNotFoundError if status == 403 else FileNotActiveError
        return file_cls(
            message,
            file_name=f"files/{file_match.group(1)}",
            status_code=status,
            code=code,
            provider=PROVIDER,
            body=body,
        )
    elif status == 404 and code == "NOT_FOUND" and re.search(r"cached ?content", message, re.IGNORECASE):
        cls = CachedContentNotFoundError  # Vertex AI's wording of the same condition
    elif status >= 500:
        cls = ServerError
    else:
        cls = STATUS_ERRORS.get(status, ProviderError)
    return cls(message, status_code=status, code=code, provider=PROVIDER, body=body)


# --------------------------------------------------------------------------------------- provider


def _total_tokens(data: Mapping[str, Any]) -> int:
    try:
        return strict_count(data, "totalTokens")
    except InvalidUsage as exc:
        problem = f"countTokens: {exc}"
    raise malformed(PROVIDER, problem, data)


def _model_path(model: str, action: str) -> str:
    return f"models/{quote(model, safe='')}:{action}"


class GeminiProvider(HTTPProvider):
    """Sync and async Gemini generate, stream, countTokens and ``cachedContents`` calls.

    The API key travels in the ``x-goog-api-key`` header, never in the ``?key=`` query parameter,
    so it cannot end up in URLs, logs or error messages.
    """

    provider = PROVIDER

    def __init__(self, *, api_key: SecretStr, base_url: str = GEMINI_BASE_URL, **kwargs: Any) -> None:
        super().__init__(api_key=api_key, base_url=base_url, **kwargs)
        self._files: GeminiFiles | None = None
        self._files_lock = threading.Lock()

    @property
    def files(self) -> GeminiFiles:
        """The Files API over this provider's clients and key (upload, get, list, delete, wait_active)."""
        if self._files is None:
            with self._files_lock:
                if self._files is None:
                    self._files = GeminiFiles(self)
        return self._files

    @property
    def price_provider(self) -> str:
        """The genai-prices provider id."""
        return PROVIDER

    def auth_headers(self, api_key: SecretStr) -> dict[str, str]:
        return {"x-goog-api-key": api_key.get_secret_value()}

    def error_from_body(self, status: int, body: Any) -> ProviderError:
        if isinstance(body, list) and body and isinstance(body[0], Mapping):
            body = body[0]  # the non-SSE stream endpoint wraps errors in a JSON array
        return _error_from_body(status, body)

    def supports_explicit_cache(self, model: str) -> bool:
        """Whether `model` takes ``cachedContents`` caches (`cache_integrations.gemini_models`)."""
        return explicit_caching_supported(model)

    def min_cache_tokens(self, model: str) -> int | None:
        """The smallest cache Google documents for `model`, a prior until Gemini's own answer teaches it."""
        return min_cache_tokens(model)

    def is_retryable(self, error: ProviderError) -> bool:
        if isinstance(error, (CachedContentNotFoundError, CachedContentTooSmallError, CachedContentNotSupportedError)):
            return False
        if error.status_code == 429 and _ZERO_QUOTA.search(error.message):
            return False  # e.g. the free tier's cache storage quota: waiting will not help
        return super().is_retryable(error)

    # -- generate ------------------------------------------------------------------------------

    def chat(
        self,
        request: ChatRequest,
        *,
        layout: bool = True,
        cached_content: str | None = None,
        cached_messages: int = 0,
    ) -> ChatResponse:
        enc = encode_generate(
            request, stream=False, cached_content=cached_content, cached_messages=cached_messages, layout=layout
        )
        data = self.request("POST", _model_path(enc.model, "generateContent"), enc.body)
        response = parse_response(data, enc.fingerprints.prefix, model=enc.model)
        self._note_usage(response.usage, response.raw_usage)
        return response

    async def achat(
        self,
        request: ChatRequest,
        *,
        layout: bool = True,
        cached_content: str | None = None,
        cached_messages: int = 0,
    ) -> ChatResponse:
        enc = encode_generate(
            request, stream=False, cached_content=cached_content, cached_messages=cached_messages, layout=layout
        )
        data = await self.arequest("POST", _model_path(enc.model, "generateContent"), enc.body)
        response = parse_response(data, enc.fingerprints.prefix, model=enc.model)
        self._note_usage(response.usage, response.raw_usage)
        return response

    def stream(
        self,
        request: ChatRequest,
        *,
        layout: bool = True,
        cached_content: str | None = None,
        cached_messages: int = 0,
    ) -> Iterator[StreamChunk]:
        enc = encode_generate(
            request, stream=True, cached_content=cached_content, cached_messages=cached_messages, layout=layout
        )
        parser = StreamParser(enc.fingerprints.prefix, model=enc.model)
        path = _model_path(enc.model, "streamGenerateContent")
        for data in self.stream_events(path, enc.body, params={"alt": "sse"}):
            chunk = parser.feed(data)
            if chunk is not None:
                yield chunk
        final = parser.finish()
        self._note_usage(final.usage, final.raw_usage)
        yield final

    async def astream(
        self,
        request: ChatRequest,
        *,
        layout: bool = True,
        cached_content: str | None = None,
        cached_messages: int = 0,
    ) -> AsyncIterator[StreamChunk]:
        enc = encode_generate(
            request, stream=True, cached_content=cached_content, cached_messages=cached_messages, layout=layout
        )
        parser = StreamParser(enc.fingerprints.prefix, model=enc.model)
        path = _model_path(enc.model, "streamGenerateContent")
        async for data in self.astream_events(path, enc.body, params={"alt": "sse"}):
            chunk = parser.feed(data)
            if chunk is not None:
                yield chunk
        final = parser.finish()
        self._note_usage(final.usage, final.raw_usage)
        yield final

    def count_tokens(self, request: ChatRequest, *, layout: bool = True) -> int:
        """Prompt tokens of `request` as Gemini counts them (system instruction and tools included)."""
        enc = encode_generate(request, stream=False, layout=layout)
        data = self.request("POST", _model_path(enc.model, "countTokens"), _count_tokens_body(enc))
        return _total_tokens(data)

    async def acount_tokens(self, request: ChatRequest, *, layout: bool = True) -> int:
        enc = encode_generate(request, stream=False, layout=layout)
        data = await self.arequest("POST", _model_path(enc.model, "countTokens"), _count_tokens_body(enc))
        return _total_tokens(data)

    # -- cachedContents ------------------------------------------------------------------------

    def cache_payload(self, request: ChatRequest, *, cached_messages: int, layout: bool = True) -> dict[str, Any]:
        """The module's `cache_payload`, so a cache manager can key caches through the client it holds."""
        return cache_payload(request, cached_messages=cached_messages, layout=layout)

    def cache_key(self, request: ChatRequest, *, cached_messages: int, layout: bool = True, salt: str = "") -> str:
        """The module's `cache_key`: the digest of `cache_payload` and `salt`, computed once per distinct prefix."""
        return cache_key(request, cached_messages=cached_messages, layout=layout, salt=salt)

    def create_cached_content(
        self,
        request: ChatRequest,
        *,
        cached_messages: int,
        ttl_seconds: float | None = None,
        display_name: str | None = None,
        layout: bool = True,
    ) -> CachedContent:
        """Cache `request`'s system instruction, tools, tool config and first `cached_messages` turns."""
        body = encode_cache_create(
            request, cached_messages=cached_messages, ttl_seconds=ttl_seconds, display_name=display_name, layout=layout
        )
        return parse_cached_content(self.request("POST", _CACHES_PATH, body, idempotent=False))

    async def acreate_cached_content(
        self,
        request: ChatRequest,
        *,
        cached_messages: int,
        ttl_seconds: float | None = None,
        display_name: str | None = None,
        layout: bool = True,
    ) -> CachedContent:
        body = encode_cache_create(
            request, cached_messages=cached_messages, ttl_seconds=ttl_seconds, display_name=display_name, layout=layout
        )
        return parse_cached_content(await self.arequest("POST", _CACHES_PATH, body, idempotent=False))

    def get_cached_content(self, name: str) -> CachedContent:
        return parse_cached_content(self.request("GET", cached_content_name(name)))

    async def aget_cached_content(self, name: str) -> CachedContent:
        return parse_cached_content(await self.arequest("GET", cached_content_name(name)))

    def list_cached_contents(self, page_size: int = 100) -> Iterator[CachedContent]:
        """Every live cache of this API key, following ``nextPageToken`` (an empty list is ``{}``)."""
        _check_page_size(page_size)
        return self._list(page_size)

    def _list(self, page_size: int) -> Iterator[CachedContent]:
        params = {"pageSize": str(page_size)}
        while True:
            data = self.request("GET", _CACHES_PATH, params=params)
            for item in get_list(data, "cachedContents", "", PROVIDER, data):
                yield parse_cached_content(item)
            token = data.get("nextPageToken")
            if not token:
                return
            params = {"pageSize": str(page_size), "pageToken": str(token)}

    def alist_cached_contents(self, page_size: int = 100) -> AsyncIterator[CachedContent]:
        _check_page_size(page_size)
        return self._alist(page_size)

    async def _alist(self, page_size: int) -> AsyncIterator[CachedContent]:
        params = {"pageSize": str(page_size)}
        while True:
            data = await self.arequest("GET", _CACHES_PATH, params=params)
            for item in get_list(data, "cachedContents", "", PROVIDER, data):
                yield parse_cached_content(item)
            token = data.get("nextPageToken")
            if not token:
                return
            params = {"pageSize": str(page_size), "pageToken": str(token)}

    def update_cached_content(
        self, name: str, *, ttl_seconds: float | None = None, expire_time: datetime | None = None
    ) -> CachedContent:
        """Move a live cache's expiry (the only thing a cache lets you change); give exactly one of the two."""
        path = cached_content_name(name)
        body, params = _update_request(ttl_seconds, expire_time)
        return parse_cached_content(self.request("PATCH", path, body, params=params))

    async def aupdate_cached_content(
        self, name: str, *, ttl_seconds: float | None = None, expire_time: datetime | None = None
    ) -> CachedContent:
        path = cached_content_name(name)
        body, params = _update_request(ttl_seconds, expire_time)
        return parse_cached_content(await self.arequest("PATCH", path, body, params=params))

    def delete_cached_content(self, name: str) -> None:
        self.request("DELETE", cached_content_name(name))

    async def adelete_cached_content(self, name: str) -> None:
        await self.arequest("DELETE", cached_content_name(name))
