"""Fault injection: canned provider error bodies and the ``Fault`` value the emulator consumes.

Retry, recovery and error-mapping code must be tested against the bodies providers really send
(Zhipu's string business codes, Google's ``status`` enum, OpenAI's ``type``/``code``), so the helpers
below return those shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Endpoint",
    "Fault",
    "anthropic_overloaded",
    "anthropic_rate_limit",
    "default_error_body",
    "gemini_internal",
    "gemini_resource_exhausted",
    "gemini_unavailable",
    "glm_insufficient_balance",
    "glm_overloaded",
    "glm_rate_limit",
    "glm_server_error",
    "openai_rate_limit",
    "openai_server_error",
    "stream_cut",
]

Endpoint = Literal["glm", "openai", "gemini", "anthropic", "deepseek", "dashscope"]
"""The emulated APIs: Zhipu GLM, OpenAI-compatible chat, Gemini v1beta, Anthropic Messages, and the
OpenAI-compatible DeepSeek and DashScope (Qwen) routes with their own usage fields."""


@dataclass(frozen=True)
class Fault:
    """An error (or a cut stream) to serve instead of the normal answer.

    ``body``: JSON-able mapping, raw bytes, or ``None`` for the endpoint's realistic default body for
    ``status``. ``endpoint``/``path_prefix``/``method`` restrict which requests it hits.
    ``cut_stream_after``: if set, the request is answered normally but a streamed answer stops after
    that many chunks (no usage, no terminator) - a dropped connection; non-streamed requests are not hit.
    """

    status: int = 429
    body: Mapping[str, Any] | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    endpoint: Endpoint | None = None
    path_prefix: str | None = None
    method: str | None = None
    cut_stream_after: int | None = None

    def matches(self, endpoint: Endpoint | None, method: str, path: str) -> bool:
        if self.endpoint is not None and endpoint != self.endpoint:
            return False
        if self.method is not None and method.upper() != self.method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


def _glm(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _openai(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _google(code: int, message: str, status: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


GLM_RATE_LIMIT_BODY = _glm("1302", "Rate limit reached for requests")
GLM_INSUFFICIENT_BALANCE_BODY = _glm("1113", "Insufficient balance or no resource package. Please recharge.")
# Recorded from api.z.ai (pydantic/pydantic-ai tests/models/cassettes/test_zai/test_zai_thinking_stream.yaml,
# 2026-03-23): HTTP 429 with business code 1305 when the model is overloaded; retrying helps.
GLM_OVERLOADED_BODY = _glm("1305", "The service may be temporarily overloaded, please try again later")
# Auth failures use Zhipu's 1000-series codes (https://docs.z.ai/api-reference/api-code), not 1210.
GLM_AUTH_FAILED_BODY = _glm("1000", "Authentication Failed")
GEMINI_RESOURCE_EXHAUSTED_BODY = _google(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED")
GEMINI_UNAVAILABLE_BODY = _google(503, "The model is overloaded. Please try again later.", "UNAVAILABLE")


def _anthropic(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


ANTHROPIC_RATE_LIMIT_BODY = _anthropic(
    "rate_limit_error",
    "Number of request tokens has exceeded your per-minute rate limit (https://docs.claude.com/en/api/rate-limits); "
    "see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, "
    "or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your "
    "options for a rate limit increase.",
)
ANTHROPIC_OVERLOADED_BODY = _anthropic("overloaded_error", "Overloaded")


def default_error_body(endpoint: Endpoint | None, status: int) -> dict[str, Any]:
    """The body a provider typically sends with ``status`` (used when a fault gives no body)."""
    if endpoint == "anthropic":
        if status == 429:
            return ANTHROPIC_RATE_LIMIT_BODY
        if status == 529:
            return ANTHROPIC_OVERLOADED_BODY
        if status >= 500:
            return _anthropic("api_error", "Internal server error")
        return _anthropic("invalid_request_error", "Request failed.")
    if endpoint == "gemini":
        if status == 429:
            return GEMINI_RESOURCE_EXHAUSTED_BODY
        if status == 503:
            return GEMINI_UNAVAILABLE_BODY
        if status >= 500:
            return _google(
                status,
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
                "INTERNAL",
            )
        return _google(status, "Request failed.", "FAILED_PRECONDITION")
    if endpoint in ("openai", "deepseek", "dashscope"):
        if status == 429:
            return _openai("Rate limit reached for requests", "requests", "rate_limit_exceeded")
        if status == 503:
            return _openai("The server is overloaded or not ready yet.", "server_error", None)
        if status >= 500:
            return _openai(
                "The server had an error while processing your request. Sorry about that!", "server_error", None
            )
        return _openai("Request failed.", "invalid_request_error", None)
    if status == 429:
        return GLM_RATE_LIMIT_BODY
    if status == 401:
        return GLM_AUTH_FAILED_BODY
    if status == 503:
        return _glm("503", "Service Unavailable")
    if status >= 500:
        return _glm("500", "Internal Error")
    return _glm("1210", "Invalid API parameter, please check the documentation.")


def glm_rate_limit(retry_after: str | None = "0") -> Fault:
    """Zhipu 429 ``1302`` rate limit."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(status=429, body=GLM_RATE_LIMIT_BODY, headers=headers, endpoint="glm")


