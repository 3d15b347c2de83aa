"""The providers' own cache diagnostics: ask for them, remember the ids they need, read what they say.

Two providers now say, on request, why a call could not reuse the prefix of an earlier one:

- **Anthropic** (platform.claude.com/docs/en/build-with-claude/cache-diagnostics, beta header
  ``cache-diagnosis-2026-04-07``): the request carries ``diagnostics: {"previous_message_id": <id> | null}``
  (null opts in on a conversation's first turn); the API keeps a hash-only fingerprint of every such request,
  keyed by its response ``id``, and answers ``diagnostics`` on the response (on ``message_start`` in a
  stream): absent without opt-in, ``null`` on a first turn or when nothing diverged,
  ``{"cache_miss_reason": null}`` while the comparison is still running (inconclusive), else
  ``{"cache_miss_reason": {"type": ..., "cache_missed_input_tokens": N}}`` with ``type`` one of
  ``model_changed``, ``system_changed``, ``tools_changed``, ``messages_changed`` (those four carry the token
  estimate, "a magnitude indicator rather than a billing number"), ``previous_message_not_found`` and
  ``unavailable``. Claude API only (not Bedrock or Vertex AI).
- **OpenAI** (developers.openai.com/api/docs/guides/prompt-caching/diagnostics, Responses API, GPT-5.6 and
  later): the request sets ``prompt_cache_options.comparison_response_id``; the response carries
  ``prompt_cache_diagnostics``, tagged by ``type`` (``cache_miss`` with ``reason`` and
  ``cache_missed_tokens``, ``cache_hit``, ``comparison_response_not_found``, ``unavailable``).

`provider_miss_reason` reads either from wherever a framework left the response's fields (LangChain's
``response_metadata``, a LlamaIndex response's ``raw``); `ResponseChain` remembers the latest response id of
each conversation (by session id, else by lineage, the way `CacheDiagnostics` finds conversations) so an
adapter can name it on the next call; `merge_provider_reason` puts the provider's word into a `Diagnosis`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from ._conversations import ConversationBook, Observed
from ._units import lineage_chain, units_of
from .diagnostics import CAUSES, Diagnosis
from .layout import stable_prefix_length
from .messages import Message, ToolDefinition
from .usage import as_mapping

__all__ = [
    "ANTHROPIC_DIAGNOSTICS_BETA",
    "ProviderMissReason",
    "ResponseChain",
    "merge_provider_reason",
    "provider_miss_reason",
]

ANTHROPIC_DIAGNOSTICS_BETA = "cache-diagnosis-2026-04-07"
"""The ``anthropic-beta`` value that turns Anthropic's cache diagnostics on (send it on every turn)."""

# A provider's reason, as the cause our own diagnosis uses for the same break.
_ANTHROPIC_CAUSES = {
    "model_changed": "model_changed",
    "system_changed": "system_prompt_changed",
    "tools_changed": "tools_changed",
    "messages_changed": "history_rewritten",
}
_PROVIDER_NAMES = {"anthropic": "Anthropic", "openai": "OpenAI"}


@dataclass(frozen=True, slots=True)
class ProviderMissReason:
    """What a provider's own diagnostics said about a call's prefix, compared with an earlier response.

    `reason` is the provider's word (``system_changed``, ``previous_message_not_found``, an OpenAI
    ``cache_miss`` reason ...); `missed_tokens` its estimate of the tokens that could have been read.
    """

    provider: str
    reason: str
    missed_tokens: int | None = None

    @property
    def cause(self) -> str | None:
        """The `Diagnosis` cause naming the same break, or None (not found, unavailable, unknown)."""
        if self.provider == "anthropic":
            return _ANTHROPIC_CAUSES.get(self.reason)
        word = self.reason.lower()  # OpenAI's reasons: matched by what they name
        for needle, cause in (
            ("model", "model_changed"),
            ("tool", "tools_changed"),
            ("instruction", "system_prompt_changed"),
            ("system", "system_prompt_changed"),
            ("input", "history_rewritten"),
            ("message", "history_rewritten"),
        ):
            if needle in word:
                return cause
        return None

    def describe(self) -> str:
        name = _PROVIDER_NAMES.get(self.provider, self.provider)
        tokens = f", ~{self.missed_tokens} tokens" if self.missed_tokens is not None else ""
        return f"{name}'s cache diagnostics: {self.reason}{tokens}"


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if value >= 0 else None


def _anthropic(value: Any) -> ProviderMissReason | None:
    diagnostics = as_mapping(value)
    if not diagnostics:
        return None  # absent, or null: a first turn, or nothing diverged
    reason = as_mapping(diagnostics.get("cache_miss_reason"))
    if not reason or not isinstance(reason.get("type"), str):
        return None  # still being compared: inconclusive
    return ProviderMissReason("anthropic", reason["type"], _count(reason.get("cache_missed_input_tokens")))


