"""The core validation rules, directly: ranges at their edges, durations, tool names and schemas, text."""

from __future__ import annotations

import math
from typing import Any

import pytest

from cache_integrations import ConfigurationError, InvalidRequestError
from cache_integrations.messages import ChatRequest, ImagePart, Message, TextPart, ToolCall, ToolDefinition
from cache_integrations.providers.gemini import encode_generate
from cache_integrations.providers.glm import encode_request
from cache_integrations.validation import (
    GEMINI_LIMITS,
    GLM_LIMITS,
    check_seconds,
    reject_unknown_arguments,
    validate_request,
    validate_settings,
)

HI = (Message("user", "hi"),)


def _request(**kwargs: Any) -> ChatRequest:
    kwargs.setdefault("messages", HI)
    return ChatRequest(model="m", **kwargs)


@pytest.mark.parametrize(
    ("limits", "field", "good", "bad"),
    [
        (GLM_LIMITS, "temperature", [0, 0.0, 0.5, 1, 1.0], [-0.01, 1.01, 2, math.nan, math.inf, True, "0.5"]),
        (GLM_LIMITS, "top_p", [0.01, 0.5, 1.0], [0, 0.0, 0.009, 1.5, math.nan]),
        (GEMINI_LIMITS, "temperature", [0, 1.0, 2.0], [-1, 2.01, math.inf]),
        (GEMINI_LIMITS, "top_p", [0, 0.95, 1], [-0.1, 1.01, math.nan]),
        (GLM_LIMITS, "max_tokens", [1, 65536], [0, -1, 1.5, True, "10"]),
    ],
)
def test_sampling_ranges(limits: Any, field: str, good: list[Any], bad: list[Any]) -> None:
    for value in good:
        validate_request(_request(**{field: value}), limits)
    for value in bad:
        with pytest.raises(InvalidRequestError, match=rf"^{field}: .*{value!r}") as info:
            validate_request(_request(**{field: value}), limits)
        if field != "max_tokens":
            assert f"{limits.provider}'s allowed range [" in str(info.value)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, -math.inf, "10", True])
def test_durations_must_be_positive_and_finite(value: Any) -> None:
    with pytest.raises(
        ConfigurationError, match=rf"^cache_ttl: expected a positive, finite number of seconds.*{value!r}"
    ):
        check_seconds("cache_ttl", value)


def test_durations_that_are_fine() -> None:
    for value in (None, 0.001, 1, 3600.0):
        check_seconds("timeout", value)


class _Settings:
    temperature = 0.2
    top_p = None
    max_tokens = 10
    timeout = 30.0
    max_retries = 2
    cache_ttl = math.nan


def test_settings_name_the_owner_and_the_field() -> None:
    with pytest.raises(ConfigurationError, match=r"^ChatGemini: cache_ttl: .* got nan$"):
        validate_settings("ChatGemini", GEMINI_LIMITS, _Settings())
    settings = _Settings()
    settings.cache_ttl = 60.0
    validate_settings("ChatGemini", GEMINI_LIMITS, settings)
    settings.max_retries = -1
    with pytest.raises(ConfigurationError, match=r"^ChatGemini: max_retries: expected an integer >= 0, got -1$"):
        validate_settings("ChatGemini", GEMINI_LIMITS, settings)


@pytest.mark.parametrize("name", ["get weather", "", "x" * 65, "name\n", "naïve", "a/b", "semi;colon"])
def test_tool_names_outside_the_allowed_pattern(name: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"tools\[0\]\.name: .* allowed: 1 to 64 characters"):
        validate_request(_request(tools=(ToolDefinition(name),)), GLM_LIMITS)


@pytest.mark.parametrize("name", ["get_weather", "a", "x" * 64, "ns.tool-2"])
def test_tool_names_inside_the_pattern(name: str) -> None:
    validate_request(_request(tools=(ToolDefinition(name),)), GLM_LIMITS)


