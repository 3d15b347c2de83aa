"""Why did my cache miss? Prefix-stability diagnostics.

Providers only say *how many* tokens came from cache. The usual reason for a low number is a prefix
the application itself broke: a timestamp in the system prompt, tools reordered, memory inserted
ahead of the history, a sliding window dropping the oldest turns. `CacheDiagnostics` watches the
requests of each conversation and, for every call, reports where its prefix first differs from the
previous request's, what kind of change that is, how many tokens the layout made cacheable, how
many the provider reported, and what the difference cost.

A request is a chain of units: unit 0 is the model and tool definitions, then one unit per message.
Each unit has an exact hash and a *normalized* hash, computed after masking volatile values
(timestamps, dates, times, UUIDs, long hex ids, epoch numbers), which lets a request be matched to
its conversation even when a timestamp broke its prefix. Conversations are keyed by a caller's
session id when given, otherwise by lineage: the recent request the new one shares most content with.
Conversations never merge across credentials (a call's `scope`, derived from its API key and
endpoint) nor across session ids. State is bounded: at most `max_conversations` conversations, each
remembering only its latest request, forgotten after `max_age` seconds without a call.
Prompt text never leaves the process unless `trace_prompts=True`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._conversations import ConversationBook, Observed, Unit, credential_scope
from ._conversations import common_start as _common_start
from ._deferred import settle
from ._units import find_volatile, lineage_chain, message_text, units_of
from .errors import ConfigurationError
from .layout import canonical_json, stable_prefix_length
from .messages import Message, ToolDefinition
from .pricing import PriceBook, default_price_book
from .usage import Usage
from .validation import check_seconds

if TYPE_CHECKING:
    from .server_diagnostics import ProviderMissReason

__all__ = [
    "CAUSES",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_CONVERSATIONS",
    "CacheDiagnostics",
    "Cause",
    "Diagnosis",
    "LintFinding",
    "credential_scope",
    "find_volatile",
    "lint_messages",
]

logger = logging.getLogger("cache_integrations.diagnostics")

Cause = Literal[
    "system_prompt_changed",
    "tools_changed",
    "tools_reordered",
    "model_changed",
    "history_rewritten",
    "history_truncated",
    "volatile_content",
    "below_minimum",
    "ttl_elapsed",
    "provider_side_miss",
]

CAUSES: dict[str, tuple[str, str]] = {
    "system_prompt_changed": (
        "the system prompt changed between calls",
        "keep the system prompt byte-identical; move per-call details into the last user message (a "
        "framework that injects retrieved context into it, like LlamaIndex's ContextChatEngine, needs a "
        "cache-friendly composition: cache_integrations.llama_index.CacheFriendlyContextChatEngine)",
    ),
    "tools_changed": ("the tool definitions changed", "bind the same tools, with the same schemas, on every call"),
    "tools_reordered": (
        "the same tools were sent in a different order",
        "keep cache_friendly_layout on (it orders tools by name) or bind tools in a fixed order",
    ),
    "model_changed": ("the model changed", "a cache belongs to one model: keep the model fixed within a conversation"),
    "history_rewritten": (
        "an earlier message was changed, removed or inserted ahead of the history",
        "append to the history only; put memory or retrieved context in the newest user turn",
    ),
    "history_truncated": (
        "the oldest turns were dropped (a sliding window)",
        "summarize or trim in large, rare steps rather than every turn, so the prefix stays stable between trims",
    ),
    "volatile_content": (
        "a value that changes on every call sits inside the prefix",
        "move the changing value (date, time, id) out of the system prompt into the last user message",
    ),
    "below_minimum": (
        "the stable prefix is below the provider's minimum cacheable size",
        "caching starts at the provider's minimum: put more stable context first or accept no caching",
    ),
    "ttl_elapsed": (
        "the previous call was longer ago than the provider keeps its cache",
        "calls further apart than the cache TTL miss; use an explicit cache with a longer TTL if it pays",
    ),
    "provider_side_miss": (
        "the prefix was stable, but the provider served fewer tokens from cache than it could have",
        "nothing to fix in the prompt: implicit caching is best-effort (load balancing, eviction)",
    ),
}
"""Each cause: what happened, and the fix to suggest."""

# Implicit-cache minimums and lifetimes by provider (configurable): GLM shows no minimum; OpenAI
# caches from 1024 tokens and keeps prefixes for 5-10 minutes; Gemini's implicit minimum is 1024 on
# Flash models (2048-4096 on others). None means unknown: that check is skipped.
DEFAULT_MINIMUMS: dict[str, int] = {"zhipuai": 0, "zai": 0, "openai": 1024, "google": 1024, "deepseek": 0}
DEFAULT_TTLS: dict[str, float] = {"openai": 300.0, "google": 3600.0}

DEFAULT_MAX_CONVERSATIONS = 1024
"""Conversations a `CacheDiagnostics` tracks at once; the least recently active is forgotten first."""
DEFAULT_MAX_AGE = 6 * 3600.0
"""Seconds without a call after which a conversation is forgotten (longer than any provider's cache TTL,
so `ttl_elapsed` is still diagnosed)."""

# -- the static linter --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LintFinding:
    """A volatile value in a part of the prompt that forms the cached prefix."""

    where: str
    kind: str
    offset: int
    value: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}, offset {self.offset}: {self.kind} {self.value!r} in the cached prefix; {self.fix}"


def lint_messages(messages: Sequence[Message], tools: Sequence[ToolDefinition] = ()) -> list[LintFinding]:
    """Volatile values in the tools, the system messages and every turn before the newest question.

    Those parts form the prefix a provider can cache; a value that changes per call there breaks it.
    Values in the newest user turn are fine and not reported.
    """
    findings: list[LintFinding] = []
    fix = CAUSES["volatile_content"][1]
    for tool in tools:
        for kind, offset, value in find_volatile(canonical_json(dict(tool.parameters)) + tool.description):
            findings.append(LintFinding(f"tool {tool.name!r}", kind, offset, value, fix))
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages))
    for i, message in enumerate(messages):
        if i >= last_user and message.role != "system":
            continue
        for kind, offset, value in find_volatile(message_text(message)):
            findings.append(LintFinding(f"messages[{i}] ({message.role})", kind, offset, value, fix))
    return findings


# -- divergence tracking ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What one call's cache usage says about its prefix.

    `message_index` and `char_offset` locate the first difference (the offset is within that
    message's text; `token_offset` counts from the start of the request). `expected_cacheable_tokens`
    is what the layout made cacheable: the tokens of the prefix this request shares with the previous
    one of its conversation. `potential_cacheable_tokens` is what an append-only layout could have
    had (every unit the previous request already sent).
    `lost_tokens` is potential minus reported, attributed to `cause`; token counts are estimated from
    characters, calibrated on the call's reported input tokens.
    """

    conversation: str
    call_index: int
    model: str
    cause: str | None
    message_index: int | None
    char_offset: int | None
    token_offset: int | None
    detail: str
    fix: str
    input_tokens: int
    reported_cached_tokens: int
    expected_cacheable_tokens: int
    potential_cacheable_tokens: int
    lost_tokens: int
    lost_usd: Decimal | None
    prefix_fingerprint: str
    provider_reason: str | None = None
    """The provider's own word on the miss, when it was asked (Anthropic's ``cache_miss_reason.type``, OpenAI's
    ``prompt_cache_diagnostics`` reason; see `cache_integrations.server_diagnostics`)."""
    provider_missed_tokens: int | None = None
    """The provider's estimate of the tokens the break kept from being read, when it gave one."""

    @property
    def efficiency(self) -> float | None:
        """Reported cached tokens over what the layout made cacheable (None when nothing was)."""
        if self.expected_cacheable_tokens <= 0:
            return None
        return min(self.reported_cached_tokens / self.expected_cacheable_tokens, 1.0)

    def to_json(self, prompt: str | None = None) -> dict[str, Any]:
        out = asdict(self)
        out["lost_usd"] = None if self.lost_usd is None else str(self.lost_usd)
        out["efficiency"] = self.efficiency
        if prompt is not None:
            out["prompt"] = prompt
        return out


