"""`CacheDiagnostics` keeps bounded state, and never merges tenants into one conversation."""

from __future__ import annotations

import math
import threading

import pytest

from cache_integrations import ConfigurationError
from cache_integrations.diagnostics import DEFAULT_MAX_AGE, DEFAULT_MAX_CONVERSATIONS, CacheDiagnostics, Diagnosis
from cache_integrations.messages import Message
from cache_integrations.testing import FakeClock
from cache_integrations.usage import Usage

COMMON = "You are the support assistant of ACME Corp. Answer politely and cite the handbook. " * 12


def _diag(clock: FakeClock, **kwargs: object) -> CacheDiagnostics:
    return CacheDiagnostics(clock=clock.time, warn=False, **kwargs)  # type: ignore[arg-type]


def _call(
    diag: CacheDiagnostics,
    system: str,
    question: str = "How do I reset my password?",
    *,
    session: str | None = None,
    scope: str | None = None,
) -> Diagnosis:
    messages = [Message("system", system), Message("user", question)]
    tokens = len(system + question) // 4
    usage = Usage(input_tokens=tokens, cache_read_tokens=tokens)  # the provider served all it could
    return diag.observe(
        model="glm-4.7", messages=messages, usage=usage, provider="zhipuai", session=session, scope=scope
    )


def test_ten_thousand_sessions_stay_within_the_cap() -> None:
    clock = FakeClock()
    diag = _diag(clock)
    for n in range(10_500):
        _call(diag, f"Tenant {n} rules.", session=f"session-{n}")
        clock.advance(0.01)
    assert diag.tracked_conversations <= DEFAULT_MAX_CONVERSATIONS
    assert diag.tracked_sessions <= DEFAULT_MAX_CONVERSATIONS
    # Recent sessions are still diagnosed against their own history...
    same = _call(diag, "Tenant 10499 rules.", session="session-10499")
    assert (same.conversation, same.call_index, same.cause) == ("session-10499", 1, None)
    changed = _call(diag, "Tenant 10498 rules, amended.", session="session-10498")
    assert (changed.conversation, changed.call_index, changed.cause) == ("session-10498", 1, "system_prompt_changed")
    # ...and the least recently active ones were forgotten: they start over.
    old = _call(diag, "Tenant 0 rules.", session="session-0")
    assert (old.call_index, old.detail) == (0, "first call of its conversation")
    assert len(diag.diagnoses) <= 10 * diag.keep_requests


def test_conversations_without_session_ids_are_bounded_too() -> None:
    clock = FakeClock()
    diag = _diag(clock, max_conversations=100)
    for n in range(3_000):
        _call(diag, f"Bot {n}: a brief of its own.", f"Question {n}?")
    assert diag.tracked_conversations == 100


def test_idle_conversations_are_forgotten_after_max_age_on_the_injected_clock() -> None:
    clock = FakeClock()
    diag = _diag(clock)
    _call(diag, COMMON, session="idle")
    clock.advance(60)
    _call(diag, COMMON + "Other.", session="busy")
    clock.advance(DEFAULT_MAX_AGE - 30)  # "idle" is now older than max_age, "busy" is not
    again = _call(diag, COMMON + "Other.", session="busy")
    assert (again.call_index, again.cause) == (1, None)
    assert diag.tracked_conversations == 1
    back = _call(diag, COMMON, session="idle")
    assert (back.call_index, back.detail) == (0, "first call of its conversation")


def test_the_cap_holds_under_threads() -> None:
    clock = FakeClock()
    diag = _diag(clock, max_conversations=50)

    def work(t: int) -> None:
        for n in range(500):
            _call(diag, f"Thread {t} tenant {n}.", session=f"{t}-{n}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert diag.tracked_conversations == 50 and diag.tracked_sessions == 50


def test_tenants_with_their_own_session_ids_never_merge() -> None:
    diag = _diag(FakeClock())
    for tenant in ("a", "b", "c"):
        _call(diag, COMMON + f"Tenant {tenant} rules.", session=f"tenant-{tenant}")
    for tenant in ("a", "b", "c"):
        d = _call(diag, COMMON + f"Tenant {tenant} rules.", session=f"tenant-{tenant}")
        assert (d.conversation, d.call_index, d.cause) == (f"tenant-{tenant}", 1, None)
    assert not [d for d in diag.diagnoses if d.cause == "system_prompt_changed"]


def test_a_session_named_like_an_automatic_id_is_its_own_conversation() -> None:
    diag = _diag(FakeClock())
    first = _call(diag, COMMON + "Tenant A rules.", session="c1")
    # a call without a session id, sharing the long start: it is not part of session "c1"
    other = _call(diag, COMMON + "Tenant B rules.")
    again = _call(diag, COMMON + "Tenant A rules.", session="c1")
    assert first.conversation == "c1" and other.conversation != "c1"
    assert (other.call_index, other.cause) == (0, None)
    assert (again.conversation, again.call_index, again.cause) == ("c1", 1, None)


def test_a_session_arriving_after_an_automatic_id_of_its_name_gets_its_own_label() -> None:
    diag = _diag(FakeClock())
    auto = _call(diag, COMMON + "Tenant B rules.")  # named c1 automatically
    mine = _call(diag, COMMON + "Tenant A rules.", session=auto.conversation)
    auto_again = _call(diag, COMMON + "Tenant B rules.")
    mine_again = _call(diag, COMMON + "Tenant A rules.", session=auto.conversation)
    assert mine.conversation != auto.conversation and mine.conversation.startswith(f"{auto.conversation}#")
    assert (auto_again.conversation, auto_again.call_index, auto_again.cause) == (auto.conversation, 1, None)
    assert (mine_again.conversation, mine_again.call_index, mine_again.cause) == (mine.conversation, 1, None)


def test_tenants_with_different_credentials_never_merge() -> None:
    diag = _diag(FakeClock())
    a = _call(diag, COMMON + "Tenant A rules.", scope="key-a")
    b = _call(diag, COMMON + "Tenant B rules.", scope="key-b")
    assert a.conversation != b.conversation
    assert (b.call_index, b.cause) == (0, None)
    # the same session id under two credentials is two conversations
    x = _call(diag, COMMON + "Tenant A rules.", session="1", scope="key-a")
    y = _call(diag, COMMON + "Tenant B rules.", session="1", scope="key-b")
    assert x.conversation != y.conversation and (y.call_index, y.cause) == (0, None)
    assert not [d for d in diag.diagnoses if d.cause == "system_prompt_changed"]


def test_an_edited_system_prompt_is_still_diagnosed_within_one_credential() -> None:
    """Lineage by a long common start still finds the conversation of a changed system prompt."""
    diag = _diag(FakeClock())
    _call(diag, COMMON + "Version 1.", scope="key-a")
    d = _call(diag, COMMON + "Version 2.", scope="key-a")
    assert (d.call_index, d.cause) == (1, "system_prompt_changed")


def test_bad_bounds_are_configuration_errors() -> None:
    for kwargs in ({"max_conversations": 0}, {"max_age": math.nan}, {"max_age": 0}):
        with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
            CacheDiagnostics(**kwargs)  # type: ignore[arg-type]
