"""Anthropic's cache diagnostics: a hash-only fingerprint per response, compared when a later request names it.

Source: platform.claude.com/docs/en/build-with-claude/cache-diagnostics (beta header
``cache-diagnosis-2026-04-07``) and the ``anthropic`` SDK's ``BetaDiagnostics`` / ``BetaCacheMiss*`` types:

* a request opts in with ``diagnostics: {"previous_message_id": <id> | null}``; the API then keeps a
  fingerprint of the request (hashes and token estimates, never the prompt) under the response's ``id``;
* the response carries ``diagnostics``: ``null`` on a first turn (``previous_message_id: null``) or when the
  named request's prefix is fully reused, else ``{"cache_miss_reason": {...}}`` describing the first point of
  divergence, in the cache's order: ``model_changed``, then ``tools_changed``, ``system_changed``,
  ``messages_changed`` (each with ``cache_missed_input_tokens``, the tokens of the earlier request from the
  divergence on), or ``previous_message_not_found`` (unknown id, another workspace's, or expired). A stream
  carries it on ``message_start``;
* the comparison is about the request's structure, whatever the cache actually served.

The emulator answers every comparison at once (the real API may answer ``{"cache_miss_reason": null}``
while its comparison is still running; ``Emulator.anthropic_diagnostics_pending = True`` answers so). Request
settings the docs say are reported as ``unavailable`` are folded into the prefix digests as
``_anthropic_cache.flatten`` does (a changed ``tool_choice`` reads as ``messages_changed``). Without the beta
header a ``diagnostics`` field is refused like any unknown field (the wording is assumed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._anthropic_cache import Block

__all__ = ["DIAGNOSTICS_BETA", "DiagnosticsBook", "InvalidDiagnostics", "requested_diagnostics"]

DIAGNOSTICS_BETA = "cache-diagnosis-2026-04-07"
_KEEP_SECONDS = 24 * 3600.0  # "retained for a limited time": a day here
_SECTIONS = (("tools.", "tools_changed"), ("system.", "system_changed"), ("messages.", "messages_changed"))


class InvalidDiagnostics(Exception):
    """A ``diagnostics`` field the API answers with ``400 invalid_request_error``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _betas(headers: Mapping[str, str]) -> set[str]:
    return {b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()}


def requested_diagnostics(body: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[bool, str | None]:
    """(whether the request opted in, the previous message id it names), or `InvalidDiagnostics`."""
    if "diagnostics" not in body:
        return False, None
    if DIAGNOSTICS_BETA not in _betas(headers):
        raise InvalidDiagnostics("diagnostics: Extra inputs are not permitted")
    value = body["diagnostics"]
    if not isinstance(value, Mapping):
        raise InvalidDiagnostics("diagnostics: Input should be a valid dictionary or object to extract fields from")
    previous = value.get("previous_message_id")
    if previous is not None and not isinstance(previous, str):
        raise InvalidDiagnostics("diagnostics.previous_message_id: Input should be a valid string")
    return True, previous


@dataclass(frozen=True, slots=True)
class _Fingerprint:
    scope: str  # the API key's fingerprint: fingerprints are per organization and workspace
    model: str
    blocks: tuple[tuple[str, bytes, int], ...]  # (section, chained digest, tokens) per prefix position
    at: float


def _section(path: str) -> str:
    return next((reason for prefix, reason in _SECTIONS if path.startswith(prefix)), "messages_changed")


class DiagnosticsBook:
    """Fingerprints by response id (bounded, kept a day on the emulator's clock), and the comparisons."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._entries: OrderedDict[str, _Fingerprint] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def remember(self, message_id: str, scope: str, model: str, blocks: Sequence[Block], now: float) -> None:
        entry = _Fingerprint(scope, model, tuple((_section(b.path), b.digest, b.tokens) for b in blocks), now)
        with self._lock:
            self._entries[message_id] = entry
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def compare(
        self, previous_id: str | None, scope: str, model: str, blocks: Sequence[Block], now: float
    ) -> dict[str, Any] | None:
        """The response's ``diagnostics`` value: None (first turn, or nothing diverged) or the miss reason."""
        if previous_id is None:
            return None
        with self._lock:
            old = self._entries.get(previous_id)
        if old is None or old.scope != scope or now - old.at > _KEEP_SECONDS:
            return {"cache_miss_reason": {"type": "previous_message_not_found"}}
        if old.model != model:
            return _miss("model_changed", sum(t for _, _, t in old.blocks))
        for i, (section, digest, _) in enumerate(old.blocks):
            if i >= len(blocks) or blocks[i].digest != digest:
                return _miss(section, sum(t for _, _, t in old.blocks[i:]))
        return None


def _miss(reason: str, tokens: int) -> dict[str, Any]:
    return {"cache_miss_reason": {"type": reason, "cache_missed_input_tokens": tokens}}
