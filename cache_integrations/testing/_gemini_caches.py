"""Gemini ``cachedContents``: the server-side resource and its create / list / get / patch / delete."""

from __future__ import annotations

import base64
import calendar
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._context import RequestContext, key_fingerprint
from ._google import (
    JSON_TYPE,
    Reject,
    authenticate,
    get_field,
    google_error,
    invalid,
    not_found,
    parse_json,
    strip_models,
    validate_contents,
)
from ._http import EmulatorResponse, json_response
from ._render import render_gemini_contents, render_gemini_prefix
from ._strict import unknown_gemini_model

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .emulator import Emulator

_TTL_RE = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")
_TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$")
NAME_RE = re.compile(r"^cachedContents/([a-z0-9][a-z0-9-]*)$")
_NS = 1_000_000_000


# Gemini's answer for a method a model does not offer (its generateContent wording, seen in the field for
# createCachedContent too: "models/gemini-flash is not supported for createCachedContent"); the emulator
# gives it for explicit caches on Gemini 4 Argon and later, which Google's caching page excludes.
NO_CACHE_METHOD = (
    "{model} is not found for API version v1beta, or is not supported for createCachedContent. "
    "Call ListModels to see the list of available models and their supported methods."
)


def format_time(ns: int) -> str:
    """RFC 3339 UTC with 0/3/6/9 fractional digits, as Google's JSON mapping prints timestamps."""
    secs, frac = divmod(ns, _NS)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac == 0:
        return base + "Z"
    if frac % 1_000_000 == 0:
        return f"{base}.{frac // 1_000_000:03d}Z"
    if frac % 1_000 == 0:
        return f"{base}.{frac // 1_000:06d}Z"
    return f"{base}.{frac:09d}Z"


def parse_time(value: str) -> int | None:
    """RFC 3339 timestamp to Unix nanoseconds (``None`` if malformed)."""
    m = _TIME_RE.match(value)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return secs * _NS + int((frac or "0").ljust(9, "0"))


def parse_ttl(value: Any) -> int | None:
    """Protobuf Duration (``"300s"``, ``"3.5s"``) to nanoseconds (``None`` if malformed)."""
    if not isinstance(value, str):
        return None
    m = _TTL_RE.match(value)
    if not m:
        return None
    return int(m.group(1)) * _NS + int((m.group(2) or "0").ljust(9, "0"))


@dataclass
class CachedContent:
    """Server-side state of one explicit cache; the API never echoes the content back."""

    cache_id: str
    model: str  # "models/..."
    display_name: str
    system_instruction: Any
    tools: Any
    tool_config: Any
    contents: list[Any]
    tokens: int
    create_ns: int
    update_ns: int
    expire_ns: int
    owner: str = ""
    order: int = 0
    segments: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"cachedContents/{self.cache_id}"

    def resource(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "createTime": format_time(self.create_ns),
            "updateTime": format_time(self.update_ns),
            "expireTime": format_time(self.expire_ns),
            "displayName": self.display_name,
            "usageMetadata": {"totalTokenCount": self.tokens},
        }


def _expiry_from(body: Mapping[str, Any], now_ns: int, where: str) -> int | None:
    ttl = body.get("ttl")
    expire = get_field(body, "expireTime", "expire_time")
    if ttl is not None and expire is not None:
        raise Reject(
            invalid(
                f"Invalid value at '{where}' (oneof), oneof field 'expiration' is already set. Cannot set 'expireTime'"
            )
        )
    if ttl is not None:
        ttl_ns = parse_ttl(ttl)
        if ttl_ns is None:
            raise Reject(
                invalid(
                    f"Invalid value at '{where}.ttl' (type.googleapis.com/google.protobuf.Duration), "
                    "Field 'ttl', Illegal duration format; duration must end with 's'"
                )
            )
        if ttl_ns <= 0:
            raise Reject(invalid("ttl must be positive."))
        return now_ns + ttl_ns
    if expire is not None:
        expire_ns = parse_time(expire) if isinstance(expire, str) else None
        if expire_ns is None:
            raise Reject(
                invalid(
                    f"Invalid value at '{where}.expire_time' (type.googleapis.com/google.protobuf."
                    f"Timestamp), Field 'expireTime', Invalid time format: {expire!r}"
                )
            )
        if expire_ns <= now_ns:
            raise Reject(invalid("expire_time must be in the future."))
        return expire_ns
    return None


