"""Anthropic's cache diagnostics on the emulator, through the real ``anthropic`` SDK's beta client over HTTP.

platform.claude.com/docs/en/build-with-claude/cache-diagnostics: a request with ``diagnostics.previous_message_id``
(and the ``cache-diagnosis-2026-04-07`` beta) is compared with the named response's request; the answer says
where the prefix first diverged (model, tools, system, messages) or that the id is unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from cache_integrations.testing import Emulator, FakeClock, RunningServer

MODEL = "claude-sonnet-4-6"
BETA = "cache-diagnosis-2026-04-07"
SYSTEM = "Rule: answer from the order record only. " * 150
TOOL = {"name": "lookup", "description": "Look an order up.", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture
def server(emu: Emulator) -> Iterator[RunningServer]:
    with emu.serve() as running:
        yield running


def _client(server: RunningServer, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=key, max_retries=0)


def _ask(client: anthropic.Anthropic, previous: str | None, **overrides: Any) -> Any:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "system": SYSTEM,
        "tools": [TOOL],
        "messages": [{"role": "user", "content": "Where is order 42?"}],
        **overrides,
    }
    return client.beta.messages.create(**body, diagnostics={"previous_message_id": previous}, betas=[BETA])


def _reason(message: Any) -> tuple[str, int | None] | None:
    reason = message.diagnostics.cache_miss_reason if message.diagnostics is not None else None
    return None if reason is None else (reason.type, getattr(reason, "cache_missed_input_tokens", None))


def test_each_divergence_is_named_in_the_caches_order(server: RunningServer) -> None:
    client = _client(server)
    first = _ask(client, None)
    assert first.diagnostics is None  # a first turn: opted in, nothing to compare
    same = _ask(client, first.id)
    assert same.diagnostics is None  # the named request's prefix is fully reused
    grown = _ask(
        client,
        first.id,
        messages=[
            {"role": "user", "content": "Where is order 42?"},
            {"role": "assistant", "content": "On its way."},
            {"role": "user", "content": "When will it arrive?"},
        ],
    )
    assert grown.diagnostics is None  # appending is not a divergence
    total = first.usage.input_tokens + first.usage.cache_creation_input_tokens + first.usage.cache_read_input_tokens
    model = _reason(_ask(client, first.id, model="claude-opus-4-8"))
    assert model is not None and model[0] == "model_changed" and 0 < total - model[1] < 10  # all of it, bar the marker
    tools = _reason(_ask(client, first.id, tools=[{**TOOL, "description": "Find an order."}]))
    assert tools is not None and tools[0] == "tools_changed" and tools[1] == model[1]
    system = _reason(_ask(client, first.id, system="Now: 2026-11-22T09:00:00. " + SYSTEM))
    assert system is not None and system[0] == "system_changed" and 0 < system[1] < tools[1]
    edited = _reason(_ask(client, grown.id, messages=[{"role": "user", "content": "Where is order 43?"}]))
    assert edited is not None and edited[0] == "messages_changed" and edited[1] < system[1]


def test_an_unknown_or_foreign_id_is_not_found(emu: Emulator, server: RunningServer) -> None:
    first = _ask(_client(server), None)
    assert _reason(_ask(_client(server), "msg_01doesnotexist")) == ("previous_message_not_found", None)
    assert _reason(_ask(_client(server, "sk-ant-other-workspace"), first.id)) == ("previous_message_not_found", None)
    assert isinstance(emu.clock, FakeClock)
    emu.clock.advance(25 * 3600)  # fingerprints are kept for a limited time
    assert _reason(_ask(_client(server), first.id)) == ("previous_message_not_found", None)


def test_a_stream_carries_diagnostics_on_message_start(server: RunningServer) -> None:
    client = _client(server)
    first = _ask(client, None)
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "system": "v2 " + SYSTEM, "tools": [TOOL]}
    body["messages"] = [{"role": "user", "content": "Where is order 42?"}]
    with client.beta.messages.stream(**body, diagnostics={"previous_message_id": first.id}, betas=[BETA]) as stream:
        starts = [e.message for e in stream if e.type == "message_start"]
    assert len(starts) == 1 and _reason(starts[0]) is not None
    assert _reason(starts[0])[0] == "system_changed"  # type: ignore[index]


def test_a_pending_comparison_answers_a_null_reason(emu: Emulator, server: RunningServer) -> None:
    client = _client(server)
    first = _ask(client, None)
    emu.anthropic_diagnostics_pending = True
    later = _ask(client, first.id, system="v2 " + SYSTEM)
    assert later.diagnostics is not None and later.diagnostics.cache_miss_reason is None


def test_without_the_beta_or_with_a_bad_value_the_request_is_refused(server: RunningServer) -> None:
    client = _client(server)
    plain = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(anthropic.BadRequestError, match="diagnostics: Extra inputs are not permitted"):
        client.messages.create(**plain, extra_body={"diagnostics": {"previous_message_id": None}})
    with pytest.raises(anthropic.BadRequestError, match="previous_message_id: Input should be a valid string"):
        client.beta.messages.create(**plain, betas=[BETA], extra_body={"diagnostics": {"previous_message_id": 7}})
    answer = client.messages.with_raw_response.create(**plain)
    assert "diagnostics" not in answer.http_response.json()  # not asked: no field
