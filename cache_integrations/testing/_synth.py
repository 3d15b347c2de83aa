"""Deterministic "model output": scripted replies, reasoning, tool arguments from JSON schemas, ids.

Everything is derived from SHA-256 of the inputs (never Python's randomised ``hash``), so the same
request produces the same bytes in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

_WORD_RE = re.compile(r"\w+")
_CANDIDATE_RE = re.compile(r"[^\W\d_][\w-]*")
_NUMBER_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")
_BASE36 = "abcdefghijklmnopqrstuvwxyz0123456789"
_BASE62 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_B64URL = _BASE62 + "-_"

_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "get",
        "give",
        "how",
        "i",
        "in",
        "is",
        "it",
        "me",
        "my",
        "of",
        "on",
        "or",
        "please",
        "show",
        "tell",
        "that",
        "the",
        "this",
        "to",
        "use",
        "using",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "what's",
        "it's",
        "i'm",
    }
)

_SENTENCES = (
    "This reply comes from the cache_integrations emulator, not from a real model.",
    "It is deterministic, so the same request always gets the same words back.",
    "Token counts follow the emulator's approximate tokenizer.",
    "Cached prefix tokens are reported in the usage block of every response.",
    "Long, stable prefixes make repeated calls cheaper and faster.",
    "Ask the same question again and you will read exactly this text.",
    "The emulator applies the provider's prompt caching rules faithfully.",
    "Keep system prompts and tool definitions byte-identical between calls.",
)


def digest(*parts: object) -> bytes:
    """SHA-256 over the string forms of ``parts``."""
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.digest()


def encode(data: bytes, alphabet: str, length: int) -> str:
    """``length`` characters of ``alphabet`` drawn from ``data`` (extended by re-hashing if needed)."""
    out: list[str] = []
    block = data
    while len(out) < length:
        n = int.from_bytes(block, "big")
        while n and len(out) < length:
            n, r = divmod(n, len(alphabet))
            out.append(alphabet[r])
        block = hashlib.sha256(block).digest()
    return "".join(out)


def glm_tool_call_id(*parts: object) -> str:
    """``call_-<19 digits>``: the negative 64-bit ids Zhipu returns."""
    n = int.from_bytes(digest("glm-call", *parts)[:8], "big")
    return f"call_-{1_000_000_000_000_000_000 + n % 8_000_000_000_000_000_000}"


def openai_tool_call_id(*parts: object) -> str:
    return "call_" + encode(digest("openai-call", *parts), _BASE62, 24)


def snippet(text: str, words: int) -> str:
    """The first ``words`` words of ``text``, punctuation dropped."""
    found = _WORD_RE.findall(text)
    return " ".join(found[:words])


def reply_text(user_text: str) -> str:
    """Scripted answer to a user turn: quotes its first words, then 2-3 fixed sentences (~25-60 tokens)."""
    d = digest("reply", user_text)
    head = snippet(user_text, 8) or "an empty message"
    count = 2 + d[0] % 2
    start = d[1] % len(_SENTENCES)
    body = " ".join(_SENTENCES[(start + i) % len(_SENTENCES)] for i in range(count))
    return f"Emulated reply to: {head}. {body}"


def tool_result_text(tool_name: str, result: str, kind: str = "tool") -> str:
    """Answer after a tool ran: names the tool and quotes its result, so tests can see it was read."""
    d = digest("tool-result", tool_name, result)
    quoted = " ".join(result.split()[:30]) or "(empty)"
    return f"The {tool_name or kind} {kind} returned: {quoted}. {_SENTENCES[d[0] % len(_SENTENCES)]}"


def reasoning_text(user_text: str, tool_name: str | None = None) -> str:
    """Scripted chain of thought (~20-40 tokens)."""
    head = snippet(user_text, 6) or "an empty message"
    plan = (
        f"I should call the {tool_name} tool with the required arguments."
        if tool_name
        else "I will answer directly and keep it short."
    )
    return f"The user asks about {head}. {plan} Let me double-check the request before responding."


def pick_tool(names: Sequence[str], user_text: str) -> str:
    """The first tool named in ``user_text`` (whole words; ``get_weather`` also matches "get weather"),
    else the first tool."""
    lowered = user_text.lower()
    for name in names:
        for variant in dict.fromkeys((name.lower(), re.sub(r"[_\-]+", " ", name.lower()))):
            if variant and re.search(rf"(?<!\w){re.escape(variant)}(?!\w)", lowered):
                return name
    return names[0]


_QUOTED_RE = re.compile(r"(?<!\w)'([^'\n]{1,80})'(?!\w)|(?<!\w)\"([^\"\n]{1,80})\"(?!\w)|“([^”\n]{1,80})”")


_PARALLEL_RE = re.compile(r"for each of:\s*([^.\n]+)", re.IGNORECASE)


def parallel_items(user_text: str) -> list[str]:
    """The items of a "for each of: Paris, Rome and Oslo" request (at least two), else none: the emulator's
    convention for parallel tool use, one call per item."""
    found = _PARALLEL_RE.search(user_text)
    if not found:
        return []
    items = [i.strip() for i in re.split(r",|\band\b", found.group(1))]
    items = [i for i in items if i]
    return items if len(items) > 1 else []


class ArgumentSynthesizer:
    """Builds a value satisfying a JSON schema, seeded from the user's words and numbers.

    Strings take quoted phrases from the user text, then its words (capitalised words first, so
    "weather in Florence" gives ``"Florence"``), numbers take the numbers the user wrote, then small
    counters. Only required properties are filled. ``$ref``/``anyOf``/``allOf`` are followed with a
    depth limit so recursive schemas terminate.
    """

    MAX_DEPTH = 8

    def __init__(self, user_text: str, exclude: Sequence[str] = ()) -> None:
        excluded = {e.lower() for e in exclude}
        words = [w for w in _CANDIDATE_RE.findall(user_text) if w.lower() not in _STOPWORDS]
        words = [w for w in words if w.lower() not in excluded]
        first = _CANDIDATE_RE.search(user_text)
        first_word = first.group(0) if first else ""
        capital = [w for w in words if w[:1].isupper() and w != first_word]
        rest = [w for w in words if w not in capital]
        # A quoted phrase is what a user most often means as a value ("a customer named 'ACME'").
        quoted = [q for groups in _QUOTED_RE.findall(user_text) for q in groups if q]
        self._words: list[str] = list(dict.fromkeys(quoted + capital + rest))
        self._numbers: list[str] = _NUMBER_RE.findall(user_text)
        self._word_i = 0
        self._num_i = 0
        self._counter = 0
        self._root: Mapping[str, Any] = {}

    def build(self, schema: Any) -> Any:
        self._root = schema if isinstance(schema, Mapping) else {}
        return self._value(schema, "value", 0)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            return {}
        node: Any = self._root
        for key in ref[2:].split("/"):
            key = key.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                return {}
            node = node[key]
        return node

    def _next_word(self, name: str) -> str:
        if self._word_i < len(self._words):
            word = self._words[self._word_i]
            self._word_i += 1
            return word
        return name

    def _next_number(self, integer: bool) -> int | float:
        while self._num_i < len(self._numbers):
            raw = self._numbers[self._num_i]
            self._num_i += 1
            if not integer:
                return float(raw) if "." in raw else int(raw)
            if "." not in raw:
                return int(raw)
        self._counter += 1
        return self._counter if integer else self._counter + 0.5

    def _value(self, schema: Any, name: str, depth: int) -> Any:
        if not isinstance(schema, Mapping):
            return self._next_word(name)
        if "$ref" in schema:
            if depth > self.MAX_DEPTH:
                return None  # a recursive schema: stop here
            return self._value(self._resolve(str(schema["$ref"])), name, depth + 1)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        for key in ("anyOf", "oneOf", "any_of", "one_of"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                non_null = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
                return self._value((non_null or options)[0], name, depth + 1)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {}
            for part in all_of:
                resolved = self._resolve(str(part["$ref"])) if isinstance(part, Mapping) and "$ref" in part else part
                if isinstance(resolved, Mapping):
                    merged.update(resolved)
            return self._value(merged, name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        kind = str(kind).lower() if kind is not None else ("object" if "properties" in schema else "string")
        if kind == "object":
            props = schema.get("properties") or {}
            required = schema.get("required") or []
            out: dict[str, Any] = {}
            if isinstance(props, Mapping):
                for key in required:
                    if key in props:
                        out[key] = self._value(props[key], key, depth + 1)
            return out
        if kind == "array":
            items = schema.get("items", {"type": "string"})
            min_items = schema.get("minItems") or schema.get("min_items") or 1
            return [self._value(items, name, depth + 1) for _ in range(max(1, int(min_items)))]
        if kind in ("integer", "number"):
            value = self._next_number(kind == "integer")
            lo, hi = schema.get("minimum"), schema.get("maximum")
            if isinstance(lo, (int, float)) and value < lo:
                value = lo
            if isinstance(hi, (int, float)) and value > hi:
                value = hi
            return value
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        fmt = schema.get("format")
        if fmt == "date":
            return "2026-01-01"
        if fmt == "date-time":
            return "2026-01-01T00:00:00Z"
        if fmt == "email":
            return "user@example.com"
        if fmt in ("uri", "url"):
            return "https://example.com"
        return self._next_word(name)


def json_answer(schema: Any, user_text: str, fallback_text: str) -> str:
    """Content for JSON mode: an object built from ``schema`` if given, else ``{"answer": ...}``."""
    if isinstance(schema, Mapping) and schema:
        value = ArgumentSynthesizer(user_text).build(schema)
        return json.dumps(value, ensure_ascii=False)
    return json.dumps({"answer": fallback_text}, ensure_ascii=False)
