"""What the manager knows about a model: whether it takes explicit caches, its minimum, a prefix's tokens.

* capability: the client's table (`GeminiProvider.supports_explicit_cache`, from
  `cache_integrations.gemini_models`) and what the provider taught (a create refused as unsupported is
  remembered per model in the registry, like the minimum size). A model without explicit caching is sent
  inline, where the provider's implicit cache still serves repeated prefixes, with one warning per model;
  pinning a context on it is an `ExplicitCachingUnsupportedError` naming the model and the alternative.
* minimum: the one Gemini's "too small" answer taught, else the client's documented prior.
* tokens of a prefix: text is estimated from its size (4 bytes a token, only to skip hopeless creates);
  a prefix holding media (``fileData`` / ``inlineData``: a PDF, a video) is counted by the provider's
  ``countTokens`` once per prefix and process, because its wire size says nothing about its tokens.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..errors import ExplicitCachingUnsupportedError
from ..layout import apply_layout, canonical_json
from ..messages import ChatRequest
from ._types import ExplicitCacheClient, Plan

__all__ = ["NO_EXPLICIT_CACHE", "ModelRules", "has_media"]

logger = logging.getLogger(__name__)

NO_EXPLICIT_CACHE = "no_explicit_cache"
"""The registry fact recording that the provider refused explicit caches for a model."""
_TOKEN_MEMO = 1024  # prefixes whose counted tokens this process remembers
_MEDIA_KEYS = frozenset(("fileData", "inlineData", "file_data", "inline_data"))


def has_media(payload: Any) -> bool:
    """Whether a wire payload holds a media part anywhere."""
    if isinstance(payload, dict):
        return any(k in _MEDIA_KEYS or has_media(v) for k, v in payload.items())
    if isinstance(payload, list):
        return any(has_media(v) for v in payload)
    return False


def unsupported_message(model: str, *, refused: bool = False) -> str:
    """Why `model` gets no explicit cache, and what to do instead."""
    why = (
        "Gemini refused to create one for it"
        if refused
        else "Google's caching page: explicit caching is available on Gemini 2.5 and 3.x models, not on Gemini 4 "
        "Argon and later"
    )
    return (
        f"{model} does not take explicit context caches ({why}). Use a Gemini 2.5 or 3.x model for "
        "cache_context, or send the context with each request (cache_mode='off') and let Gemini's implicit "
        "caching serve the repeated prefix"
    )


class ModelRules:
    """The manager's model knowledge (a mixin of `ExplicitCacheManager`, which sets these attributes)."""

    client: ExplicitCacheClient
    namespace: str
    _reg: Callable[..., Any]

    def _init_models(self) -> None:
        self._warned_models: set[str] = set()
        self._token_memo: OrderedDict[str, int] = OrderedDict()
        self._token_lock = threading.Lock()

    # -- capability ---------------------------------------------------------------------------------

    def explicit_caching_supported(self, model: str) -> bool:
        """Whether the manager will create caches for `model`: the client's table says it may, and the
        provider has not refused one (a refusal is remembered in the registry, per model)."""
        check = getattr(self.client, "supports_explicit_cache", None)
        if check is not None and not check(model):
            return False
        return self._reg("fact", self.namespace, NO_EXPLICIT_CACHE, model) is None

    def _unsupported_error(self, model: str) -> ExplicitCachingUnsupportedError:
        check = getattr(self.client, "supports_explicit_cache", None)
        refused = check is None or bool(check(model))  # the table allows it: the provider said no
        return ExplicitCachingUnsupportedError(unsupported_message(model, refused=refused), model=model)

    def _require_explicit(self, model: str) -> None:
        if not self.explicit_caching_supported(model):
            raise self._unsupported_error(model)

    def _skip_unsupported(self, plan: Plan) -> bool:
        """True (after one warning per model) when `plan`'s model takes no explicit caches; a pinned plan raises."""
        if self.explicit_caching_supported(plan.model):
            return False
        if plan.pinned:
            raise self._unsupported_error(plan.model)
        if plan.model not in self._warned_models:
            self._warned_models.add(plan.model)
            logger.warning(
                "%s does not take explicit caches; sending its requests inline (Gemini's implicit caching "
                "still serves repeated prefixes)",
                plan.model,
            )
        return True

    def _learn_unsupported(self, model: str) -> None:
        """The provider refused a cache for `model`: remember it (registry), and count the refusal's log
        line as the model's one warning."""
        self._reg("set_fact", self.namespace, NO_EXPLICIT_CACHE, model, 1)
        self._warned_models.add(model)

    # -- sizes --------------------------------------------------------------------------------------

    def _minimum(self, model: str) -> int | None:
        learned: int | None = self._reg("min_tokens", self.namespace, model)
        if learned is not None:
            return learned
        prior = getattr(self.client, "min_cache_tokens", None)
        return prior(model) if prior is not None else None

    def _prefix_request(self, request: ChatRequest, plan: Plan) -> ChatRequest:
        laid = apply_layout(request)
        systems = [m for m in laid.messages if m.role == "system"]
        others = [m for m in laid.messages if m.role != "system"]
        return replace(laid, messages=(*systems, *others[: plan.cached_messages]))

    def _remembered_tokens(self, key: str) -> int | None:
        with self._token_lock:
            return self._token_memo.get(key)

    def _remember_tokens(self, key: str, tokens: int) -> int:
        with self._token_lock:
            self._token_memo[key] = tokens
            while len(self._token_memo) > _TOKEN_MEMO:
                self._token_memo.popitem(last=False)
        return tokens

    def _estimate_tokens(self, request: ChatRequest, plan: Plan) -> int:
        """Tokens of `plan`'s prefix: counted by the provider when it holds media, else estimated from its
        size (4 bytes a token, never an over-estimate), used only to skip hopeless creates."""
        known = self._remembered_tokens(plan.key)
        if known is not None:
            return known
        payload = self.client.cache_payload(request, cached_messages=plan.cached_messages, layout=True)
        count = getattr(self.client, "count_tokens", None)
        if plan.cached_messages and count is not None and has_media(payload.get("contents")):
            return self._remember_tokens(plan.key, int(count(self._prefix_request(request, plan), layout=False)))
        # remembered: the size of an unchanged prefix is not measured again on every inline send
        return self._remember_tokens(plan.key, len(canonical_json(payload).encode()) // 4)

    async def _aestimate_tokens(self, request: ChatRequest, plan: Plan) -> None:
        """Count a media prefix with the provider's async ``countTokens`` before the (sync) policy reads it."""
        if plan.pinned or self._remembered_tokens(plan.key) is not None:
            return  # a pinned prefix is created without estimating its size
        if not self.explicit_caching_supported(plan.model) or self._minimum(plan.model) is None:
            return  # no cache will be made for it, or there is no minimum to compare with
        count = getattr(self.client, "acount_tokens", None)
        if not plan.cached_messages or count is None:
            return
        payload = self.client.cache_payload(request, cached_messages=plan.cached_messages, layout=True)
        if has_media(payload.get("contents")):
            self._remember_tokens(plan.key, int(await count(self._prefix_request(request, plan), layout=False)))
