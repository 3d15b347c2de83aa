"""Anthropic prompt caching as the Messages API applies it: breakpoints, prefix entries, lookback, TTL.

Sources (read 2026-11-30):

* platform.claude.com/docs/en/build-with-claude/prompt-caching ("Prompt caching": "How automatic
  prefix checking works", "Automatic caching > Edge cases", "Cache limitations", "What invalidates the
  cache", "Mixing different TTLs"), also summarised in Anthropic's skill file anthropics/skills
  ``skills/claude-api/shared/prompt-caching.md``.
* Error texts from real API answers quoted in public issues (each cited where it is used).

The model, in the order a request is processed:

1. The request is flattened into *blocks* in prefix order ``tools`` -> ``system`` -> ``messages``: one
   block per tool definition, per system block and per message content block (string content is one
   text block). Each block carries a chained digest of everything up to and including it, computed on
   the JSON as received with every ``cache_control`` removed (moving a marker is not an invalidator,
   reordering keys is). ``tool_choice``, ``thinking`` and ``output_config.effort`` are folded in where
   the messages start and ``speed`` where the system starts: the docs' invalidation table says changing
   them invalidates only those tiers and what follows.
2. Breakpoints are the blocks carrying ``cache_control`` plus, with a top-level ``cache_control``
   (automatic caching), the last block that may carry one. At most 4 in all (the automatic one counts),
   and a ``ttl="1h"`` breakpoint may not follow a ``ttl="5m"`` one (400s with the real texts).
3. Reads: each breakpoint checks "at most 20 positions per breakpoint, counting the breakpoint itself as
   the first" for an entry an earlier request *wrote at a breakpoint* ("Cache writes happen only at your
   breakpoint"); "a run of consecutive ``tool_use`` blocks counts as one position, and so does a run of
   consecutive ``tool_result`` blocks". The furthest hit over all breakpoints is
   ``cache_read_input_tokens`` (position A of "Mixing different TTLs").
4. Writes: every breakpoint past that hit whose prefix reaches the model's minimum cacheable length is
   written; ``cache_creation_input_tokens`` is the span from A to the last written breakpoint (C), the
   part up to the last 1h breakpoint (B) billed as 1h and the rest as 5m. Below the minimum nothing is
   written and nothing fails ("no error is returned"; both counters 0).
5. An entry lives 5 minutes or 1 hour from its last use (a read refreshes it at no cost) and is readable
   as soon as the writing request is answered (the docs: once the first response begins), which in the
   emulator is immediately, even for a stream that is later cut.

Entries are per API key (workspace) and model ("caches are model-scoped").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .tokenizer import Tokenizer

__all__ = [
    "LOOKBACK_BLOCKS",
    "MAX_BREAKPOINTS",
    "Block",
    "Breakpoint",
    "BreakpointCache",
    "CacheOutcome",
    "InvalidCacheControl",
    "flatten",
    "min_cacheable_tokens",
    "plan_breakpoints",
]

Ttl = Literal["5m", "1h"]
TTL_SECONDS: Mapping[str, float] = {"5m": 300.0, "1h": 3600.0}
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
GENERATION_MARKER = "<|assistant|>"

# Minimum cacheable prompt length per model (tokens up to the breakpoint). Source: the docs' table as
# copied in anthropics/skills shared/prompt-caching.md (2026): 512 Opus 5 / Fable 5.1 / Mythos 5.1;
# 1024 Opus 4.8, Sonnet 5, Sonnet 4.6, Sonnet 4.5, Opus 4.1, Opus 4, Sonnet 4; 2048 Opus 4.7, Mythos
# Preview, Haiku 3.5; 4096 Opus 4.6, Opus 4.5, Haiku 4.5. Older docs (docs.anthropic.com, 2024-25):
# 1024 Sonnet 3.7 / 3.5 and Opus 3, 2048 Haiku 3. orq.ai lists Sonnet 4.6 at 2048; we follow Anthropic.
# Keys are (family, version); the first matching row wins, so specific versions come first.
_MIN_TOKENS: tuple[tuple[str, str, int], ...] = (
    ("opus", "5", 512),
    ("fable", "5", 512),
    ("mythos", "5", 512),
    ("mythos", "preview", 2048),
    ("opus", "4.8", 1024),
    ("opus", "4.7", 2048),
    ("opus", "4.6", 4096),
    ("opus", "4.5", 4096),
    ("opus", "4.1", 1024),
    ("opus", "4", 1024),
    ("opus", "3", 1024),
    ("sonnet", "5", 1024),
    ("sonnet", "4", 1024),  # Sonnet 4, 4.5 and 4.6
    ("sonnet", "3", 1024),  # Sonnet 3.5 and 3.7
    ("haiku", "4.5", 4096),
    ("haiku", "3", 2048),  # Haiku 3 and 3.5
)
DEFAULT_MIN_TOKENS = 1024
"""Unknown model names: 1024, the minimum most current models document."""

_NEW_NAME = re.compile(r"claude-(opus|sonnet|haiku|fable|mythos)-(\d+)(?:[-.](\d{1,2}))?(?!\d)")
_OLD_NAME = re.compile(r"claude-(\d+)(?:[-.](\d))?-(opus|sonnet|haiku)")
_MYTHOS_PREVIEW = re.compile(r"claude-mythos-preview")


def min_cacheable_tokens(model: str) -> int:
    """The documented minimum cacheable prefix for ``model`` (``DEFAULT_MIN_TOKENS`` if unknown).

    Understands ``claude-sonnet-4-5``, ``claude-sonnet-4-5-20250929``, ``claude-3-5-haiku-20241022``
    and ``claude-opus-4-1``; a date suffix is never read as a minor version.
    """
    name = model.lower()
    if _MYTHOS_PREVIEW.search(name):
        return 2048
    family = major = minor = None
    m = _NEW_NAME.search(name)
    if m:
        family, major, minor = m.group(1), m.group(2), m.group(3)
    else:
        m = _OLD_NAME.search(name)
        if m:
            family, major, minor = m.group(3), m.group(1), m.group(2)
    if family is None or major is None:
        return DEFAULT_MIN_TOKENS
    version = f"{major}.{minor}" if minor else major
    for fam, ver, tokens in _MIN_TOKENS:
        if fam == family and (version == ver or (version.split(".")[0] == ver and "." not in ver)):
            return tokens
    return DEFAULT_MIN_TOKENS


class InvalidCacheControl(Exception):
    """A request the API rejects with ``400 invalid_request_error`` because of its breakpoints."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Block:
    """One position of the prompt prefix, in processing order."""

    path: str
    """Where the block sits in the request (``tools.2``, ``system.0``, ``messages.3.content.1``)."""
    tokens: int
    """Tokens this block adds to the prompt."""
    digest: bytes
    """Chained digest of the prefix up to and including this block (markers stripped)."""
    cache_control: Any
    """The block's ``cache_control`` as sent (``None`` when absent)."""
    eligible: bool
    """Whether automatic caching may place its breakpoint here (not thinking or empty text blocks)."""
    run: str | None = None
    """``tool_use`` / ``tool_result``: consecutive blocks of one such type are one lookback position."""
    kind: str = "text"
    """The block's ``type``."""


