"""ChatGoogleGenerativeAI (langchain-google-genai): the plugin, the plain model, and a hand-made cache.

Three workloads on the real `ChatGoogleGenerativeAI` against the emulator over loopback HTTP, gemini-2.5-flash
prices: an agent (`create_agent`, 5 questions, each a tool call and an answer: 10 model calls) with a long system
prompt and two tools; 20 questions over a long document in the system prompt; a cold batch of 20 reviews sharing
that prompt (`batch`, 20 at once). Rows: *plugin* (`PromptCachingMiddleware` for the agent, `with_prompt_caching`
otherwise; default ``cache_mode="auto"``; also with ``"always"``), *plain* (the model as it is), and *peer*: the
prefix cached by hand with
langchain-google-genai's `create_context_cache` and the model built with ``cached_content=`` (the caller leaves the
system prompt out of every call). Each runs with Gemini's implicit cache hitting every repeat (the emulator's
default) and missing (Gemini gives no guarantee). Cost is billed cost with storage (the peer's creation and one
hour of storage are added: the handler never sees them); saved = cost without caching minus cost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI, create_context_cache

from cache_integrations.langchain import CacheUsageCallbackHandler, PromptCachingMiddleware, with_prompt_caching
from cache_integrations.pricing import default_price_book
from cache_integrations.testing import CacheRules, Emulator, RunningServer

from .gemini import DOCUMENT, QUESTIONS

MODEL = "gemini-2.5-flash"
KEY = "bench-key"
SYSTEM = "You answer questions about the engineering handbook below; use the tools when asked.\n\n" + DOCUMENT
REVIEWS = [f"Review snippet {i}: def f{i}(x): return x * {i}" for i in range(20)]
AGENT_QUESTIONS = [f"Use lookup_team for team {i + 3}, then answer." for i in range(5)]
ROWS = ("plugin", "plugin, cache_mode=always", "plain", "peer (create_context_cache)")


@tool
def lookup_team(team: str) -> str:
    """Look up a team's approval window."""
    return f"Team {team} approves within two working days."


