"""Shared by the Gemini endpoints: Google's error envelope, authentication and request parsing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._context import RequestContext
from ._http import EmulatorResponse, json_response

if TYPE_CHECKING:
    from .emulator import Emulator

JSON_TYPE = "application/json; charset=UTF-8"

# Google's {"error": {"code", "message", "status"}} for a missing, expired or foreign cache: 403 on the
# Gemini API (Vertex: 404), for generateContent, GET, PATCH and DELETE alike (googleapis/python-genai
# google/genai/tests/caches/test_get.py expects PERMISSION_DENIED on the Gemini API; message as quoted in
# langchain-ai/langchain-google#1148, 2025-09-15).
CACHE_NOT_FOUND = "CachedContent not found (or permission denied)"
NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
    "or other form of API consumer identity to call this API."
)
BAD_KEY = "API key not valid. Please pass a valid API key."


def google_error(code: int, message: str, status: str, details: list[Any] | None = None) -> EmulatorResponse:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return json_response(code, {"error": err}, JSON_TYPE)


def invalid(message: str) -> EmulatorResponse:
    return google_error(400, message, "INVALID_ARGUMENT")


def not_found() -> EmulatorResponse:
    return google_error(403, CACHE_NOT_FOUND, "PERMISSION_DENIED")


class Reject(Exception):
    def __init__(self, response: EmulatorResponse) -> None:
        super().__init__(response.status)
        self.response = response


def strip_models(model: str) -> str:
    return model[len("models/") :] if model.startswith("models/") else model


def _api_key(ctx: RequestContext) -> str | None:
    key = ctx.headers.get("x-goog-api-key")
    if key is None:
        key = ctx.query.get("key")
    return key


def authenticate(emu: Emulator, ctx: RequestContext) -> str | EmulatorResponse:
    """The caller's API key, or the error Google answers: 403 without a key, 400 for a bad one."""
    key = _api_key(ctx)
    if key is None:
        return google_error(403, NO_KEY, "PERMISSION_DENIED")
    if not key.strip() or (emu.api_keys is not None and key not in emu.api_keys):
        # Google answers a bad key with 400 (not 401); body as quoted verbatim in continuedev/continue#8516
        # (2025-10-30) and #10290 (2026-02-06): ErrorInfo API_KEY_INVALID plus a LocalizedMessage.
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": BAD_KEY},
        ]
        return google_error(400, BAD_KEY, "INVALID_ARGUMENT", details)
    return key


def parse_json(ctx: RequestContext, required: bool = True) -> Any:
    if not ctx.body.strip():
        if required:
            raise Reject(invalid("Invalid JSON payload received. Unexpected end of string."))
        return {}
    try:
        body = json.loads(ctx.body)
    except ValueError:
        raise Reject(invalid("Invalid JSON payload received. Unexpected token.")) from None
    if not isinstance(body, dict):
        raise Reject(invalid("Invalid JSON payload received. Expected an object."))
    ctx.parsed = body
    return body


def get_field(body: Mapping[str, Any], camel: str, snake: str) -> Any:
    return body.get(camel, body.get(snake))


def validate_contents(contents: Any, where: str, required: bool) -> list[Any]:
    if contents is None:
        if required:
            raise Reject(invalid(f"* {where}.contents: contents is not specified\n"))
        return []
    if not isinstance(contents, list):
        raise Reject(invalid(f"Invalid value at '{where}.contents': expected a list of Content."))
    if required and not contents:
        raise Reject(invalid(f"* {where}.contents: contents is not specified\n"))
    for i, content in enumerate(contents):
        if not isinstance(content, Mapping):
            raise Reject(invalid(f"Invalid value at '{where}.contents[{i}]': expected a Content object."))
        role = content.get("role")
        if role not in (None, "", "user", "model", "function"):
            raise Reject(invalid("Please use a valid role: user, model."))
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise Reject(invalid(f"* {where}.contents[{i}].parts: contents.parts must not be empty.\n"))
    return contents