@dataclass(frozen=True)
class Breakpoint:
    index: int
    ttl: Ttl
    automatic: bool = False


@dataclass(frozen=True)
class CacheOutcome:
    """What one request read and wrote; ``written`` is per TTL."""

    read: int
    written_5m: int
    written_1h: int
    total: int

    @property
    def written(self) -> int:
        return self.written_5m + self.written_1h

    @property
    def uncached(self) -> int:
        """Anthropic's ``input_tokens``: the prompt minus what was read and what was written."""
        return self.total - self.read - self.written


def _strip(value: Any) -> Any:
    """A block without any ``cache_control`` (also inside ``tool_result`` content), key order kept."""
    if isinstance(value, Mapping):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _nested_cache_control(block: Mapping[str, Any]) -> Any:
    """``cache_control`` on a ``tool_result`` content sub-block counts at the tool_result's position."""
    content = block.get("content")
    if block.get("type") == "tool_result" and isinstance(content, list):
        for sub in reversed(content):
            if isinstance(sub, Mapping) and sub.get("cache_control") is not None:
                return sub["cache_control"]
    return None


def block_text(block: Any) -> str:
    """Text a content block contributes to the prompt (for token counts and synthesis)."""
    if isinstance(block, str):
        return block
    if not isinstance(block, Mapping):
        return json.dumps(block, ensure_ascii=False)
    block = _strip(block)  # a marker is not prompt text (a tool definition is counted as its JSON)
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return f"<|tool_use|>\n{block.get('name', '')}\n{json.dumps(block.get('input', {}), ensure_ascii=False)}"
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            inner = "\n".join(block_text(c) for c in content)
        else:
            inner = "" if content is None else str(content)
        return f"<|tool_result|>\n{block.get('tool_use_id', '')}\n{inner}"
    if kind == "thinking":
        return str(block.get("thinking", ""))
    if kind in ("image", "document", "redacted_thinking"):
        return f"<|{kind}|>"
    return json.dumps(block, ensure_ascii=False)


