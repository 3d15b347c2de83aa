"""Constructor arguments are strict: a misspelling fails with a did-you-mean, every alias still works,
and constructor errors never repeat the API key."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from cache_integrations import ConfigurationError
from cache_integrations.langchain import ChatGemini, ChatGLM

SECRET = "sk-very-secret-0123456789"


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a request was sent: {request.method} {request.url}")


def _client() -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(_no_network))


def _chain(exc: BaseException | None) -> str:
    """The messages of an exception and of everything it chains to."""
    texts = []
    while exc is not None:
        texts.append(f"{type(exc).__name__}: {exc!s} {exc.args!r}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def test_a_misspelled_base_url_fails_with_a_hint_instead_of_calling_production() -> None:
    with pytest.raises(ConfigurationError) as info:
        ChatGLM(api_key=SECRET, base_ur="http://localhost:9999/v4", http_client=_client())
    message = str(info.value)
    assert message.startswith("ChatGLM: unknown argument 'base_ur'; did you mean 'base_url'? Allowed: ")
    assert "api_base" in message and "temperature" in message  # the allowed names, aliases included
    assert SECRET not in _chain(info.value)


def test_a_misspelled_temperature_is_not_dropped() -> None:
    with pytest.raises(
        ConfigurationError, match=r"ChatGemini: unknown argument 'temprature'; did you mean 'temperature'\?"
    ):
        ChatGemini(api_key=SECRET, temprature=5, cache_registry="memory")


def test_several_unknown_arguments_are_named_together() -> None:
    with pytest.raises(ConfigurationError) as info:
        ChatGLM(api_key=SECRET, modle="glm-4.6", colour="blue")
    assert "unknown arguments 'modle' (did you mean 'model'?), 'colour'." in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"model_name": "glm-4.6"}, "model", "glm-4.6"),
        ({"max_completion_tokens": 7}, "max_tokens", 7),
        ({"stop_sequences": ["END"]}, "stop", ["END"]),
        ({"api_base": "https://api.z.ai/api/paas/v4"}, "base_url", "https://api.z.ai/api/paas/v4"),
        ({"base_url": "https://api.z.ai/api/paas/v4"}, "base_url", "https://api.z.ai/api/paas/v4"),
        ({"timeout": 30, "max_retries": 0, "streaming": True}, "timeout", 30),
    ],
)
def test_every_glm_alias_still_works(kwargs: dict[str, object], field: str, expected: object) -> None:
    llm = ChatGLM(api_key=SECRET, http_client=_client(), **kwargs)
    assert getattr(llm, field) == expected


def test_key_aliases_still_work() -> None:
    glm = ChatGLM(zhipuai_api_key=SECRET, http_client=_client())
    gemini = ChatGemini(google_api_key=SECRET, model_name="gemini-2.5-pro", cache_registry="memory")
    assert glm.api_key is not None and glm.api_key.get_secret_value() == SECRET
    assert gemini.api_key is not None and gemini.api_key.get_secret_value() == SECRET
    assert gemini.model == "gemini-2.5-pro"


def test_two_spellings_of_one_field_are_rejected_without_echoing_either() -> None:
    with pytest.raises(
        ConfigurationError, match=r"ChatGLM: 'api_key' and 'zhipuai_api_key' both set 'api_key'"
    ) as info:
        ChatGLM(api_key="first-key", zhipuai_api_key=SECRET)
    assert SECRET not in _chain(info.value) and "first-key" not in _chain(info.value)


def test_constructor_errors_do_not_carry_the_key_in_pydantic_input() -> None:
    # pydantic's ValidationError prints the whole constructor input (the API key included) for a
    # model-level validator error; ours are raised as themselves, with no chain back to it.
    with pytest.raises(ConfigurationError, match="cache_registry") as info:
        ChatGemini(api_key=SECRET, cache_registry="bogus://registry")
    assert SECRET[:12] not in _chain(info.value)
    assert info.value.__context__ is None and info.value.__cause__ is None
    with pytest.raises(ConfigurationError, match="temperature") as info:
        ChatGLM(api_key=SECRET, temperature=3)
    assert SECRET[:12] not in _chain(info.value)


def test_model_validate_forbids_extra_fields_too() -> None:
    with pytest.raises(ValidationError, match="base_ur"):
        ChatGLM.model_validate({"api_key": SECRET, "base_ur": "http://x"})


def test_bind_tools_rejects_a_bad_tool_name_at_bind_time() -> None:
    llm = ChatGLM(api_key=SECRET, http_client=_client())
    tool = {"type": "function", "function": {"name": "get weather", "parameters": {"type": "object"}}}
    with pytest.raises(ValueError, match=r"tools\[0\]\.name: 'get weather' is not a valid tool name"):
        llm.bind_tools([tool])
