"""OpenAI (and DeepSeek) on the emulator's routing physics: the user's ChatOpenAI with and without this package.

Three workloads on one ~3.4k-token system prompt, against `Emulator(openai_physics=OpenAIPhysics())` (8
cache machines, routing on the first 256 tokens and `prompt_cache_key`, overflow above 15 requests a
minute per prefix+key, a prefix readable once its writer completed; `cache_integrations.testing.physics`)
over loopback HTTP, with the emulator clock held in one busy minute: a cold batch of 20 questions sent at
once (`max_concurrency=20`; the plain batch is made certainly concurrent with `hold_answers`); four agent
threads of 6 model calls each (`create_agent`, one tool); a multi-tenant chat of 8 tenants x 5 turns
interleaved. Rows: the plugin (`with_prompt_caching` for batch and chat, `PromptCachingMiddleware` for the
agent), the same ChatOpenAI without it, and the best peer: LangChain ships no OpenAI caching middleware
(only Anthropic, Bedrock, Fireworks and DashScope ones) and LiteLLM is not in this project's lock, so
there is none to run. Hits are requests that read any cached tokens; cost is billed input and output at
genai-prices' rates for gpt-5-mini (deepseek-chat for DeepSeek) through the project's PriceBook, and the
ratio is billed cost over the cost of the same calls without caching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.tools import tool
from langchain_deepseek import ChatDeepSeek
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver

from cache_integrations.langchain import (
    CacheUsageCallbackHandler,
    PromptCachingMiddleware,
    with_prompt_caching,
)
from cache_integrations.testing import Emulator, FakeClock, OpenAIPhysics, RunningServer

from .workloads import SYSTEM

__all__ = ["OpenAIResult", "measure"]

MODEL = "gpt-5-mini"
DEEPSEEK_MODEL = "deepseek-chat"
HANDBOOK = SYSTEM + "\n\nAddendum.\n" + SYSTEM.replace("Handbook", "Addendum")
TOPICS = [
    "retention", "escalation", "billing", "access", "incidents", "onboarding", "backups", "quotas", "regions",
    "invoices", "refunds", "tickets", "audits", "exports", "sso", "api keys", "webhooks", "limits", "support", "sla",
]  # fmt: skip
PEER = "LangChain has no OpenAI caching middleware and LiteLLM is not in the lock"


@dataclass
class OpenAIResult:
    provider: str
    workload: str
    row: str
    requests: int
    hits: int
    input_tokens: int
    cached_tokens: int
    cost: Decimal | None
    cost_without_caching: Decimal | None

    @property
    def ratio(self) -> float | None:
        if self.cost is None or not self.cost_without_caching:
            return None
        return float(self.cost / self.cost_without_caching)


@tool
def lookup_policy(topic: str) -> str:
    """Look up the handbook clause for a topic."""
    return f"Policy for {topic}: approval within 5 days, logged with a ticket."


def _batch(llm: BaseChatModel, emu: Emulator, plugin: bool, handler: CacheUsageCallbackHandler) -> None:
    inputs: Any = [[("system", HANDBOOK), ("human", f"{t}: which clause applies first?")] for t in TOPICS]
    if not plugin:
        emu.hold_answers(20)  # sent at once, so certainly in flight together
    llm.batch(inputs, config={"max_concurrency": 20, "callbacks": [handler]})


def _agent(llm: BaseChatModel, emu: Emulator, plugin: bool, handler: CacheUsageCallbackHandler) -> None:
    middleware = [PromptCachingMiddleware(provider="openai")] if plugin else []
    agent = create_agent(
        llm, [lookup_policy], system_prompt=HANDBOOK, middleware=middleware, checkpointer=InMemorySaver()
    )
    for thread in ("t-1", "t-2", "t-3", "t-4"):
        config: Any = {"configurable": {"thread_id": thread}, "callbacks": [handler]}
        for topic in ("billing", "refunds", "sso"):
            agent.invoke({"messages": [("human", f"Look up the policy for {topic}.")]}, config=config)


def _chat(llm: BaseChatModel, emu: Emulator, plugin: bool, handler: CacheUsageCallbackHandler) -> None:
    histories: dict[str, list[Any]] = {f"tenant-{i}": [] for i in range(8)}
    for turn in range(5):
        for tenant, history in histories.items():
            history.append(("human", f"Turn {turn + 1}: how does clause {turn + 3} apply to {tenant}?"))
            config: Any = {"metadata": {"thread_id": tenant}, "callbacks": [handler]}
            reply = llm.invoke([("system", HANDBOOK), *history], config=config)
            history.append(("ai", str(reply.content)))


Workload = Callable[[BaseChatModel, Emulator, bool, CacheUsageCallbackHandler], None]
WORKLOADS: tuple[tuple[str, str, Workload], ...] = (
    ("cold batch of 20 (one prefix)", "with_prompt_caching", _batch),
    ("4 agent threads x 6 calls", "PromptCachingMiddleware", _agent),
    ("chat: 8 tenants x 5 turns", "with_prompt_caching", _chat),
)


def _openai(server: RunningServer) -> BaseChatModel:
    return ChatOpenAI(model=MODEL, api_key="bench", base_url=server.openai_base_url, max_retries=0)


def _deepseek(server: RunningServer) -> BaseChatModel:
    return ChatDeepSeek(model=DEEPSEEK_MODEL, api_key="bench", base_url=server.deepseek_base_url, max_retries=0)


def _run(provider: str, workload: str, row: str, run: Workload, plugin: bool) -> OpenAIResult:
    if provider == "openai":
        emu = Emulator(clock=FakeClock(), openai_physics=OpenAIPhysics())
    else:
        emu = Emulator(clock=FakeClock(), cache_write_on_completion=True)
    handler = CacheUsageCallbackHandler(diagnostics=False)
    with emu.serve() as server:
        base = _openai(server) if provider == "openai" else _deepseek(server)
        llm: BaseChatModel = base
        if plugin and run is not _agent:
            llm = with_prompt_caching(base, provider=provider)
        run(llm, emu, plugin, handler)
    sent = [r for r in emu.requests if r.path.endswith("/chat/completions") and r.usage]
    cached = [int(r.usage["prompt_tokens_details"]["cached_tokens"]) for r in sent if r.usage]
    stats = handler.total
    if stats.cache_read_tokens != sum(cached):  # the handler must agree with what the server sent
        raise AssertionError(f"{workload}/{row}: handler {stats.cache_read_tokens} != emulator {sum(cached)}")
    return OpenAIResult(
        provider,
        workload,
        row,
        len(sent),
        sum(1 for c in cached if c > 0),
        stats.input_tokens,
        stats.cache_read_tokens,
        stats.cost,
        stats.cost_without_caching,
    )


def measure() -> list[OpenAIResult]:
    """Each workload with the plugin and plain on OpenAI's physics; the cold batch also on DeepSeek."""
    out: list[OpenAIResult] = []
    for workload, plugin_row, run in WORKLOADS:
        out.append(_run("openai", workload, f"ChatOpenAI + {plugin_row}", run, True))
        out.append(_run("openai", workload, "ChatOpenAI (plain)", run, False))
    batch = WORKLOADS[0]
    out.append(_run("deepseek", batch[0], "ChatDeepSeek + with_prompt_caching", batch[2], True))
    out.append(_run("deepseek", batch[0], "ChatDeepSeek (plain)", batch[2], False))
    return out