@pytest.mark.parametrize(
    ("parameters", "match"),
    [
        ("notadict", r"expected a JSON-schema object .* got str 'notadict'"),
        (["a"], r"expected a JSON-schema object .* got list"),
        ({"type": "string"}, r"the schema's type must be 'object' .* got 'string'"),
        ({"properties": {}}, r"the schema's type must be 'object' .* got None"),
        ({"type": "object", "properties": ["a"]}, r"parameters\.properties .* got list"),
    ],
)
def test_tool_parameters_must_be_an_object_schema(parameters: Any, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=rf"tools\[0\]\.parameters.*\(lookup\).*{match}|{match}"):
        validate_request(_request(tools=(ToolDefinition("lookup", "", parameters),)), GEMINI_LIMITS)


LONE = "\udc80"


@pytest.mark.parametrize(
    ("request_", "where"),
    [
        (
            _request(messages=(Message("system", "ok"), Message("user", f"a{LONE}"))),
            r"messages\[1\]\.content: .*'\\udc80' at character 1",
        ),
        (_request(messages=(Message("user", (TextPart("ok"), TextPart(LONE))),)), r"messages\[0\]\.content\[1\]\.text"),
        (_request(messages=(Message("user", (ImagePart(f"https://x/{LONE}"),)),)), r"messages\[0\]\.content\[0\]\.url"),
        (
            _request(messages=(Message("assistant", "", (ToolCall("c1", "f", {"k": [1, {LONE: 2}]}),)),)),
            r"messages\[0\]\.tool_calls\[0\]\.arguments\.k\[1\] key",
        ),
        (_request(messages=(Message("tool", "r", tool_call_id=f"id{LONE}"),)), r"messages\[0\]\.tool_call_id"),
        (_request(tools=(ToolDefinition("f", LONE),)), r"tools\[0\]\.description"),
        (
            _request(tools=(ToolDefinition("f", "", {"type": "object", "properties": {"q": {"description": LONE}}}),)),
            r"tools\[0\]\.parameters\.properties\.q\.description",
        ),
        (_request(stop=(LONE,)), r"stop\[0\]"),
        (_request(extra={"user_id": LONE}), r"extra\.user_id"),
    ],
)
def test_lone_surrogates_are_named_where_they_are(request_: ChatRequest, where: str) -> None:
    with pytest.raises(InvalidRequestError, match=rf"^{where}") as info:
        validate_request(request_, GLM_LIMITS)
    assert "the lone surrogate '\\udc80' at character" in str(info.value)


def test_valid_non_ascii_text_passes() -> None:
    validate_request(_request(messages=(Message("user", "naïve café 你好 😀"),)), GLM_LIMITS)


def test_both_providers_encode_steps_validate() -> None:
    """A direct provider user (no adapter) gets the same checks: they sit in the encode step."""
    with pytest.raises(InvalidRequestError, match=r"temperature: 1\.5 is outside GLM's allowed range"):
        encode_request(_request(temperature=1.5), stream=False)
    with pytest.raises(InvalidRequestError, match=r"messages\[0\]\.content"):
        encode_generate(_request(messages=(Message("user", LONE),)), stream=True)
    # the checks are per provider: 1.5 is a fine Gemini temperature
    encode_generate(_request(temperature=1.5), stream=False)


def test_did_you_mean() -> None:
    allowed = {"base_url": "base_url", "api_base": "base_url", "temperature": "temperature", "_private": "_private"}
    with pytest.raises(ConfigurationError) as info:
        reject_unknown_arguments("ChatGLM", ["base_ur"], allowed)
    assert str(info.value) == (
        "ChatGLM: unknown argument 'base_ur'; did you mean 'base_url'? Allowed: api_base, base_url, temperature"
    )
    with pytest.raises(ConfigurationError, match=r"unknown argument 'zzz'\. Allowed:"):
        reject_unknown_arguments("ChatGLM", ["zzz"], allowed)
    reject_unknown_arguments("ChatGLM", ["api_base", "temperature"], allowed)
    with pytest.raises(ConfigurationError, match="'base_url' and 'api_base' both set 'base_url'"):
        reject_unknown_arguments("ChatGLM", ["base_url", "api_base"], allowed)
