"""One conversion per call (issue 15): the cache usage handler diagnoses the request the model built, and converts
the messages itself only for models of other packages, once their call has ended."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM, callbacks
from cache_integrations.langchain import _convert as convert_module
from cache_integrations.testing import Emulator

SYSTEM = "You answer from the handbook. " * 40


def _llm(emu: Emulator, **kwargs: Any) -> ChatGLM:
    transport = emu.transport()
    return ChatGLM(
        api_key="k",
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Who converted LangChain messages: the model (`_base`) or the handler (`callbacks`)."""
    seen: list[str] = []
    real = convert_module.messages_from_langchain
    for where, module in (("model", "cache_integrations.langchain._base"), ("handler", callbacks.__name__)):
        monkeypatch.setattr(f"{module}.messages_from_langchain", lambda m, where=where: seen.append(where) or real(m))
    return seen


@pytest.mark.parametrize("mode", ["invoke", "stream", "ainvoke", "astream"])
def test_the_handler_never_converts_what_this_package_s_model_built(
    mode: str, conversions: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[int] = []
    real_one = convert_module._message
    monkeypatch.setattr(convert_module, "_message", lambda m, i: converted.append(i) or real_one(m, i))
    emu = Emulator()
    handler = CacheUsageCallbackHandler()
    llm = _llm(emu, streaming=mode.endswith("stream"))
    config: Any = {"callbacks": [handler]}
    asks = [[SystemMessage(f"{mode}: {SYSTEM}"), HumanMessage(f"{mode}: question {q}?")] for q in (1, 2)]
    if mode == "invoke":
        for messages in asks:
            llm.invoke(messages, config=config)
    elif mode == "stream":
        for messages in asks:
            list(llm.stream(messages, config=config))
    else:

        async def calls() -> None:
            for messages in asks:
                if mode == "ainvoke":
                    await llm.ainvoke(messages, config=config)
                else:
                    async for _ in llm.astream(messages, config=config):
                        pass

        asyncio.run(calls())
    assert handler.flush()  # the diagnoses (and the handler's conversions) run after the calls, off this thread
    if mode in ("invoke", "ainvoke"):
        assert conversions == ["model", "model"]
    else:
        # langchain-core's stream()/astream() give the model no run manager: the handler reads the messages
        # at the run's end, every one already converted by the model (memo hits, no conversion work).
        # (The handler's reads run with the diagnoses, after the calls: counted, not ordered.)
        assert sorted(conversions) == ["handler", "handler", "model", "model"]
    assert converted == [0, 1, 1]  # each distinct message converted once: system, then each question
    diagnoses = handler.diagnoses
    assert [d.call_index for d in diagnoses] == [0, 1]
    assert diagnoses[1].cause is None and diagnoses[1].expected_cacheable_tokens > 0
    assert handler._pending == {}


def test_the_handler_sees_the_request_after_the_layout_step(conversions: list[str]) -> None:
    emu = Emulator()
    handler = CacheUsageCallbackHandler()
    llm = _llm(emu)
    # The memory pattern: a system message after the history. The layout hoists it, so the prefix holds.
    for q in ("One?", "Two?"):
        llm.invoke(
            [SystemMessage(SYSTEM), HumanMessage(q), SystemMessage("Profile: Dana.")], config={"callbacks": [handler]}
        )
    assert handler.diagnoses[1].cause is None
    assert conversions == ["model", "model"]


def test_a_foreign_model_is_converted_by_the_handler_once_at_the_end(conversions: list[str]) -> None:
    usage = {"input_tokens": 900, "output_tokens": 3, "total_tokens": 903, "input_token_details": {"cache_read": 800}}
    model = FakeMessagesListChatModel(
        responses=[AIMessage("a", usage_metadata=usage, response_metadata={"model_name": "gpt-4o-mini"})] * 2
    )
    handler = CacheUsageCallbackHandler()
    for q in ("One?", "Two?"):
        model.invoke([SystemMessage(SYSTEM), HumanMessage(q)], config={"callbacks": [handler]})
    assert handler.flush()
    assert conversions == ["handler", "handler"]
    assert [d.call_index for d in handler.diagnoses] == [0, 1]


def test_a_failed_call_leaves_nothing_pending(conversions: list[str]) -> None:
    from cache_integrations.errors import InvalidRequestError

    handler = CacheUsageCallbackHandler()
    llm = _llm(Emulator(), max_retries=0)
    with pytest.raises(InvalidRequestError):  # a tool choice without tools: refused after the request was built
        llm.invoke([HumanMessage("q")], config={"callbacks": [handler]}, tool_choice="none")
    assert conversions == ["model"]
    assert handler._pending == {}
