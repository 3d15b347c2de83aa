"""The manager's plan-level API, for clients that send the request themselves.

`ExplicitCacheManager.chat` / `stream` send requests through the manager's own provider client. A foreign client
(langchain-google-genai's `ChatGoogleGenerativeAI`, llama-index-llms-google-genai's `GoogleGenAI`) sends its own
requests; the manager then only decides, and does the cache's bookkeeping:

1. `acquire(request)` finds or creates (through the manager's provider client, with the same single-flight,
   break-even, minimum-learning and extension rules) the cache for `request`'s prefix and returns a
   `CacheDecision`: the cache to name in ``cachedContent`` and how many leading turns it holds, or no cache (send
   inline);
2. the client sends the request (with the cache: no system instruction, tools, tool config or cached turns);
3. `settle(decision, usage)` after it answered: the cache is marked used, or an inline send's implicit-cache
   hit is remembered (in ``"auto"`` mode that holds back a paid cache while the free implicit one serves);
4. if the client reports the cache gone (Gemini's 403 "CachedContent not found"), `recover(decision, request)`
   forgets it and creates a new one whatever the policy (or returns no cache when that fails), for one retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import ProviderConnectionError, ProviderError
from ..messages import ChatRequest
from ..usage import Usage
from ._base import one_line
from ._types import CacheUse, Plan, Ticket, _use

__all__ = ["CacheDecision", "ForeignClientAccess"]

logger = logging.getLogger("cache_integrations.explicit.manager")


@dataclass(frozen=True, slots=True)
class CacheDecision:
    """The manager's answer for one request that another client sends.

    `name` is the cache to send in ``cachedContent`` (None: send the request inline, as it is);
    `cached_messages` how many of the request's non-system messages (after the layout: system messages first)
    the cache holds, so the client leaves them out; `use` what obtaining the cache did (created, extended,
    recovered; tokens written and storage booked), for the response's metadata.
    """

    plan: Plan
    ticket: Ticket | None = None

    @property
    def key(self) -> str:
        """The registry key of the request's cacheable prefix."""
        return self.plan.key

    @property
    def name(self) -> str | None:
        return None if self.ticket is None else self.ticket.entry.name

    @property
    def cached_messages(self) -> int:
        return self.plan.cached_messages if self.ticket is not None else 0

    @property
    def use(self) -> CacheUse | None:
        return None if self.ticket is None else _use(self.ticket)


class ForeignClientAccess:
    """`acquire` / `aacquire`, `settle`, `invalidate`, `recover` / `arecover` (a mixin of `ExplicitCacheManager`)."""

    namespace: str
    clock: Callable[[], float]

    if TYPE_CHECKING:  # provided by ExplicitCacheManager

        def _plan(self, request: ChatRequest, layout: bool, *, pinned: bool = False) -> Plan | None: ...

        def _ticket(
            self, plan: Plan | None, request: ChatRequest, layout: bool, *, recovering: bool = False
        ) -> Ticket | None: ...

        async def _aticket(
            self, plan: Plan | None, request: ChatRequest, layout: bool, *, recovering: bool = False
        ) -> Ticket | None: ...

        def _observe_inline(self, plan: Plan | None, usage: Usage | None) -> None: ...

        def _reg(self, method: str, *args: Any, **kwargs: Any) -> Any: ...

    def acquire(self, request: ChatRequest, *, layout: bool = True) -> CacheDecision | None:
        """The cache `request` should be sent against (created or extended now if the policy says so).

        None when nothing in the request is cacheable or the mode is ``"off"``; a decision without a cache
        (`name` None) when the request goes inline this time. In ``"always"`` mode a failed creation raises.
        """
        plan = self._plan(request, layout)
        if plan is None:
            return None
        return CacheDecision(plan, self._ticket(plan, request, layout))

    async def aacquire(self, request: ChatRequest, *, layout: bool = True) -> CacheDecision | None:
        plan = self._plan(request, layout)
        if plan is None:
            return None
        return CacheDecision(plan, await self._aticket(plan, request, layout))

    def settle(self, decision: CacheDecision | None, usage: Usage | None) -> None:
        """After the client's request answered: the cache was used, or (inline) whether the provider's implicit
        cache served the prefix."""
        if decision is None:
            return
        if decision.ticket is None:
            self._observe_inline(decision.plan, usage)
        else:
            self._reg("touch", self.namespace, decision.key, now=self.clock())

    def invalidate(self, decision: CacheDecision) -> None:
        """The client reported `decision`'s cache gone (expired, deleted): forget it, here and in the registry."""
        if decision.ticket is not None:
            self._reg("forget", self.namespace, decision.key, name=decision.ticket.entry.name)

    def _recovery_failed(self, decision: CacheDecision, exc: Exception) -> CacheDecision:
        logger.warning(
            "could not recreate the cache for prefix %s (%s); sending inline", decision.key[:12], one_line(exc)
        )
        return replace(decision, ticket=None)

    def recover(self, decision: CacheDecision, request: ChatRequest, *, layout: bool = True) -> CacheDecision:
        """After the client reported `decision`'s cache gone: forget it and make a new one now, whatever the
        policy, for one retry; a decision without a cache (send inline) when the new one cannot be made."""
        self.invalidate(decision)
        try:
            ticket = self._ticket(decision.plan, request, layout, recovering=True)
        except (ProviderError, ProviderConnectionError) as exc:
            return self._recovery_failed(decision, exc)
        return replace(decision, ticket=ticket)  # a new cache comes back marked recovered

    async def arecover(self, decision: CacheDecision, request: ChatRequest, *, layout: bool = True) -> CacheDecision:
        self.invalidate(decision)
        try:
            ticket = await self._aticket(decision.plan, request, layout, recovering=True)
        except (ProviderError, ProviderConnectionError) as exc:
            return self._recovery_failed(decision, exc)
        return replace(decision, ticket=ticket)  # a new cache comes back marked recovered
