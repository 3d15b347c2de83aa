"""Tenants sharing a long system-prompt start are never diagnosed as one conversation (LlamaIndex)."""

from __future__ import annotations

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.instrumentation.dispatcher import instrument_tags

from cache_integrations.llama_index import CacheUsageHandler
from cache_integrations.testing import Emulator

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import make_glm


def _messages(tenant: str) -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content=f"{LONG_SYSTEM_PROMPT}\nTenant: {tenant}."),
        ChatMessage(role=MessageRole.USER, content="How do I reset my password?"),
    ]


def test_two_credentials_sharing_a_prompt_start_are_two_conversations(emu: Emulator, usage: CacheUsageHandler) -> None:
    acme, globex = make_glm(emu, api_key="sk-acme-0123456789"), make_glm(emu, api_key="sk-globex-0123456789")
    for _ in range(2):
        acme.chat(_messages("ACME"))
        globex.chat(_messages("Globex"))
    assert "system_prompt_changed" not in [d.cause for d in usage.diagnoses]
    assert [d.call_index for d in usage.diagnoses] == [0, 0, 1, 1]


def test_two_session_ids_under_one_key_are_two_conversations(emu: Emulator, usage: CacheUsageHandler) -> None:
    glm = make_glm(emu)
    for _ in range(2):
        for tenant in ("ACME", "Globex"):
            with instrument_tags({"session_id": tenant}):
                glm.chat(_messages(tenant))
        glm.chat(_messages("Initech"))  # no session id: never part of a session's conversation
    assert "system_prompt_changed" not in [d.cause for d in usage.diagnoses]
    assert [d.call_index for d in usage.diagnoses] == [0, 0, 0, 1, 1, 1]


def test_the_event_payload_carries_a_scope_not_the_key(emu: Emulator) -> None:
    payload = make_glm(emu, api_key="sk-acme-0123456789").to_payload()
    assert len(payload["credential_scope"]) == 16 and "sk-acme" not in str(payload)
