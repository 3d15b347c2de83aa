"""Which conversation a call belongs to, for the miss diagnostics: bounded and never across tenants.

A conversation is found by the caller's session id (``session_id`` / ``thread_id``) when there is one,
else by lineage. Lineage first looks the request's normalized prefixes up in an index, longest first: each
conversation without a session id is indexed by the fingerprints of its latest request's first message, its
stable prefix and the whole request, so a call that continues, retries or branches a conversation finds it
with a few dictionary lookups, whatever the number of conversations. A request that shares no indexed prefix
(its first message changed, say) falls back to comparing content: the recent conversation whose latest
request the new one shares most content with (or, for an edited first message, a long common start).
Either way only within one *scope*, an opaque id of the call's credential and endpoint, so two tenants that
share a long system prompt are never diagnosed as one conversation.

The book keeps one latest request per conversation and at most a given number of conversations,
dropping the least recently active first and any that stayed idle too long, so its memory is bounded
whatever the traffic (a session id per request, say). Not thread-safe: `CacheDiagnostics` locks it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

__all__ = ["LINEAGE_CHARS", "ConversationBook", "Observed", "Unit", "common_start", "credential_scope"]

LINEAGE_CHARS = 200
"""Characters two first messages must share from the start to belong to one conversation."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One part of a request (model and tools, or a message) as hashes, length and text."""

    exact: str
    normalized: str
    chars: int
    text: str  # kept in memory only (and in the trace only with trace_prompts=True)


@dataclass(frozen=True, slots=True)
class Observed:
    """The latest request of a conversation: all a diagnosis of the next one compares with."""

    model: str
    units: tuple[Unit, ...]
    tool_names: tuple[str, ...]
    stable_units: int
    at: float
    chain: tuple[str, ...] = ()
    """`lineage_chain(units)`: the fingerprint of each normalized prefix (the lineage index's keys)."""

    def index_keys(self) -> tuple[str, ...]:
        """The prefixes a later request finds this one by: its first message, its stable prefix, the whole."""
        chain, n = self.chain, len(self.chain)
        return tuple(chain[k] for k in {1, self.stable_units - 1, n - 1} if 0 < k < n)


@dataclass(slots=True)
class Conversation:
    label: str
    scope: str | None
    session: str | None
    latest: Observed
    calls: int = 0