def content_blocks(content: Any) -> list[Any]:
    """A message's ``content`` as a list of blocks (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return list(content)
    return []


def _eligible(block: Any) -> bool:
    """Thinking blocks and empty text blocks cannot be cached (docs: "What cannot be cached")."""
    if not isinstance(block, Mapping):
        return True
    kind = block.get("type")
    if kind in ("thinking", "redacted_thinking"):
        return False
    return not (kind == "text" and not block.get("text"))


def flatten(body: Mapping[str, Any], tokenizer: Tokenizer) -> tuple[list[Block], int]:
    """The request's blocks in prefix order and the total prompt tokens (blocks + generation marker)."""
    blocks: list[Block] = []
    chain = hashlib.blake2b(str(body.get("model", "")).encode(), digest_size=16).digest()
    salt = ""  # request settings rendered ahead of the next block

    def add(path: str, header: str | None, block: Any, cache_control: Any, eligible: bool, run: str | None) -> None:
        nonlocal chain, salt
        text = block_text(block)
        tokens = tokenizer.count(text) + (tokenizer.count(header) if header else 0)
        wire = json.dumps(_strip(block), ensure_ascii=False, separators=(",", ":"))
        h = hashlib.blake2b(chain, digest_size=16)
        for part in (salt, header or "", wire):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        chain, salt = h.digest(), ""
        kind = str(block.get("type", "")) if isinstance(block, Mapping) else "text"
        blocks.append(Block(path, tokens, chain, cache_control, eligible, run, kind))

    tools = body.get("tools")
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            control = tool.get("cache_control") if isinstance(tool, Mapping) else None
            add(f"tools.{i}", "<|tools|>" if i == 0 else None, tool, control, True, None)
    if body.get("speed") not in (None, "standard"):
        salt = f"speed={body.get('speed')}"
    system = body.get("system")
    system_blocks = content_blocks(system) if system not in (None, "") else []
    for i, block in enumerate(system_blocks):
        control = block.get("cache_control") if isinstance(block, Mapping) else None
        add(f"system.{i}", "<|system|>" if i == 0 else None, block, control, _eligible(block), None)
    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, Mapping) else None
    salt += json.dumps(
        {"tool_choice": body.get("tool_choice"), "thinking": body.get("thinking"), "effort": effort},
        ensure_ascii=False,
        sort_keys=True,
    )
    for m, message in enumerate(body.get("messages") or []):
        if not isinstance(message, Mapping):
            continue
        role = str(message.get("role", ""))
        for j, block in enumerate(content_blocks(message.get("content"))):
            control = None
            run = None
            if isinstance(block, Mapping):
                control = block.get("cache_control")
                if control is None:
                    control = _nested_cache_control(block)
                if block.get("type") in ("tool_use", "tool_result"):
                    run = str(block["type"])
            header = f"<|{role}|>" if j == 0 else None
            add(f"messages.{m}.content.{j}", header, block, control, _eligible(block), run)
    total = sum(b.tokens for b in blocks) + tokenizer.count(GENERATION_MARKER)
    return blocks, total


