"""The core pieces behind Gemini explicit caches for foreign clients: which models take them, the endpoint read
from a google-genai client, tool conversion, the errors that mean "cache gone", and the strategy's plans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.genai import errors as genai_errors
from google.genai import types
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_google_genai.chat_models import GooglePermissionDeniedError
from pydantic import SecretStr

from cache_integrations import ForcedTool, Message, ToolDefinition
from cache_integrations.errors import CachedContentNotFoundError, PermissionDeniedError
from cache_integrations.explicit import CacheDecision
from cache_integrations.gemini_models import explicit_caching_supported
from cache_integrations.messages import ChatRequest
from cache_integrations.strategies import (
    CallContext,
    GeminiEndpoint,
    GeminiExplicitStrategy,
    StrategyBook,
    cached_content_gone,
    gemini_endpoint,
    tool_choice_from_gemini_config,
    tools_from_gemini,
)
from cache_integrations.testing import Emulator

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])

KEY = "core-secret-key-789"
SYSTEM = "Answer from the handbook only. " + "Passwords are reset from Settings > Security. " * 200


@pytest.mark.parametrize(
    ("model", "supported"),
    [
        ("gemini-2.5-flash", True),
        ("models/gemini-2.5-pro", True),
        ("gemini-2.0-flash", True),
        ("gemini-1.5-pro-002", True),
        ("gemini-3-flash", True),
        ("gemini-3.1-pro-preview", True),
        ("gemini-3.8-flash", True),
        ("gemini-4-argon", False),
        ("gemini-4-argon-cyber-permissive", False),
        ("gemini-5-pro", False),
        ("gemini-omni-flash-preview", False),
        ("gemini-flash-latest", False),
        ("publishers/google/models/gemini-2.5-flash", True),
    ],
)
def test_explicit_caching_supported(model: str, supported: bool) -> None:
    assert explicit_caching_supported(model) is supported


def test_tool_choice_from_gemini_config() -> None:
    names = ["alpha", "zeta"]
    assert tool_choice_from_gemini_config(None, names) is None
    forced = {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["zeta"]}}
    assert tool_choice_from_gemini_config(forced, names) == ForcedTool("zeta")
    assert tool_choice_from_gemini_config({"functionCallingConfig": {"mode": "NONE"}}, names) == "none"
    sdk = types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
    )
    assert tool_choice_from_gemini_config(sdk, names) == "required"
    all_named = {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["zeta", "alpha"]}}
    assert tool_choice_from_gemini_config(all_named, names) == "required"
    for config in (
        {"retrieval_config": {"lat_lng": {"latitude": 1, "longitude": 2}}},
        {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["alpha", "beta"]}},
        {"function_calling_config": {"mode": "VALIDATED"}},
    ):
        with pytest.raises(ValueError, match="tool_config"):
            tool_choice_from_gemini_config(config, names)


def test_tools_from_gemini() -> None:
    sdk = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="lookup",
                description="Look a city up.",
                parameters=types.Schema(
                    type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]
                ),
            ),
            types.FunctionDeclaration(name="now", description="The time."),
        ]
    )
    as_dict = {"functionDeclarations": [{"name": "add", "parametersJsonSchema": {"type": "object"}}]}
    assert tools_from_gemini([sdk, as_dict]) == (
        ToolDefinition(
            "lookup",
            "Look a city up.",
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        ),
        ToolDefinition("now", "The time.", {"type": "object", "properties": {}}),
        ToolDefinition("add", "", {"type": "object"}),
    )
    with pytest.raises(ValueError, match="only function declarations"):
        tools_from_gemini([types.Tool(google_search=types.GoogleSearch())])


def _client_error(code: int, status: str, message: str) -> genai_errors.ClientError:
    return genai_errors.ClientError(code, {"error": {"code": code, "message": message, "status": status}})


def test_cached_content_gone_reads_every_clients_error() -> None:
    gone = _client_error(403, "PERMISSION_DENIED", "CachedContent not found (or permission denied)")
    assert cached_content_gone(gone)
    try:  # langchain-google-genai re-raises it as its own type, chained
        raise GooglePermissionDeniedError("Error calling model 'gemini-2.5-flash' (PERMISSION_DENIED)") from gone
    except GooglePermissionDeniedError as wrapped:
        assert cached_content_gone(wrapped)
    assert cached_content_gone(
        CachedContentNotFoundError("CachedContent not found", status_code=403, provider="gemini")
    )
    assert cached_content_gone(_client_error(404, "NOT_FOUND", "Cached content projects/p/cachedContents/1 not found"))
    assert not cached_content_gone(_client_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers"))
    assert not cached_content_gone(PermissionDeniedError("denied", status_code=403, provider="gemini"))
    assert not cached_content_gone(_client_error(404, "NOT_FOUND", "models/gemini-9 is not found"))
    assert not cached_content_gone(None)


def test_the_endpoint_is_read_from_the_clients_own_settings() -> None:
    llm = ChatGoogleGenerativeAI(
        model="gemini-2.5-flash",
        google_api_key=KEY,
        base_url="http://127.0.0.1:9/",
        api_version="v1beta",
        additional_headers={"X-Gateway": "tenant-7"},
    )
    endpoint = gemini_endpoint(llm)
    assert endpoint is not None
    assert endpoint.base_url == "http://127.0.0.1:9/v1beta"
    assert endpoint.api_key.get_secret_value() == KEY and endpoint.headers == (("X-Gateway", "tenant-7"),)
    default = gemini_endpoint(ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key=KEY))
    assert default is not None and default.base_url == "https://generativelanguage.googleapis.com/v1beta"
    other_key = gemini_endpoint(ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key=KEY + "x"))
    assert other_key is not None and len({default.fingerprint, other_key.fingerprint, endpoint.fingerprint}) == 3
    assert KEY not in repr(endpoint) + repr(CallContext("google", "m", endpoint=endpoint)) + endpoint.fingerprint


class _Api:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


_OPTIONS = types.HttpOptions(base_url="https://aiplatform.googleapis.com/", api_version="v1beta1")


def test_a_developer_api_client_has_an_endpoint() -> None:
    holder = _Api(_client=_Api(_api_client=_Api(vertexai=False, api_key=KEY, _http_options=_OPTIONS)))
    endpoint = gemini_endpoint(holder)  # `_client`: where LlamaIndex's GoogleGenAI keeps it
    assert endpoint is not None and endpoint.base_url == "https://aiplatform.googleapis.com/v1beta1"


@pytest.mark.parametrize(
    "holder",
    [
        object(),
        _Api(client=_Api(_api_client=_Api(vertexai=True, api_key=KEY, _http_options=_OPTIONS))),
        _Api(client=_Api(_api_client=_Api(vertexai=False, api_key=None, _http_options=_OPTIONS))),
        _Api(client=_Api(_api_client=_Api(vertexai=False, api_key="auth_tokens/abc", _http_options=_OPTIONS))),
    ],
    ids=["no client", "vertex", "oauth", "ephemeral token"],
)
def test_no_endpoint_without_a_developer_api_key(holder: Any) -> None:
    assert gemini_endpoint(holder) is None


@pytest.fixture
def emu() -> Iterator[Emulator]:
    emulator = Emulator()
    with emulator.serve() as server:
        emulator.base_url = server.gemini_base_url  # type: ignore[attr-defined]
        yield emulator


def _endpoint(emu: Emulator) -> GeminiEndpoint:
    return GeminiEndpoint(emu.base_url, SecretStr(KEY))  # type: ignore[attr-defined]


def _strategy(emu: Emulator, **options: Any) -> GeminiExplicitStrategy:
    options.setdefault("cache_registry", "memory")
    return GeminiExplicitStrategy(**options)


def _request(question: str = "How do I reset my password?", model: str = "gemini-2.5-flash") -> ChatRequest:
    return ChatRequest(model, (Message("user", question), Message("system", SYSTEM)))


def test_the_plan_names_the_cache_and_drops_what_it_holds(emu: Emulator) -> None:
    strategy = _strategy(emu, cache_mode="always")
    context = CallContext("google", "gemini-2.5-flash", endpoint=_endpoint(emu))
    plan = strategy.plan(_request(), context)
    assert plan.order == (1, 0)  # system first
    decision = plan.cache
    assert isinstance(decision, CacheDecision) and decision.name == plan.options["cached_content"]
    assert plan.drop_system_and_tools and plan.cached_messages == 0
    assert decision.use is not None and decision.use.created and emu.counters.caches_created == 1
    again = strategy.plan(_request("Another question"), context)
    assert again.options == plan.options and again.cache.use is not None and not again.cache.use.created


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"exact": False}, "the adapter could not convert the call exactly"),
        ({"endpoint": None}, "no key to create a cache with"),
        ({"model": "gemini-4-argon"}, "Argon has no explicit caching"),
    ],
)
def test_layout_only_when_a_cache_cannot_be_used(emu: Emulator, change: dict[str, Any], why: str) -> None:
    strategy = _strategy(emu, cache_mode="always")
    model = change.pop("model", "gemini-2.5-flash")
    context = CallContext("google", model, **{"endpoint": _endpoint(emu), **change})
    plan = strategy.plan(_request(model=model), context)
    assert plan.order == (1, 0) and not plan.options and plan.cache is None, why
    assert emu.counters.caches_created == 0


def test_recover_replaces_a_vanished_cache_once_and_observe_settles_it(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    strategy = _strategy(emu, cache_mode="always")
    context = CallContext("google", "gemini-2.5-flash", endpoint=_endpoint(emu))
    plan = strategy.plan(_request(), context)
    emu.delete_cached_content(plan.options["cached_content"])
    recovered = strategy.recover(_request(), context, plan)
    assert recovered is not None and recovered.options["cached_content"] != plan.options["cached_content"]
    assert recovered.cache.use.recovered and recovered.cache.use.created
    manager = strategy.manager(_endpoint(emu))
    (entry,) = manager.registry.entries(manager.namespace)
    assert entry.name == recovered.options["cached_content"]  # the vanished one is forgotten
    settled: list[Any] = []
    monkeypatch.setattr(manager, "settle", lambda decision, usage: settled.append((decision, usage)))
    strategy.observe(_request(), context, recovered, None)
    assert settled == [(recovered.cache, None)]
    # a plan without a cache of ours is not the strategy's to recover
    layout_only = strategy.plan(_request(model="gemini-4-argon"), context)
    assert strategy.recover(_request(model="gemini-4-argon"), context, layout_only) is None


def test_a_failed_recreation_sends_inline_even_in_always_mode(emu: Emulator) -> None:
    strategy = _strategy(emu, cache_mode="always")
    context = CallContext("google", "gemini-2.5-flash", endpoint=_endpoint(emu))
    plan = strategy.plan(_request(), context)
    emu.delete_cached_content(plan.options["cached_content"])
    emu.inject_fault(400, endpoint="gemini", path_prefix="/v1beta/cachedContents")
    recovered = strategy.recover(_request(), context, plan)
    assert recovered is not None and "cached_content" not in recovered.options and not recovered.drop_system_and_tools
    assert recovered.order == (1, 0)


async def test_async_plan_and_recover(emu: Emulator) -> None:
    strategy = _strategy(emu, cache_mode="always")
    context = CallContext("google", "gemini-2.5-flash", endpoint=_endpoint(emu))
    plan = await strategy.aplan(_request(), context)
    emu.delete_cached_content(plan.options["cached_content"])
    recovered = await strategy.arecover(_request(), context, plan)
    assert recovered is not None and recovered.cache.use.recovered
    assert emu.counters.caches_created == 2


def test_auto_mode_counts_sends_and_learns_from_implicit_hits(emu: Emulator) -> None:
    from cache_integrations.usage import Usage

    strategy = _strategy(emu)  # auto
    context = CallContext("google", "gemini-2.5-flash", endpoint=_endpoint(emu))
    plans = [strategy.plan(_request(f"q{i}"), context) for i in range(5)]
    assert [("cached_content" in p.options) for p in plans] == [False, False, False, False, True]
    # the implicit cache served an inline send of another prefix: no paid cache for it while that lasts
    other = ChatRequest("gemini-2.5-flash", (Message("system", SYSTEM + " v2"), Message("user", "q")))
    for _ in range(6):
        plan = strategy.plan(other, context)
        assert "cached_content" not in plan.options
        strategy.observe(other, context, plan, Usage(input_tokens=1000, cache_read_tokens=950))


def test_options_are_checked_when_the_book_is_built() -> None:
    with pytest.raises(ValueError, match=r"cache_mode: 'sometimes' is not one of \['auto', 'always', 'off'\]"):
        StrategyBook(cache_mode="sometimes")
    for ttl in (0, -5, float("inf"), "1h", True):
        with pytest.raises(ValueError, match="cache_ttl: expected positive finite seconds"):
            StrategyBook(cache_ttl=ttl)
    with pytest.raises(ValueError, match="cache_registry: expected 'memory'"):
        GeminiExplicitStrategy(cache_registry="mysql://x").manager(GeminiEndpoint("http://h/v1beta", SecretStr(KEY)))