@tool
def add_numbers(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


TOOLS = [lookup_team, add_numbers]


@dataclass
class ForeignResult:
    workload: str
    implicit: str
    row: str
    calls: int
    input_tokens: int
    cached_tokens: int
    caches_created: int
    cost: Decimal | None
    storage_cost: Decimal | None
    cost_without_caching: Decimal | None
    error: str = ""

    @property
    def saved(self) -> Decimal | None:
        return None if self.cost is None or self.cost_without_caching is None else self.cost_without_caching - self.cost


def _model(server: RunningServer, **kwargs: Any) -> ChatGoogleGenerativeAI:
    return ChatGoogleGenerativeAI(
        model=MODEL, google_api_key=KEY, base_url=server.url, api_version="v1beta", max_retries=0, **kwargs
    )


def _peer_overhead(model: ChatGoogleGenerativeAI, name: str) -> tuple[Decimal, Decimal]:
    """(creation cost, one hour of storage) of a cache made by hand: billed, but never seen by a handler."""
    tokens = model.client.caches.get(name=name).usage_metadata.total_token_count or 0  # type: ignore[union-attr]
    book = default_price_book()
    unit = book.unit_prices(MODEL, ("google",))
    storage = book.storage_price(MODEL, ("google",))
    creation = Decimal(tokens) * unit[0] / 1_000_000 if unit else Decimal(0)
    return creation, Decimal(tokens) * (storage or Decimal(0)) / 1_000_000


def _agent(llm: BaseChatModel, handler: CacheUsageCallbackHandler, *, middleware: list[Any], system: bool) -> None:
    agent = create_agent(llm, TOOLS, system_prompt=SYSTEM if system else None, middleware=middleware)
    for question in AGENT_QUESTIONS:
        agent.invoke({"messages": [("human", question)]}, config={"callbacks": [handler]})


def _document(llm: BaseChatModel, handler: CacheUsageCallbackHandler, *, system: bool) -> None:
    prefix: list[BaseMessage] = [SystemMessage(SYSTEM)] if system else []
    for question in QUESTIONS:
        llm.invoke([*prefix, HumanMessage(question)], config={"callbacks": [handler]})


def _batch(llm: BaseChatModel, handler: CacheUsageCallbackHandler, *, system: bool) -> None:
    prefix: list[BaseMessage] = [SystemMessage(SYSTEM)] if system else []
    inputs: list[Any] = [[*prefix, HumanMessage(r)] for r in REVIEWS]
    llm.batch(inputs, config={"callbacks": [handler], "max_concurrency": 20})


def _run(workload: str, implicit_hits: bool, row: str) -> ForeignResult:
    emu = Emulator() if implicit_hits else Emulator(gemini_rules=CacheRules(enabled=False))
    handler = CacheUsageCallbackHandler(diagnostics=False)
    extra = (Decimal(0), Decimal(0))
    error = ""
    with emu.serve() as server:
        model = _model(server)
        send: Callable[[], None]
        if row.startswith("plugin"):
            mode = "always" if "always" in row else "auto"
            if workload == "agent":
                middleware = [PromptCachingMiddleware(cache_registry="memory", cache_mode=mode)]
                send = lambda: _agent(model, handler, middleware=middleware, system=True)  # noqa: E731
            else:
                wrapped = with_prompt_caching(model, cache_registry="memory", cache_mode=mode)
                send = lambda: _RUNNERS[workload](wrapped, handler, system=True)  # noqa: E731
        elif row == "plain":
            if workload == "agent":
                send = lambda: _agent(model, handler, middleware=[], system=True)  # noqa: E731
            else:
                send = lambda: _RUNNERS[workload](model, handler, system=True)  # noqa: E731
        else:
            name = create_context_cache(
                model, [SystemMessage(SYSTEM)], ttl="3600s", tools=TOOLS if workload == "agent" else None
            )
            peer = _model(server, cached_content=name)
            extra = _peer_overhead(model, name)
            if workload == "agent":
                send = lambda: _agent(peer, handler, middleware=[], system=False)  # noqa: E731
            else:
                send = lambda: _RUNNERS[workload](peer, handler, system=False)  # noqa: E731
        try:
            send()
        except Exception as exc:  # the peer's agent: tools bound next to cached_content
            found = re.search(r"'message': '([^']*)'", str(exc))
            message = (found.group(1) if found else str(exc)).split("\\n", 1)[0].split("\n", 1)[0]
            error = f"{type(exc).__name__} on call {handler.total.calls + 1}: {message}"
    stats = handler.total
    cost = None if stats.cost is None else stats.cost + extra[0] + extra[1]
    storage = None if stats.storage_cost is None else stats.storage_cost + extra[1]
    return ForeignResult(
        workload,
        "hits" if implicit_hits else "misses",
        row,
        stats.calls,
        stats.input_tokens,
        stats.cache_read_tokens,
        emu.counters.caches_created,
        cost,
        storage,
        stats.cost_without_caching,
        error,
    )


_RUNNERS: dict[str, Callable[..., None]] = {"document Q&A (20)": _document, "cold batch (20)": _batch}
WORKLOADS = ("agent", "document Q&A (20)", "cold batch (20)")


def measure() -> list[ForeignResult]:
    return [_run(w, hits, row) for w in WORKLOADS for hits in (True, False) for row in ROWS]


def table(results: list[ForeignResult]) -> list[str]:
    def money(v: Decimal | None) -> str:
        return "n/a" if v is None else f"${v:.5f}"

    lines = [
        "| workload | implicit cache | row | calls | input tokens | cached | caches created | cost (incl. storage) "
        "| of which storage | cost without caching | net saved | error |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.workload} | {r.implicit} | {r.row} | {r.calls} | {r.input_tokens} | {r.cached_tokens} "
            f"| {r.caches_created} | {money(r.cost)} | {money(r.storage_cost)} | {money(r.cost_without_caching)} "
            f"| {money(r.saved)} | {r.error} |"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(table(measure())))