@dataclass(frozen=True, slots=True)
class _Call:
    model: str
    provider: str | None
    units: tuple[Unit, ...]
    tool_names: tuple[str, ...]
    usage: Usage
    at: float


@dataclass
class _Verdict:
    cause: str | None = None
    detail: str = ""
    message_index: int | None = None
    char_offset: int | None = None
    prefix_chars: int = 0
    expected: int = 0
    potential: int = 0

    def set(self, cause: str, detail: str, message_index: int | None = None, char_offset: int | None = None) -> None:
        self.cause, self.detail, self.message_index, self.char_offset = cause, detail, message_index, char_offset


_MAX_WARNED = 1024  # (cause, model) pairs remembered for warn-once; cleared when full


@dataclass
class CacheDiagnostics:
    """Tracks the prefix of every observed call and explains cache misses.

    `trace` writes one JSON line per call (fingerprints, offsets, usage, the diagnosis; prompt text
    only with `trace_prompts`). `warn` logs one warning per cause and model, not per call.
    `minimums` / `ttls` are implicit-cache rules per provider id.

    Memory is bounded whatever the traffic: at most `max_conversations` conversations are tracked
    (the least recently active is forgotten first), each holding only its latest request, and a
    conversation without a call for `max_age` seconds (on `clock`) is forgotten. A forgotten
    conversation that resumes starts over as a new one ("first call of its conversation").
    `keep_requests` is how many recent conversations a call without a session id is matched against
    (and a tenth of how many diagnoses `diagnoses` keeps).
    """

    trace: str | Path | None = None
    trace_prompts: bool = False
    warn: bool = True
    minimums: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MINIMUMS))
    ttls: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TTLS))
    prices: PriceBook = field(default_factory=default_price_book)
    clock: Callable[[], float] = time.time
    keep_requests: int = 256
    miss_tolerance: float = 0.9
    max_conversations: int = DEFAULT_MAX_CONVERSATIONS
    max_age: float = DEFAULT_MAX_AGE
    _book: ConversationBook = field(default_factory=ConversationBook, init=False, repr=False)
    _warned: set[tuple[str, str]] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _diagnoses: list[Diagnosis] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_conversations, bool) or not isinstance(self.max_conversations, int):
            raise ConfigurationError(f"max_conversations: expected an integer >= 1, got {self.max_conversations!r}")
        if self.max_conversations < 1:
            raise ConfigurationError(f"max_conversations: expected an integer >= 1, got {self.max_conversations!r}")
        check_seconds("max_age", self.max_age)

    @property
    def diagnoses(self) -> list[Diagnosis]:
        """The recent diagnoses, oldest first (waits for those the cache usage handlers still compute)."""
        settle()
        with self._lock:
            return list(self._diagnoses)

    @property
    def tracked_conversations(self) -> int:
        """How many conversations are remembered right now (at most `max_conversations`)."""
        with self._lock:
            return len(self._book)

    @property
    def tracked_sessions(self) -> int:
        """How many caller session ids are remembered right now (at most `max_conversations`)."""
        with self._lock:
            return self._book.sessions

    def observe(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        tools: Sequence[ToolDefinition] = (),
        usage: Usage | None,
        provider: str | None = None,
        session: str | None = None,
        scope: str | None = None,
        provider_reason: ProviderMissReason | None = None,
        at: float | None = None,
    ) -> Diagnosis:
        """Diagnose one finished call (its request as sent, and the usage the provider reported).

        `session` is the caller's conversation id (``session_id`` / ``thread_id`` in run metadata);
        `scope` identifies the credential and endpoint (see `credential_scope`). Calls with different
        scopes or different sessions are never treated as one conversation. `provider_reason` is what the
        provider's own cache diagnostics said (`server_diagnostics.provider_miss_reason`), added to the diagnosis.
        `at` is when the call ended, on `clock` (default: now; a diagnosis made later passes the time it ended).
        """
        units = units_of(model, messages, tools)
        ended = self.clock() if at is None else at
        call = _Call(model, provider, units, tuple(t.name for t in tools), usage or Usage(), ended)
        stable = stable_prefix_length(messages) + 1  # + the model/tools unit
        chain = lineage_chain(units)
        observed = Observed(model, units, call.tool_names, stable, call.at, chain)
        with self._lock:
            book = self._book
            book.forget_idle_since(call.at - self.max_age)
            conversation = book.find(units, scope, session, candidates=self.keep_requests, chain=chain)
            parent = conversation.latest if conversation is not None else None
            if conversation is None:
                conversation = book.start(scope, session, observed)
            index = conversation.calls
            diagnosis = self._diagnose(call, parent, conversation.label, index)
            if provider_reason is not None:
                from .server_diagnostics import merge_provider_reason

                diagnosis = merge_provider_reason(diagnosis, provider_reason, lambda n: self._money(n, model, provider))
            book.record(conversation, observed, cap=self.max_conversations)
            self._diagnoses.append(diagnosis)
            del self._diagnoses[: -10 * self.keep_requests]
        self._report(diagnosis, units, call.at)
        return diagnosis

    # -- diagnosis --------------------------------------------------------------------------------

    def _diagnose(self, call: _Call, parent: Observed | None, conversation: str, index: int) -> Diagnosis:
        units, usage = call.units, call.usage
        # The prompt's own tokens: a call that created an explicit cache also reports the cache's tokens it wrote.
        prompt = usage.input_without_caching
        per_char = prompt / (sum(u.chars for u in units) or 1) if prompt else 0.25
        tokens = [round(u.chars * per_char) for u in units]
        verdict = _Verdict()
        if parent is None:
            verdict.detail = "first call of its conversation"
        else:
            self._judge(call, parent, tokens, verdict)
        # Token counts are estimates: a shortfall within the miss tolerance is rounding, not a loss.
        served_enough = usage.cache_read_tokens >= self.miss_tolerance * verdict.potential
        lost = 0 if not verdict.cause or served_enough else verdict.potential - usage.cache_read_tokens
        token_offset = None
        if verdict.char_offset is not None:
            token_offset = round((verdict.prefix_chars + verdict.char_offset) * per_char)
        return Diagnosis(
            conversation=conversation,
            call_index=index,
            model=call.model,
            cause=verdict.cause,
            message_index=verdict.message_index,
            char_offset=verdict.char_offset,
            token_offset=token_offset,
            detail=verdict.detail,
            fix=CAUSES[verdict.cause][1] if verdict.cause else "",
            input_tokens=usage.input_tokens,
            reported_cached_tokens=usage.cache_read_tokens,
            expected_cacheable_tokens=verdict.expected,
            potential_cacheable_tokens=verdict.potential,
            lost_tokens=lost,
            lost_usd=self._money(lost, call.model, call.provider),
            prefix_fingerprint=units[-1].exact if units else "",
        )

    def _judge(self, call: _Call, parent: Observed, tokens: list[int], verdict: _Verdict) -> None:
        """Fill `verdict` for a call whose conversation has an earlier request."""
        units, sent, usage = call.units, parent.units, call.usage
        limit, matched = min(len(units), len(sent)), 0
        # (units of the same message are the same object: its facts keep it)
        while matched < limit and (units[matched] is sent[matched] or units[matched].exact == sent[matched].exact):
            matched += 1
        verdict.expected = sum(tokens[:matched])
        branched = len(units) < parent.stable_units and not any(
            u.text.startswith("assistant\x1f") for u in units[matched:]
        )
        if branched:  # a new question that reuses only the start of an earlier conversation
            verdict.potential = verdict.expected
            verdict.detail = f"a new branch sharing the first {matched - 1} message(s) of an earlier conversation"
            return
        if matched < min(len(units), parent.stable_units):  # the break is inside the previous prefix
            sent_normalized = {u.normalized for u in sent}
            verdict.potential = sum(t for u, t in zip(units, tokens, strict=True) if u.normalized in sent_normalized)
            verdict.prefix_chars = sum(u.chars for u in units[:matched])
            self._classify(call, parent, matched, verdict)
            return
        verdict.potential = verdict.expected  # the prefix held: the layout lost nothing
        minimum = self.minimums.get(call.provider or "")
        gap = call.at - parent.at
        ttl = self.ttls.get(call.provider or "")
        missed = usage.cache_read_tokens < self.miss_tolerance * verdict.expected
        if minimum and verdict.expected < minimum:
            verdict.set("below_minimum", f"{verdict.expected} cacheable tokens, below the minimum of {minimum}")
        elif ttl is not None and gap > ttl and missed:
            verdict.set("ttl_elapsed", f"{gap:.0f} s since the previous call, longer than the {ttl:.0f} s TTL")
        elif verdict.expected > 0 and missed:
            verdict.set(
                "provider_side_miss",
                f"{verdict.expected} tokens were cacheable, the provider reported {usage.cache_read_tokens}",
            )
        else:
            verdict.detail = "prefix stable"

    def _classify(self, call: _Call, parent: Observed, d: int, verdict: _Verdict) -> None:
        """Name the first differing unit's change: which message, where, and what kind."""
        new, old = call.units[d], parent.units[d]
        first = _common_start(new.text, old.text)
        if d == 0:
            if call.model != parent.model:
                verdict.set("model_changed", f"model {parent.model!r} -> {call.model!r}")
            elif sorted(call.tool_names) == sorted(parent.tool_names) and call.tool_names != parent.tool_names:
                verdict.set("tools_reordered", f"tools {list(parent.tool_names)} -> {list(call.tool_names)}", None, 0)
            else:
                verdict.set("tools_changed", f"tool definitions differ from character {first}", None, first)
            return
        i = d - 1
        role, _, text = new.text.partition("\x1f")
        offset = max(first - len(role) - 1, 0)  # within the message's text
        later_new = [u.exact for u in call.units[d + 1 :]]
        later_old = [u.exact for u in parent.units[d + 1 :]]
        where = "the system prompt" if role == "system" else f"messages[{i}] ({role})"
        if new.normalized == old.normalized:
            found = [v for v in find_volatile(text) if v[1] + len(v[2]) > offset]
            kind, at, value = found[0] if found else ("value", offset, "")
            verdict.set("volatile_content", f"a {kind} ({value!r}) in {where} changes on every call", i, at)
        elif new.exact in later_old:
            dropped = later_old.index(new.exact) + 1
            verdict.set("history_truncated", f"{dropped} message(s) dropped at messages[{i}]", i, 0)
        elif old.exact in later_new:
            inserted = later_new.index(old.exact) + 1
            verdict.set(
                "history_rewritten", f"{inserted} message(s) inserted at messages[{i}], ahead of the history", i, 0
            )
        elif role == "system":
            verdict.set("system_prompt_changed", f"{where} differs from character {offset}", i, offset)
        else:
            verdict.set("history_rewritten", f"{where} differs from character {offset}", i, offset)

    def _money(self, tokens: int, model: str, provider: str | None) -> Decimal | None:
        if tokens <= 0:
            return Decimal(0)
        unit = self.prices.unit_prices(model, (provider,) if provider else ())
        if unit is None:
            return None
        full, cached = unit
        return tokens * (full - cached) / Decimal(1_000_000)

    # -- reporting --------------------------------------------------------------------------------

    def _report(self, diagnosis: Diagnosis, units: tuple[Unit, ...], at: float) -> None:
        if diagnosis.cause and diagnosis.lost_tokens > 0 and self.warn:
            key = (diagnosis.cause, diagnosis.model)
            with self._lock:
                first = key not in self._warned
                if first and len(self._warned) >= _MAX_WARNED:
                    self._warned.clear()
                self._warned.add(key)
            if first:
                where = "" if diagnosis.message_index is None else f" at messages[{diagnosis.message_index}]"
                offset = "" if diagnosis.char_offset is None else f", character {diagnosis.char_offset}"
                logger.warning(
                    "prompt cache miss (%s)%s%s: %s. Fix: %s. (%d tokens lost on this call; reported once per cause)",
                    diagnosis.cause,
                    where,
                    offset,
                    diagnosis.detail,
                    diagnosis.fix,
                    diagnosis.lost_tokens,
                )
        if self.trace is not None:
            prompt = "\n".join(u.text for u in units) if self.trace_prompts else None
            line = json.dumps({"ts": at, **diagnosis.to_json(prompt)}, ensure_ascii=False)
            with self._lock, open(self.trace, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
