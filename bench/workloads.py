"""Benchmark workloads: the same logical conversation built by a cache-aware app and by a typical one.

Each workload yields its requests one by one (a multi-turn workload needs the previous answer).
`app` is what a typical app sends, with the one perturbation that workload is known for (named in
`Workload.perturbation`). The plugin run sends the same `app` messages and tools through ChatGLM with
its layout step on; the baseline run sends them with the layout step off. Only where the fix needs
the app's cooperation (RAG: order documents with `stable_order`) does `plugin` give other messages.
`stable` counts the leading messages, after the layout step, whose content is stable.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool

from cache_integrations.layout import stable_order

__all__ = ["WORKLOADS", "Request", "Workload"]


@dataclass
class Request:
    app: list[BaseMessage]
    stable: int
    tools: list[Any] = field(default_factory=list)
    plugin: list[BaseMessage] | None = None

    def messages(self, plugin: bool) -> list[BaseMessage]:
        return self.plugin if plugin and self.plugin is not None else self.app


@dataclass
class Workload:
    name: str
    description: str
    perturbation: str
    steps: Callable[[], Iterator[Callable[[AIMessage | None], Request]]]


def _paragraphs(topic: str, n: int, seed: int) -> str:
    rng = random.Random(seed)
    verbs = ["governs", "describes", "limits", "extends", "replaces", "documents", "audits", "schedules"]
    nouns = ["retention", "escalation", "billing", "access review", "incident response", "onboarding", "backups"]
    lines = []
    for i in range(n):
        lines.append(
            f"{topic} §{i + 1}: this clause {rng.choice(verbs)} {rng.choice(nouns)} for team {rng.randint(1, 40)}; "
            f"exceptions need approval within {rng.randint(2, 30)} days and are logged with ticket "
            f"{rng.randint(1000, 9999)}. Reviewers check scope, owner, expiry and the rollback plan."
        )
    return "\n".join(lines)


SYSTEM = "You are the support assistant of Acme Cloud. Follow the policy handbook below.\n\n" + _paragraphs(
    "Handbook", 60, 1
)
PROFILE = "Known facts about the user: name Dana, plan Enterprise, region eu-west, prefers short answers."
DOCS = [(f"doc-{i:02d}", _paragraphs(f"Spec {i}", 12, 100 + i)) for i in range(10)]
REVIEW_RULES = "You review code for a payments company. Check each snippet against these rules.\n\n" + _paragraphs(
    "Review rule", 45, 7
)
SNIPPETS = [
    f"def handler_{i}(event):\n    amount = event['amount'] * {i + 2}\n    return charge(event['card'], amount)"
    for i in range(50)
]


def _chat20() -> Iterator[Callable[[AIMessage | None], Request]]:
    history: list[BaseMessage] = []
    for turn in range(20):

        def step(reply: AIMessage | None, turn: int = turn) -> Request:
            if reply is not None:
                history.append(AIMessage(content=reply.content))
            history.append(HumanMessage(f"Question {turn + 1}: how does clause {turn + 3} apply to my team?"))
            past, question = history[:-1], history[-1]
            app = [SystemMessage(SYSTEM), *past, SystemMessage(PROFILE), question]
            return Request(app, stable=len(app) - 1)

        yield step


def _context(docs: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"[{doc_id}]\n{text}" for doc_id, text in docs)


def _rag() -> Iterator[Callable[[AIMessage | None], Request]]:
    instructions = "Answer strictly from the context documents; cite document ids."
    for q in range(15):

        def step(reply: AIMessage | None, q: int = q) -> Request:
            retrieved = DOCS[:]
            random.Random(q).shuffle(retrieved)  # retrieval order follows the scores, which vary per question
            question = f"Question {q + 1}: what approval window applies to team {q + 4}?"
            plugin_ctx = _context(stable_order(retrieved, key=lambda d: d[0]))
            plugin = [SystemMessage(instructions), HumanMessage(plugin_ctx), HumanMessage(question)]
            app = [SystemMessage(instructions), HumanMessage(_context(retrieved) + "\n\n" + question)]
            return Request(app, stable=2, plugin=plugin)

        yield step


def _make_tools() -> list[StructuredTool]:
    def make(name: str, doc: str) -> StructuredTool:
        def fn(query: str, limit: int = 5) -> str:
            return f"{name}: 3 results for {query!r} (limit {limit})"

        return StructuredTool.from_function(fn, name=name, description=doc)

    specs = [
        ("search_tickets", "Search support tickets by free text."),
        ("get_invoice", "Fetch an invoice by customer and month."),
        ("list_incidents", "List open incidents for a region."),
        ("lookup_customer", "Look up a customer record by name or id."),
        ("check_quota", "Check the remaining quota of a project."),
        ("read_runbook", "Read the runbook section for a service."),
    ]
    return [make(n, d) for n, d in specs]


def _agent10() -> Iterator[Callable[[AIMessage | None], Request]]:
    tools = _make_tools()
    history: list[BaseMessage] = []
    system = SystemMessage("You are an operations agent. Use the tools; one tool call per step.\n" + SYSTEM[:3000])
    for i in range(20):

        def step(reply: AIMessage | None, i: int = i) -> Request:
            if reply is not None:
                history.append(reply)
                if reply.tool_calls:
                    call = reply.tool_calls[0]
                    history.append(ToolMessage(f"result of {call['name']} for step {i // 2}", tool_call_id=call["id"]))
            if i % 2 == 0:
                name = tools[(i // 2) % len(tools)].name
                history.append(HumanMessage(f"Step {i // 2 + 1}: use {name} for the Dana account."))
            shuffled = tools[:]
            random.Random(i).shuffle(shuffled)  # dynamic tool selection reorders the registry each step
            app = [system, *history]
            return Request(app, stable=len(app) - 1, tools=shuffled)

        yield step


def _batch50() -> Iterator[Callable[[AIMessage | None], Request]]:
    for i, snippet in enumerate(SNIPPETS):

        def step(reply: AIMessage | None, snippet: str = snippet, i: int = i) -> Request:
            ask = HumanMessage(f"Review snippet {i + 1}:\n```python\n{snippet}\n```")
            return Request([ask, SystemMessage(REVIEW_RULES)], stable=1)

        yield step


WORKLOADS = [
    Workload(
        "chat-20-turns",
        "20-turn support chat: long handbook system prompt, user profile, append-only history",
        "memory pattern: the profile system message is inserted after the history every turn",
        _chat20,
    ),
    Workload(
        "rag-fixed-docs",
        "15 questions over the same 10 retrieved documents (about 2.3k tokens each request)",
        "documents in retrieval-score order, which changes with every question",
        _rag,
    ),
    Workload(
        "agent-10-steps",
        "10-step tool-calling agent (20 requests), 6 tools, tool results appended",
        "the tool registry yields the tools in a different order at every step",
        _agent10,
    ),
    Workload(
        "batch-50-reviews",
        "50 code reviews sharing one long review instruction (the seed's batch example)",
        "the prompt template puts the shared instruction after the snippet",
        _batch50,
    ),
]