def _ttl_of(control: Any, path: str) -> Ttl:
    where = f"{path}.cache_control" if path else "cache_control"
    if not isinstance(control, Mapping):
        raise InvalidCacheControl(f"{where}: Input should be a valid dictionary or object to extract fields from")
    if control.get("type") != "ephemeral":
        raise InvalidCacheControl(f"{where}.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl == "5m":
        return "5m"
    if ttl == "1h":
        return "1h"
    raise InvalidCacheControl(f"{where}.ttl: Input should be '5m' or '1h'")


def _ineligible(block: Block) -> str:
    return (
        # Real text: "messages.29.content.0.text: cache_control cannot be set for empty text blocks"
        # (a BadRequestError quoted in a public repository, 2026).
        f"{block.path}.text: cache_control cannot be set for empty text blocks"
        if block.kind == "text"
        # Thinking blocks "cannot be cached directly with cache_control" (docs); wording assumed.
        else f"{block.path}.cache_control: Extra inputs are not permitted"
    )


def plan_breakpoints(blocks: Sequence[Block], top_level: Any) -> list[Breakpoint]:
    """The request's breakpoints in prefix order, or ``InvalidCacheControl`` with the API's 400 text."""
    explicit: list[Breakpoint] = []
    for i, b in enumerate(blocks):
        if b.cache_control is None:
            continue
        ttl = _ttl_of(b.cache_control, b.path)
        if not b.eligible:
            raise InvalidCacheControl(_ineligible(b))
        explicit.append(Breakpoint(i, ttl))
    points = list(explicit)
    if top_level is not None:
        ttl = _ttl_of(top_level, "")
        target = next((i for i in range(len(blocks) - 1, -1, -1) if blocks[i].eligible), None)
        if target is not None:
            own = next((p for p in explicit if p.index == target), None)
            if own is None:
                points.append(Breakpoint(target, ttl, automatic=True))
                points.sort(key=lambda p: p.index)
            elif own.ttl != ttl:
                # Text from a real 400 (vellum-ai/vellum-assistant PR #23414, 2026-04); an explicit marker
                # with the same TTL on the target makes automatic caching a no-op (docs).
                raise InvalidCacheControl(
                    f"Top-level cache_control has ttl='{ttl}' but the target block already has cache_control "
                    f"with ttl='{own.ttl}'"
                )
    if len(points) > MAX_BREAKPOINTS:
        # Real text, e.g. slopus/happy#173, continuedev/continue#6937; the automatic breakpoint counts
        # toward the limit (VicBilibily/GCMP#370: 4 explicit + top-level -> "Found 5.").
        raise InvalidCacheControl(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(points)}."
        )
    seen_5m = False
    for p in points:
        if p.ttl == "5m":
            seen_5m = True
        elif seen_5m:
            # Real text (anthropics/claude-code#39599, kristianvast/hermes-claude-auth#31).
            raise InvalidCacheControl(
                f"{blocks[p.index].path}.cache_control.ttl: a ttl='1h' cache_control block must not come after "
                "a ttl='5m' cache_control block. Note that blocks are processed in the following order: "
                "`tools`, `system`, `messages`."
            )
    return points


@dataclass
class _Entry:
    ttl: float
    expires_at: float


class BreakpointCache:
    """Every Anthropic prompt-cache entry of one emulator; the emulator calls it under its lock."""

    def __init__(self, max_entries: int = 1000, lookback: int = LOOKBACK_BLOCKS) -> None:
        self._entries: OrderedDict[tuple[Hashable, bytes], _Entry] = OrderedDict()
        self.max_entries = max_entries
        self.lookback = lookback

    def __len__(self) -> int:
        return len(self._entries)

    def alive(self, now: float) -> int:
        """Entries not expired at ``now`` (drops the expired ones)."""
        for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
            del self._entries[key]
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    def _alive(self, key: tuple[Hashable, bytes], now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at <= now:
            del self._entries[key]
            return None
        return entry

    def _write(self, key: tuple[Hashable, bytes], ttl: float, now: float) -> None:
        self._entries[key] = _Entry(ttl, now + ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def serve(
        self,
        scope: Hashable,
        blocks: Sequence[Block],
        breakpoints: Sequence[Breakpoint],
        total: int,
        now: float,
        min_tokens: int,
    ) -> CacheOutcome:
        """Read what earlier requests wrote, write this request's breakpoints, report the split."""
        while self._entries:  # entries are in last-use order: drop expired ones from the front
            oldest = next(iter(self._entries.values()))
            if oldest.expires_at > now:
                break
            self._entries.popitem(last=False)
        ends: list[int] = []
        running = 0
        for b in blocks:
            running += b.tokens
            ends.append(running)
        hit = -1
        for bp in breakpoints:
            positions = 0
            for j in range(bp.index, -1, -1):
                run = blocks[j].run
                if j == bp.index or run is None or run != blocks[j + 1].run:
                    positions += 1  # a run of tool_use (or tool_result) blocks is one position
                    if positions > self.lookback:
                        break
                key = (scope, blocks[j].digest)
                entry = self._alive(key, now)
                if entry is not None:
                    entry.expires_at = now + entry.ttl  # a read refreshes the lifetime
                    self._entries.move_to_end(key)
                    hit = max(hit, j)
                    break
        read = ends[hit] if hit >= 0 else 0
        covered = read
        written: dict[str, int] = {"5m": 0, "1h": 0}
        for bp in sorted(breakpoints, key=lambda p: p.index):
            end = ends[bp.index]
            if end < min_tokens:
                continue  # silently not cached
            key = (scope, blocks[bp.index].digest)
            if bp.index > hit:
                self._write(key, TTL_SECONDS[bp.ttl], now)
                written[bp.ttl] += end - covered
                covered = end
            elif self._alive(key, now) is None:
                self._write(key, TTL_SECONDS[bp.ttl], now)  # inside what was read: no charge
        return CacheOutcome(read=read, written_5m=written["5m"], written_1h=written["1h"], total=total)