def _openai(value: Any) -> ProviderMissReason | None:
    diagnostics = as_mapping(value)
    if not diagnostics or not isinstance(diagnostics.get("type"), str):
        return None
    kind = diagnostics["type"]
    if kind == "cache_hit":
        return None
    if kind == "cache_miss":
        reason = diagnostics.get("reason")
        reason_map = as_mapping(reason)
        if reason_map is not None:
            reason = reason_map.get("type")
        return ProviderMissReason("openai", str(reason or "cache_miss"), _count(diagnostics.get("cache_missed_tokens")))
    return ProviderMissReason("openai", kind)


def provider_miss_reason(fields: Any) -> ProviderMissReason | None:
    """The provider's own miss reason in a response's fields (a dict, or an SDK object), if it gave one.

    Reads Anthropic's ``diagnostics`` and OpenAI's ``prompt_cache_diagnostics``; None when the call did not
    ask, nothing diverged, the comparison is still running, or the provider reported a hit. Cheap on
    responses without them (two lookups; an SDK object is not dumped).
    """
    if fields is None:
        return None
    if isinstance(fields, Mapping):
        openai, anthropic = fields.get("prompt_cache_diagnostics"), fields.get("diagnostics")
    else:
        openai = getattr(fields, "prompt_cache_diagnostics", None)
        anthropic = getattr(fields, "diagnostics", None)
    if openai is not None:
        return _openai(openai)
    return _anthropic(anthropic) if anthropic is not None else None


def merge_provider_reason(
    diagnosis: Diagnosis, reason: ProviderMissReason | None, money: Callable[[int], Decimal | None]
) -> Diagnosis:
    """`diagnosis` with the provider's word added.

    The provider's reason always goes into `provider_reason` and the detail. Where our own comparison named
    no cause, or only a provider-side miss, and the provider names a break (a difference the adapter's view of
    the request could not see: a setting, a serialization), the break becomes the cause; our own, more
    precise cause (a timestamp at character 14) is kept otherwise. `money` prices lost tokens.
    """
    if reason is None:
        return diagnosis
    detail = f"{diagnosis.detail}; {reason.describe()}" if diagnosis.detail else reason.describe()
    out = replace(diagnosis, provider_reason=reason.reason, provider_missed_tokens=reason.missed_tokens, detail=detail)
    cause = reason.cause
    if cause is None or diagnosis.cause not in (None, "provider_side_miss"):
        return out
    lost = diagnosis.lost_tokens
    if diagnosis.cause is None:
        estimate = reason.missed_tokens if reason.missed_tokens is not None else diagnosis.potential_cacheable_tokens
        lost = max(estimate - diagnosis.reported_cached_tokens, 0)
    return replace(out, cause=cause, fix=CAUSES[cause][1], lost_tokens=lost, lost_usd=money(lost))


@dataclass(frozen=True, slots=True)
class _Answered(Observed):
    """A conversation's latest request and the id the provider gave its response (None: unknown)."""

    response_id: str | None = None


class ResponseChain:
    """The latest response id of each conversation, to name as the comparison base of the next call.

    A call belongs to a conversation by its session id when it has one, else by lineage (the recent
    conversation whose latest request it shares most content with, volatile values masked), as
    `CacheDiagnostics` decides. Bounded: at most `max_conversations`, each forgotten after `max_age` seconds
    without a call. Only hashes of the prompt are kept. Thread-safe.
    """

    def __init__(
        self,
        *,
        max_conversations: int = 1024,
        max_age: float = 6 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._book = ConversationBook()
        self._cap = max_conversations
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()

    def previous(
        self, model: str, messages: Sequence[Message], tools: Sequence[ToolDefinition], session: str | None
    ) -> str | None:
        """The response id of the latest call of this call's conversation (None: a first turn, or unknown)."""
        units = units_of(model, messages, tools)
        chain = lineage_chain(units)
        with self._lock:
            self._book.forget_idle_since(self._clock() - self._max_age)
            conversation = self._book.find(units, None, session, candidates=256, chain=chain)
        latest = conversation.latest if conversation is not None else None
        return latest.response_id if isinstance(latest, _Answered) else None

    def record(
        self,
        model: str,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition],
        session: str | None,
        response_id: str | None,
    ) -> None:
        """This call's response id is now its conversation's latest (None: the next call opts in afresh)."""
        units = units_of(model, messages, tools)
        chain = lineage_chain(units)
        observed = _Answered(
            model,
            units,
            tuple(t.name for t in tools),
            stable_prefix_length(messages) + 1,
            self._clock(),
            chain,
            response_id=response_id,
        )
        with self._lock:
            conversation = self._book.find(units, None, session, candidates=256, chain=chain)
            if conversation is None:
                conversation = self._book.start(None, session, observed)
            self._book.record(conversation, observed, cap=self._cap)

    def __len__(self) -> int:
        with self._lock:
            return len(self._book)
