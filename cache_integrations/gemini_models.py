"""Which Gemini models take explicit context caches (``cachedContents``).

One function for the whole library, so our own `ChatGemini` / `Gemini` and the strategy that manages caches
behind foreign Gemini clients (`strategies.gemini`) decide the same way.

Sources (read 2026-11; see research/gemini-interactions.md section 2):

- ai.google.dev/gemini-api/docs/generate-content/caching: explicit caching is available "on Gemini 3 and 2.5
  models; not supported on Gemini 4 Argon and later" (read in the zh-cn, es-419, id and hi copies of the page,
  which list Argon and so postdate its 2026-10-13 release);
- ai.google.dev/gemini-api/docs/interactions/caching: the Interactions API caches implicitly only, and models
  that launch on it alone (``gemini-omni-*``) have no ``generateContent`` caches;
- Vertex AI's context-cache overview still lists Gemini 2.0 with explicit caching (75 % discount), and 1.5 had it
  from the start, so every generation before 4 is treated as supporting it.

A model this module does not recognise (no ``gemini-<major>`` in its name, or an alias such as
``gemini-flash-latest`` that may move to a newer generation) is treated as unsupported: the layout still applies
and Gemini's implicit cache still serves it, but no storage is paid for a cache the model may refuse.
"""

from __future__ import annotations

import re

__all__ = [
    "CACHE_MINIMUMS",
    "FIRST_MODEL_WITHOUT_EXPLICIT_CACHING",
    "explicit_caching_supported",
    "min_cache_tokens",
    "normalize_gemini_model",
]

FIRST_MODEL_WITHOUT_EXPLICIT_CACHING = 4
"""The first Gemini major version without explicit caching (Gemini 4 Argon, ``gemini-4-argon``)."""

_VERSION = re.compile(r"^gemini-(\d+)(?:\.\d+)?(?:-|$)")
_INTERACTIONS_ONLY = ("gemini-omni-",)


def normalize_gemini_model(model: str) -> str:
    """``models/gemini-2.5-flash`` or ``publishers/google/models/gemini-2.5-flash`` -> ``gemini-2.5-flash``."""
    return model.strip().rsplit("/", 1)[-1].lower()


def explicit_caching_supported(model: str) -> bool:
    """Whether `model` takes explicit ``cachedContents`` caches on ``generateContent``.

    True for Gemini 1.5, 2.x and 3.x (any variant: ``gemini-2.5-flash-lite``, ``gemini-3.1-pro-preview``, tuned
    names under ``models/``), False for Gemini 4 Argon and later, Interactions-only models and names without a
    version.
    """
    name = normalize_gemini_model(model)
    if name.startswith(_INTERACTIONS_ONLY):
        return False
    match = _VERSION.match(name)
    return match is not None and int(match.group(1)) < FIRST_MODEL_WITHOUT_EXPLICIT_CACHING


# -- minimum cache sizes -----------------------------------------------------------------------------------

CACHE_MINIMUMS: tuple[tuple[str, int], ...] = (
    ("gemini-4", 4096),
    ("gemini-3", 4096),
    ("gemini-2.5", 2048),
)
"""(model-name prefix, minimum tokens of a cache), the first matching prefix wins.

From Google's caching page (ai.google.dev/gemini-api/docs/generate-content/caching, last updated 2026-10-13):
"Gemini 4 Argon, 3.8 Flash, 3.6 Flash, 3.1 Pro Preview: 4096; Gemini 2.5 Flash, 2.5 Pro: 2048". The May 2026
version of the page said 1024 for Flash models: the numbers move, so a cache manager treats these as a prior
and learns the real minimum from Gemini's "Cached content is too small" answer.
"""


def min_cache_tokens(model: str) -> int | None:
    """The smallest cache Google documents for `model` (tokens), or None when the table does not know it."""
    name = normalize_gemini_model(model)
    for prefix, minimum in CACHE_MINIMUMS:
        if name == prefix or name.startswith((prefix + "-", prefix + ".")):
            return minimum
    return None
