"""Tenants sharing a long system-prompt start are never diagnosed as one conversation (LangChain)."""

from __future__ import annotations

from typing import Any

import httpx

from cache_integrations.diagnostics import CacheDiagnostics
from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGLM
from cache_integrations.testing import Emulator, FakeClock

from .long_prompt import LONG_SYSTEM_PROMPT


def _llm(emu: Emulator, key: str) -> ChatGLM:
    return ChatGLM(
        api_key=key, base_url="http://emulator/api/paas/v4", http_client=httpx.Client(transport=emu.transport())
    )


def _ask(llm: ChatGLM, tenant: str, handler: CacheUsageCallbackHandler, **metadata: Any) -> None:
    messages = [("system", f"{LONG_SYSTEM_PROMPT}\nTenant: {tenant}."), ("human", "How do I reset my password?")]
    llm.invoke(messages, config={"callbacks": [handler], "metadata": metadata})


def test_two_credentials_sharing_a_prompt_start_are_two_conversations() -> None:
    emu, clock = Emulator(), FakeClock()
    handler = CacheUsageCallbackHandler(diagnostics=CacheDiagnostics(clock=clock.time))
    acme, globex = _llm(emu, "sk-acme-0123456789"), _llm(emu, "sk-globex-0123456789")
    for _ in range(2):
        _ask(acme, "ACME", handler)
        _ask(globex, "Globex", handler)
    causes = [d.cause for d in handler.diagnoses]
    assert "system_prompt_changed" not in causes
    assert [d.call_index for d in handler.diagnoses] == [0, 0, 1, 1]
    assert len({d.conversation for d in handler.diagnoses}) == 2


def test_two_session_ids_under_one_key_are_two_conversations() -> None:
    emu, clock = Emulator(), FakeClock()
    handler = CacheUsageCallbackHandler(diagnostics=CacheDiagnostics(clock=clock.time))
    llm = _llm(emu, "sk-shared-0123456789")
    for _ in range(2):
        _ask(llm, "ACME", handler, session_id="c1")  # a session id that looks like an automatic one
        _ask(llm, "Globex", handler, thread_id="globex")
        _ask(llm, "Initech", handler)  # no session id: never part of a session's conversation
    assert "system_prompt_changed" not in [d.cause for d in handler.diagnoses]
    assert [d.call_index for d in handler.diagnoses] == [0, 0, 0, 1, 1, 1]


def test_the_credential_scope_reveals_nothing_about_the_key() -> None:
    llm = _llm(Emulator(), "sk-acme-0123456789")
    scope = llm._identifying_params["credential_scope"]
    assert isinstance(scope, str) and len(scope) == 16
    assert (
        "acme" not in scope
        and scope != _llm(Emulator(), "sk-globex-0123456789")._identifying_params["credential_scope"]
    )
