"""Cache efficiency: cached tokens over the theoretical maximum, with and without the layout step.

The maximum for a request is the number of its stable tokens (tools, system prompts, documents,
earlier history, in the laid-out order) that form a prefix an earlier request already sent (a prefix
cache cannot serve a segment whose predecessors differ), then passed through the provider's rules
(minimum, granularity). Tokens are the emulator's, counted on the prompt the
emulator renders from the exact request body. A reported hit beyond the maximum (the role marker of
the next turn, say) is not counted, so efficiency never exceeds 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from langchain_core.messages import AIMessage

from cache_integrations import CacheLedger
from cache_integrations.langchain import ChatGLM
from cache_integrations.testing import Emulator, count_tokens
from cache_integrations.testing._render import render_chat
from cache_integrations.testing.rules import CacheRules
from cache_integrations.usage import Usage

from .workloads import Workload

MODEL = "glm-4.7"


@dataclass
class Call:
    body: dict[str, Any]
    stable: int
    usage: Usage


def run(workload: Workload, *, plugin: bool, rules: CacheRules) -> list[Call]:
    emu = Emulator(glm_rules=rules)
    llm = ChatGLM(
        model=MODEL,
        api_key="bench",
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=emu.transport()),
        cache_friendly_layout=plugin,
    )
    calls: list[Call] = []
    reply: AIMessage | None = None
    for step in workload.steps():
        request = step(reply)
        model = llm.bind_tools(request.tools) if request.tools else llm
        reply = model.invoke(request.messages(plugin))
        assert isinstance(reply, AIMessage) and reply.usage_metadata is not None
        meta = reply.usage_metadata
        usage = Usage(
            meta["input_tokens"], meta.get("input_token_details", {}).get("cache_read", 0), 0, meta["output_tokens"]
        )
        last = emu.last_request
        assert last is not None
        calls.append(Call(dict(last.body), request.stable + (1 if request.tools else 0), usage))
    return calls


def theoretical_max(calls: list[Call], rules: CacheRules) -> list[int]:
    """Per request, the stable tokens whose whole prefix an earlier request already sent."""
    sent: set[tuple[str, ...]] = set()
    out = []
    for call in calls:
        segments = tuple(render_chat(call.body)[:-1])  # the last segment is the generation marker
        total = 0
        for k in range(1, call.stable + 1):
            if segments[:k] not in sent:
                break
            total += count_tokens(segments[k - 1])
        out.append(rules.reportable(total))
        sent.update(segments[:k] for k in range(1, len(segments) + 1))
    return out


@dataclass
class Result:
    workload: str
    rules: str
    requests: int
    input_tokens: int
    max_cacheable: int
    cached_plugin: int
    cached_baseline: int
    efficiency_plugin: float
    efficiency_baseline: float
    cost_plugin: Decimal | None
    cost_baseline: Decimal | None
    cost_no_cache: Decimal | None


def _efficiency(calls: list[Call], maxima: list[int]) -> tuple[int, float]:
    served = sum(min(c.usage.cache_read_tokens, m) for c, m in zip(calls, maxima, strict=True))
    total = sum(maxima)
    return sum(c.usage.cache_read_tokens for c in calls), (served / total if total else 1.0)


def _cost(calls: list[Call]) -> tuple[Decimal | None, Decimal | None]:
    ledger = CacheLedger()
    for c in calls:
        ledger.record(c.usage, model=MODEL, provider="zhipuai")
    t = ledger.total
    return t.cost, t.cost_without_caching


def measure(workload: Workload, rules_name: str, rules: CacheRules) -> Result:
    plugin = run(workload, plugin=True, rules=rules)
    baseline = run(workload, plugin=False, rules=rules)
    maxima = theoretical_max(plugin, rules)
    cached_p, eff_p = _efficiency(plugin, maxima)
    cached_b, eff_b = _efficiency(baseline, maxima)
    cost_p, no_cache = _cost(plugin)
    cost_b, _ = _cost(baseline)
    return Result(
        workload.name,
        rules_name,
        len(plugin),
        sum(c.usage.input_tokens for c in plugin),
        sum(maxima),
        cached_p,
        cached_b,
        eff_p,
        eff_b,
        cost_p,
        cost_b,
        no_cache,
    )
