"""Anthropic prompt caching: where to put at most four `cache_control` breakpoints, and with which TTL.

Facts (platform.claude.com/docs/en/build-with-claude/prompt-caching, read 2026-11; research/round2.md):

- the prefix is tools, then system, then messages; a breakpoint caches everything before it;
- at most 4 breakpoints per request, the top-level automatic `cache_control` included;
- on each breakpoint the API looks back at most 20 content blocks for an earlier written prefix, so a turn
  that adds more than 20 blocks (parallel tool calls and their results) misses unless a breakpoint also sits
  where the previous request ended;
- below the model's minimum cacheable length a breakpoint is silently not cached: it buys nothing;
- reads cost 0.1x the input price, writes 1.25x (5-minute TTL) or 2x (1-hour TTL); a read refreshes the TTL;
- a 1-hour breakpoint may not come after a 5-minute one.

So the strategy marks, within the budget the caller's own markers leave: the end of the system prompt (with
the tools, reused across conversations), the end of the request (written now, read by the next turn), and
the previous request's end when more than 20 blocks were added since. The TTL is 1 hour only where calls
sharing a breakpoint's prefix come more than 5 minutes apart (but within the hour), where a 5-minute entry
would be rewritten on every call; a conversation's new end, never seen before, takes the gap since the
conversation's previous request. Markers the caller placed count toward the 4 (`Message.cache_point`,
`CallContext.caller_markers`), and `fit_caller_ttls` keeps our TTLs valid next to theirs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigurationError
from ..layout import canonical_json, layout_order, tool_order
from ..messages import ChatRequest, Message, TextPart
from ..usage import Usage
from .base import Breakpoint, CachePlan, CallContext, TokenEstimator, message_chars

__all__ = [
    "ANTHROPIC_MIN_CACHEABLE_TOKENS",
    "AnthropicBreakpointStrategy",
    "anthropic_min_tokens",
    "breakpoint_position",
    "cache_control_of",
    "content_blocks",
    "fit_caller_ttls",
    "within_budget",
]

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
FIVE_MINUTES = 300.0
ONE_HOUR = 3600.0

ANTHROPIC_MIN_CACHEABLE_TOKENS: tuple[tuple[str, int], ...] = (
    # Minimum cacheable prompt length per model family (platform.claude.com prompt-caching page, "Cache
    # limitations"; research/round2.md). First matching prefix wins, so specific names come first.
    ("claude-opus-5", 512),
    ("claude-opus-4-8", 1024),
    ("claude-opus-4-7", 2048),
    ("claude-opus-4-6", 4096),
    ("claude-opus-4-5", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-opus-4", 1024),
    ("claude-sonnet-4", 1024),
    ("claude-sonnet-5", 1024),
    ("claude-3-7-sonnet", 1024),
    ("claude-3-5-sonnet", 1024),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)
_DEFAULT_MIN = 1024


def anthropic_min_tokens(model: str) -> int:
    """The documented minimum cacheable length for `model` (1024 for a model the table does not know)."""
    name = model.lower().removeprefix("anthropic/").removeprefix("us.anthropic.")
    return next((n for prefix, n in ANTHROPIC_MIN_CACHEABLE_TOKENS if name.startswith(prefix)), _DEFAULT_MIN)


def content_blocks(message: Message) -> int:
    """Content blocks a message becomes on Anthropic's wire: text and media parts, tool_use per call,
    one tool_result for a tool message (the unit the 20-block lookback counts)."""
    if message.role == "tool":
        return 1
    if isinstance(message.content, str):
        blocks = 1 if message.content else 0
    else:
        blocks = sum(1 for p in message.content if not isinstance(p, TextPart) or p.text)
    return max(blocks + len(message.tool_calls), 1)


def _message_digest(message: Message) -> bytes:
    content = message.content if isinstance(message.content, str) else [repr(p) for p in message.content]
    calls = [(c.id, c.name, dict(c.arguments)) for c in message.tool_calls]
    return canonical_json([message.role, content, calls, message.tool_call_id]).encode()


def _chain(request: ChatRequest) -> list[str]:
    """chain[i]: fingerprint of tools and the first i messages (laid out)."""
    h = hashlib.sha256(canonical_json([[t.name, t.description, dict(t.parameters)] for t in request.tools]).encode())
    out = [h.hexdigest()]
    for message in request.messages:
        h.update(b"\x1e" + _message_digest(message))
        out.append(h.copy().hexdigest())
    return out


@dataclass
class _Seen:
    at: float
    gap: float | None = None


class _Recency:
    """When each prefix was last sent and the gap before that, bounded (least recently used dropped)."""

    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[str, _Seen] = OrderedDict()
        self._capacity = capacity

    def touch(self, key: str, now: float) -> None:
        seen = self._items.pop(key, None)
        self._items[key] = _Seen(now, None if seen is None else now - seen.at)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def get(self, key: str) -> _Seen | None:
        return self._items.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


TTLChoice = Literal["auto", "5m", "1h"]


class AnthropicBreakpointStrategy:
    """Places Anthropic `cache_control` breakpoints; learns request ends and reuse gaps from what it sent.

    `ttl`: ``"auto"`` (default) picks 1 hour per breakpoint when its prefix is reused more than 5 minutes
    but less than an hour apart, else 5 minutes; ``"5m"`` / ``"1h"`` fix it. `min_tokens` overrides the
    per-model minimum (a model name -> tokens mapping). `clock` is injectable for tests. Thread-safe;
    remembers at most `memory` request ends and prefixes.
    """

    def __init__(
        self,
        *,
        ttl: TTLChoice = "auto",
        min_tokens: Mapping[str, int] | None = None,
        estimator: TokenEstimator | None = None,
        clock: Callable[[], float] = time.monotonic,
        memory: int = 10_000,
    ) -> None:
        if ttl not in ("auto", "5m", "1h"):
            raise ConfigurationError(f"ttl: {ttl!r} is not one of ['auto', '5m', '1h']")
        if memory < 1:
            raise ConfigurationError(f"memory: must be at least 1, got {memory!r}")
        self._ttl = ttl
        self._min_tokens = dict(min_tokens or {})
        self.estimator = estimator or TokenEstimator()
        self._clock = clock
        self._ends = _Recency(memory)  # fingerprints of previous requests' ends
        self._prefixes = _Recency(memory)  # fingerprints of marked prefixes, for the reuse gap
        self._learned_min: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- what it knows -------------------------------------------------------------------------------

    def min_tokens(self, model: str) -> int:
        if model in self._min_tokens:
            return self._min_tokens[model]
        with self._lock:
            return self._learned_min.get(model, anthropic_min_tokens(model))

    def _ttl_for(self, prefix: str, turn_gap: float | None = None) -> Literal["5m", "1h"]:
        """1 hour when this prefix (or, for a conversation's new end, the conversation: `turn_gap`, the time
        since its previous request) comes back more than 5 minutes but within the hour after its last use."""
        if self._ttl != "auto":
            return self._ttl
        seen = self._prefixes.get(prefix)
        if seen is None:
            if turn_gap is None:
                return "5m"
            return "1h" if FIVE_MINUTES < turn_gap <= ONE_HOUR else "5m"
        since = self._clock() - seen.at
        gap = seen.gap if seen.gap is not None else since
        return "1h" if FIVE_MINUTES < max(gap, since) <= ONE_HOUR else "5m"

    # -- planning ------------------------------------------------------------------------------------

    def plan(self, request: ChatRequest, context: CallContext) -> CachePlan:
        order = layout_order(request.messages)
        tools_order = tool_order(request.tools)
        laid = ChatRequest(
            request.model,
            tuple(request.messages[i] for i in order),
            tuple(request.tools[i] for i in tools_order),
        )
        chain = _chain(laid)
        messages = laid.messages
        minimum = self.min_tokens(context.model)
        # cumulative token estimates: tokens[i] covers the tools and the first i messages
        chars = sum(len(t.name) + len(t.description) + len(canonical_json(dict(t.parameters))) for t in laid.tools)
        tokens = [self.estimator.tokens(context.model, chars)]
        for m in messages:
            chars += message_chars(m)
            tokens.append(self.estimator.tokens(context.model, chars))
        budget = MAX_BREAKPOINTS - sum(1 for m in messages if m.cache_point) - context.caller_markers
        notes: list[str] = []
        chosen: dict[int, Literal["tools", "system", "message"]] = {}  # prefix length (messages) -> kind

        with self._lock:
            last = len(messages)
            system_end = next((i for i, m in enumerate(messages) if m.role != "system"), last)
            previous = next((i for i in range(last - 1, 0, -1) if chain[i] in self._ends), None)

            def want(length: int, kind: Literal["tools", "system", "message"], why: str) -> None:
                if len(chosen) >= budget or length in chosen:
                    return
                if tokens[length] < minimum:
                    notes.append(f"{why}: ~{tokens[length]} tokens, below the {minimum}-token minimum")
                    return
                if length > 0 and messages[length - 1].cache_point:
                    return  # the caller already marks it
                chosen[length] = kind
                notes.append(why)

            # 1. The request's end: written now, read by the next turn (and by this one on a repeat).
            if last > system_end:
                want(last, "message", "end of the request")
            # 2. The previous request's end, when this turn added more than the lookback can bridge.
            if previous is not None and previous > system_end:
                added = sum(content_blocks(m) for m in messages[previous:])
                if added > LOOKBACK_BLOCKS - 1:
                    want(previous, "message", f"previous request's end ({added} blocks since)")
            # 3. The system prompt with the tools: shared by every conversation.
            if system_end > 0:
                want(system_end, "system", "end of the system prompt")
            elif laid.tools:
                want(0, "tools", "end of the tools")
            # A conversation's new prefixes were never seen: the time since its previous request predicts
            # when the next one comes (a human answering every 10 minutes outlives a 5-minute entry).
            seen_end = self._ends.get(chain[previous]) if previous is not None else None
            turn_gap = self._clock() - seen_end.at if seen_end is not None else None
            ttls = {
                length: self._ttl_for(chain[length], turn_gap if length > system_end else None) for length in chosen
            }

        breakpoints = _ordered_ttls(chosen, ttls)
        return CachePlan(
            order=order,
            tool_order=tools_order,
            breakpoints=breakpoints,
            notes=tuple(notes),
        )

    def observe(self, request: ChatRequest, context: CallContext, plan: CachePlan, usage: Usage | None) -> None:
        laid = ChatRequest(
            request.model,
            tuple(request.messages[i] for i in plan.order) if plan.order else request.messages,
            tuple(request.tools[i] for i in plan.tool_order) if plan.tool_order else request.tools,
        )
        chain = _chain(laid)
        now = self._clock()
        with self._lock:
            self._ends.touch(chain[-1], now)
            for bp in plan.breakpoints:
                self._prefixes.touch(chain[_length(bp, laid.messages)], now)
            if usage is not None and plan.breakpoints and not usage.cache_read_tokens and not usage.cache_write_tokens:
                # Breakpoints placed, nothing written or read: the prefix was below the real minimum (our
                # estimate was high). Require more next time, up to what this request really held.
                known = self._learned_min.get(context.model, anthropic_min_tokens(context.model))
                if context.model not in self._min_tokens:
                    self._learned_min[context.model] = max(usage.input_tokens, known) + 1


def _length(bp: Breakpoint, messages: Sequence[Message]) -> int:
    """The prefix length (in messages) a breakpoint closes."""
    if bp.where == "tools":
        return 0
    return (bp.index or 0) + 1


def _ordered_ttls(
    chosen: Mapping[int, Literal["tools", "system", "message"]], ttls: Mapping[int, Literal["5m", "1h"]]
) -> tuple[Breakpoint, ...]:
    """Breakpoints in prefix order; a 1-hour breakpoint may not follow a 5-minute one, so any breakpoint
    before a 1-hour one is 1 hour too."""
    lengths = sorted(chosen)
    out: list[Breakpoint] = []
    later_hour = False
    for length in reversed(lengths):
        ttl = ttls[length]
        if later_hour:
            ttl = "1h"
        later_hour = later_hour or ttl == "1h"
        kind = chosen[length]
        out.append(Breakpoint(kind, None if kind == "tools" else length - 1, ttl))
    return tuple(reversed(out))


Ttl = Literal["5m", "1h"]


def cache_control_of(bp: Breakpoint) -> dict[str, str]:
    """The `cache_control` value a breakpoint becomes on Anthropic's wire."""
    return {"type": "ephemeral", "ttl": bp.ttl}