def common_start(a: str, b: str) -> int:
    """How many characters `a` and `b` share from the start (slices compared in halving steps: a long text
    costs a few memory comparisons, not a Python loop over its characters)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while lo < hi:  # the answer is in [lo, hi]: a[:lo] == b[:lo], and the texts differ before hi + 1
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def credential_scope(client: Any) -> str | None:
    """An opaque id of a provider client's credential and endpoint, to keep tenants apart.

    Derived from the client's ``credential_fingerprint`` (itself a hash) with a second, domain-separated
    hash, so it can travel in invocation parameters and traces without revealing anything about the key.
    """
    fingerprint = getattr(client, "credential_fingerprint", None)
    if not isinstance(fingerprint, str):
        fingerprint = getattr(getattr(client, "client", None), "credential_fingerprint", None)
    if not isinstance(fingerprint, str):
        return None
    return hashlib.sha256(b"cache-integrations/diagnostics-scope/v1\0" + fingerprint.encode()).hexdigest()[:16]


class ConversationBook:
    """Conversations by label, least recently active first, and caller session ids to labels."""

    __slots__ = ("_conversations", "_ids", "_index", "_sessions")

    def __init__(self) -> None:
        self._conversations: OrderedDict[str, Conversation] = OrderedDict()
        self._sessions: dict[tuple[str | None, str], str] = {}
        # (scope, normalized prefix fingerprint) -> the label of the conversation most recently indexed under it
        self._index: dict[tuple[str | None, str], str] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._conversations)

    @property
    def sessions(self) -> int:
        """How many session ids are remembered."""
        return len(self._sessions)

    def find(
        self,
        units: tuple[Unit, ...],
        scope: str | None,
        session: str | None,
        *,
        candidates: int,
        chain: tuple[str, ...] = (),
    ) -> Conversation | None:
        """The conversation a request with `units` (and lineage `chain`) continues: by session id; else by the
        longest indexed prefix; else by content, comparing the newest `candidates` conversations."""
        if session is not None:
            label = self._sessions.get((scope, session))
            return self._conversations.get(label) if label is not None else None
        if chain:
            index, conversations = self._index, self._conversations
            for k in range(len(chain) - 1, 0, -1):  # the longest indexed prefix, sharing a message at least
                label = index.get((scope, chain[k]))
                if label is not None and (found := conversations.get(label)) is not None:
                    return found
        return self._by_content(units, scope, candidates)

    def _by_content(self, units: tuple[Unit, ...], scope: str | None, candidates: int) -> Conversation | None:
        """No indexed prefix: a new call continues a conversation from its latest request. Score only those
        of the same credential without a session id, newest first."""
        recent = list(
            itertools.islice(
                (c for c in reversed(self._conversations.values()) if c.session is None and c.scope == scope),
                candidates,
            )
        )
        mine = {u.normalized: u.chars for u in units}
        best, best_score = None, 0
        for conversation in recent:  # ties go to the most recent conversation
            sent = conversation.latest.units
            score = sum(mine.get(u.normalized, 0) for u in sent[1:])
            score += 1 if sent[0].normalized == units[0].normalized else 0
            if score > best_score:
                best, best_score = conversation, score
        # share at least one message's content (a common system prompt, say) to count as lineage
        if best is not None and best_score > 1:
            return best
        # An edited first message shares no whole unit: fall back to a long common start.
        if len(units) > 1:
            for conversation in recent:
                sent = conversation.latest.units
                if len(sent) > 1 and common_start(units[1].text, sent[1].text) >= LINEAGE_CHARS:
                    return conversation
        return None

    def start(self, scope: str | None, session: str | None, observed: Observed) -> Conversation:
        """A new conversation, labelled by its session id (``<session>#<n>`` if taken) or ``c<n>``."""
        label = session
        while label is None or label in self._conversations:
            n = next(self._ids)
            label = f"c{n}" if session is None else f"{session}#{n}"
        conversation = Conversation(label, scope, session, observed)
        self._conversations[label] = conversation
        if session is not None:
            self._sessions[(scope, session)] = label
        else:
            self._add_to_index(conversation)
        return conversation

    def record(self, conversation: Conversation, observed: Observed, *, cap: int) -> None:
        """`observed` is now the conversation's latest request; keep at most `cap` conversations."""
        if conversation.latest is not observed and conversation.session is None:
            self._drop_from_index(conversation)
            conversation.latest = observed
            self._add_to_index(conversation)
        conversation.latest = observed
        conversation.calls += 1
        self._conversations.move_to_end(conversation.label)
        while len(self._conversations) > cap:
            self._forget(self._conversations.popitem(last=False)[1])

    def forget_idle_since(self, cutoff: float) -> None:
        """Drop conversations whose latest call is older than `cutoff` (they sit at the front)."""
        while self._conversations:
            oldest = next(iter(self._conversations.values()))
            if oldest.latest.at >= cutoff:
                return
            del self._conversations[oldest.label]
            self._forget(oldest)

    def _forget(self, conversation: Conversation) -> None:
        if conversation.session is not None:
            self._sessions.pop((conversation.scope, conversation.session), None)
        else:
            self._drop_from_index(conversation)

    def _add_to_index(self, conversation: Conversation) -> None:
        for key in conversation.latest.index_keys():
            self._index[(conversation.scope, key)] = conversation.label

    def _drop_from_index(self, conversation: Conversation) -> None:
        for key in conversation.latest.index_keys():
            if self._index.get((conversation.scope, key)) == conversation.label:
                del self._index[(conversation.scope, key)]

    @property
    def indexed(self) -> int:
        """How many prefixes the lineage index holds (at most three per conversation)."""
        return len(self._index)