def glm_insufficient_balance() -> Fault:
    """Zhipu 429 ``1113``: not retryable, the account is out of credit."""
    return Fault(status=429, body=GLM_INSUFFICIENT_BALANCE_BODY, endpoint="glm")


def glm_overloaded(retry_after: str | None = None) -> Fault:
    """Zhipu / Z.ai 429 ``1305``: the service is overloaded (retryable, unlike ``1113``)."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(status=429, body=GLM_OVERLOADED_BODY, headers=headers, endpoint="glm")


def glm_server_error(status: int = 500) -> Fault:
    """Zhipu 5xx."""
    return Fault(status=status, body=default_error_body("glm", status), endpoint="glm")


def openai_rate_limit(retry_after: str | None = "0") -> Fault:
    """OpenAI 429 ``rate_limit_exceeded``."""
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Fault(status=429, body=default_error_body("openai", 429), headers=headers, endpoint="openai")


def openai_server_error(status: int = 500) -> Fault:
    """OpenAI 5xx ``server_error``."""
    return Fault(status=status, body=default_error_body("openai", status), endpoint="openai")


def gemini_resource_exhausted() -> Fault:
    """Gemini 429 ``RESOURCE_EXHAUSTED`` (quota)."""
    return Fault(status=429, body=GEMINI_RESOURCE_EXHAUSTED_BODY, endpoint="gemini")


def gemini_unavailable() -> Fault:
    """Gemini 503 ``UNAVAILABLE`` (model overloaded)."""
    return Fault(status=503, body=GEMINI_UNAVAILABLE_BODY, endpoint="gemini")


def gemini_internal() -> Fault:
    """Gemini 500 ``INTERNAL``."""
    return Fault(status=500, body=default_error_body("gemini", 500), endpoint="gemini")


def anthropic_rate_limit(retry_after: str | None = "0") -> Fault:
    """Anthropic 429 ``rate_limit_error``."""
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Fault(status=429, body=ANTHROPIC_RATE_LIMIT_BODY, headers=headers, endpoint="anthropic")


def anthropic_overloaded() -> Fault:
    """Anthropic 529 ``overloaded_error`` (the API is overloaded; clients retry it)."""
    return Fault(status=529, body=ANTHROPIC_OVERLOADED_BODY, endpoint="anthropic")


def stream_cut(after_chunks: int = 1, endpoint: Endpoint | None = None) -> Fault:
    """A streamed answer that drops after ``after_chunks`` chunks (so no usage ever arrives)."""
    return Fault(status=200, endpoint=endpoint, cut_stream_after=after_chunks)