def breakpoint_position(bp: Breakpoint) -> int:
    """Where a breakpoint sits in prefix order: -1 for the tools, else its (laid-out) message index."""
    return -1 if bp.where == "tools" else (bp.index or 0)


def fit_caller_ttls(breakpoints: Sequence[Breakpoint], caller: Mapping[int, str]) -> tuple[Breakpoint, ...]:
    """`breakpoints` with TTLs that keep the request valid next to the caller's own markers.

    `caller` maps each caller marker's position (`breakpoint_position` coordinates: -1 tools, else the laid-out
    message index) to its TTL. A 1-hour breakpoint may not come after a 5-minute one (a 400), so a breakpoint
    before a caller's 1-hour marker becomes 1 hour, and one after a caller's 5-minute marker 5 minutes.
    """
    if not caller:
        return tuple(breakpoints)
    hours = [p for p, ttl in caller.items() if ttl == "1h"]
    fives = [p for p, ttl in caller.items() if ttl != "1h"]
    out: list[Breakpoint] = []
    for bp in breakpoints:
        at = breakpoint_position(bp)
        ttl: Ttl = bp.ttl
        if any(p > at for p in hours):
            ttl = "1h"
        elif any(p < at for p in fives):
            ttl = "5m"
        out.append(bp if ttl == bp.ttl else Breakpoint(bp.where, bp.index, ttl))
    return tuple(out)


def within_budget(breakpoints: Sequence[Breakpoint], used: int) -> tuple[Breakpoint, ...]:
    """The breakpoints that fit next to `used` markers of the caller's (4 in all), by the strategy's priority:
    the latest first (the request's end, then the previous request's end), the system prompt or tools last."""
    room = max(MAX_BREAKPOINTS - used, 0)
    if len(breakpoints) <= room:
        return tuple(breakpoints)
    kept = sorted(breakpoints, key=breakpoint_position, reverse=True)[:room]
    return tuple(sorted(kept, key=breakpoint_position))