def handle_cache_create(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    key = authenticate(emu, ctx)
    if isinstance(key, EmulatorResponse):
        return key
    now_ns = int(ctx.now * _NS) // 1000 * 1000
    try:
        body = parse_json(ctx)
        model = body.get("model")
        if not isinstance(model, str) or not strip_models(model):
            raise Reject(invalid("* CreateCachedContentRequest.cached_content.model: model is required.\n"))
        model = "models/" + strip_models(model)
        ctx.model = strip_models(model)
        if not emu.is_known_model("gemini", ctx.model):
            # Same NOT_FOUND envelope as generateContent; the method name is Google's RPC name (inferred).
            return unknown_gemini_model(ctx.model, "createCachedContent")
        if not emu.gemini_explicit_cache_supported(ctx.model):
            raise Reject(google_error(404, NO_CACHE_METHOD.format(model=model), "NOT_FOUND"))
        contents = validate_contents(body.get("contents"), "CreateCachedContentRequest.cached_content", False)
        expire_ns = _expiry_from(body, now_ns, "cached_content")
        system = get_field(body, "systemInstruction", "system_instruction")
        tools = body.get("tools")
        tool_config = get_field(body, "toolConfig", "tool_config")
        # media parts count by Google's rules and fail like Gemini when their file is gone (raises Reject)
        segments = render_gemini_prefix(system, tools, tool_config) + render_gemini_contents(contents, emu.files.render)
    except Reject as reject:
        return reject.response
    if expire_ns is None:
        expire_ns = now_ns + int(emu.gemini_default_cache_ttl * _NS)
    tokens = emu.tokenizer.count_all(segments)
    minimum = emu.gemini_cache_min_tokens_for(ctx.model)
    if tokens < minimum:
        return invalid(f"Cached content is too small. total_token_count={tokens}, min_total_token_count={minimum}")
    display = body.get("displayName", body.get("display_name", ""))
    cache = CachedContent(
        cache_id=emu._new_cache_id(),
        model=model,
        display_name=str(display or ""),
        system_instruction=system,
        tools=tools,
        tool_config=tool_config,
        contents=list(contents),
        tokens=tokens,
        create_ns=now_ns,
        update_ns=now_ns,
        expire_ns=expire_ns,
        owner=key_fingerprint(key),
        segments=segments,
    )
    emu._store_cached_content(cache)
    resource = cache.resource()
    ctx.usage = resource["usageMetadata"]  # {"totalTokenCount": N}: what the cache holds, as reported
    return json_response(200, resource, JSON_TYPE)


def handle_cache_list(emu: Emulator, ctx: RequestContext) -> EmulatorResponse:
    auth = authenticate(emu, ctx)
    if isinstance(auth, EmulatorResponse):
        return auth
    alive = emu._alive_cached_contents()
    try:
        size = int(ctx.query.get("pageSize", "100") or 100)
    except ValueError:
        return invalid("Invalid value at 'page_size' (TYPE_INT32)")
    size = 100 if size <= 0 else min(size, 1000)
    token = ctx.query.get("pageToken")
    if token:
        try:
            decoded = base64.urlsafe_b64decode(token.encode() + b"==").decode()
            marker = int(decoded.removeprefix("after:")) if decoded.startswith("after:") else None
        except (ValueError, UnicodeDecodeError):
            marker = None
        if marker is None:
            return invalid("Invalid page token.")
        alive = [c for c in alive if c.order > marker]
    page = alive[:size]
    if not page:
        return json_response(200, {}, JSON_TYPE)
    out: dict[str, Any] = {"cachedContents": [c.resource() for c in page]}
    if size < len(alive):
        out["nextPageToken"] = base64.urlsafe_b64encode(f"after:{page[-1].order}".encode()).decode().rstrip("=")
    return json_response(200, out, JSON_TYPE)


def handle_cache_item(emu: Emulator, ctx: RequestContext, cache_id: str) -> EmulatorResponse:
    """GET / PATCH / DELETE ``cachedContents/{id}``; unknown or expired names are 403, never 404."""
    auth = authenticate(emu, ctx)
    if isinstance(auth, EmulatorResponse):
        return auth
    name = f"cachedContents/{cache_id}"
    cache = emu._lookup_cached_content(name)
    if cache is None:
        if ctx.method == "PATCH" and ctx.body:
            with contextlib.suppress(ValueError):
                ctx.parsed = json.loads(ctx.body)
        return not_found()
    ctx.model = strip_models(cache.model)
    if ctx.method == "GET":
        return json_response(200, cache.resource(), JSON_TYPE)
    if ctx.method == "DELETE":
        emu._remove_cached_content(name, reason="deleted")
        return json_response(200, {}, JSON_TYPE)
    now_ns = int(ctx.now * _NS) // 1000 * 1000
    try:
        body = parse_json(ctx)
        if "name" in body:
            raise Reject(
                invalid(
                    "Invalid value at 'cached_content' (oneof), oneof field '_name' is already set. Cannot set 'name'"
                )
            )
        extra = [k for k in body if k not in ("ttl", "expireTime", "expire_time")]
        if extra:
            raise Reject(
                invalid(f"CachedContent field '{extra[0]}' cannot be updated: only ttl or expire_time may change.")
            )
        mask = [m.strip() for m in ctx.query.get("updateMask", "").split(",") if m.strip()]
        bad = [m for m in mask if m not in ("ttl", "expireTime", "expire_time")]
        if bad:
            raise Reject(invalid(f"Invalid update mask path '{bad[0]}': only ttl or expire_time may be updated."))
        expire_ns = _expiry_from(body, now_ns, "cached_content")
        if expire_ns is None:
            raise Reject(invalid("Nothing to update: set ttl or expireTime."))
    except Reject as reject:
        return reject.response
    cache.expire_ns = expire_ns
    cache.update_ns = now_ns
    return json_response(200, cache.resource(), JSON_TYPE)
