"""The four-part scenario, run through `ChatGLM`, `ChatGemini` and one usage handler, every call labelled.

Each call carries a tag naming its part and its number within the part; the handler files the ledger
record it produced under that label. That is what lets the report attribute batch calls correctly:
batch workers finish in any order, so the order of ledger records says nothing about which call is which.
Parts 1 to 3 run on GLM (implicit prefix caching); part 4 pins a document in an explicit Gemini cache.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import LLMResult
from langchain_core.runnables import RunnableConfig

from ..accounting import CallRecord
from ..langchain import CacheUsageCallbackHandler, ChatGemini, ChatGLM
from ..usage import Usage
from ._pinned import PINNED_DOCUMENT, PINNED_QUESTIONS, PINNED_SYSTEM_PROMPT
from ._review import REVIEW_SYSTEM_PROMPT, SNIPPETS, review_request
from ._spec import SPEC_QUESTIONS, SPEC_SYSTEM_PROMPT
from ._support import SUPPORT_SYSTEM_PROMPT, SUPPORT_TURNS

__all__ = [
    "PARTS",
    "REVIEW_CONCURRENCY",
    "LabelledCall",
    "LabellingUsageHandler",
    "Models",
    "Part",
    "PinnedCache",
    "Provider",
    "Scenario",
    "run_scenario",
]

REVIEW_CONCURRENCY = 4
_TAG_PREFIX = "cache-demo:"

Provider = Literal["glm", "gemini"]
"""Which of the demo's two chat models a part runs on."""


@dataclass(frozen=True)
class Models:
    """The chat models the parts run on."""

    glm: ChatGLM
    gemini: ChatGemini


@dataclass(frozen=True)
class PinnedCache:
    """The Gemini cache part 4 pinned, as it stood after the last question (it is deleted right after)."""

    name: str
    tokens: int
    expire_time: datetime
    ttl_seconds: float


@dataclass(frozen=True)
class LabelledCall:
    """One ledger record and where it belongs in the scenario (``call`` counts from 1 within a part)."""

    part: str
    call: int
    record: CallRecord

    @property
    def usage(self) -> Usage:
        """The record's usage; a call that reported none (never the emulator) plots as zeros."""
        return self.record.usage or Usage()


def _tags(part: str, call: int) -> list[str]:
    return [f"{_TAG_PREFIX}{part}:{call}"]


def _label(tags: Sequence[str] | None) -> tuple[str, int] | None:
    for tag in tags or ():
        if tag.startswith(_TAG_PREFIX):
            part, _, call = tag.removeprefix(_TAG_PREFIX).rpartition(":")
            return part, int(call)
    return None


class LabellingUsageHandler(CacheUsageCallbackHandler):
    """The demo's single usage handler; it also remembers which part and call each record came from."""

    def __init__(self) -> None:
        super().__init__()
        self._labels_lock = threading.Lock()
        self._labelled: list[LabelledCall] = []

    def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        label = _label(kwargs.get("tags"))
        # Held across the ledger update so the records this run adds are exactly the ones we slice off.
        with self._labels_lock:
            before = len(self.ledger.calls)
            super().on_llm_end(response, **kwargs)
            if label is not None:
                part, call = label
                self._labelled += [LabelledCall(part, call, rec) for rec in self.ledger.calls[before:]]

    def labelled_calls(self) -> list[LabelledCall]:
        """Labelled calls in scenario order (part, then call number), whatever order they finished in."""
        rank = {part.key: i for i, part in enumerate(PARTS)}
        with self._labels_lock:
            return sorted(self._labelled, key=lambda c: (rank.get(c.part, len(rank)), c.call))


def _config(handler: LabellingUsageHandler, part: str, call: int, max_concurrency: int | None = None) -> RunnableConfig:
    return RunnableConfig(
        callbacks=[handler], tags=_tags(part, call), run_name=f"{part} #{call}", max_concurrency=max_concurrency
    )


def run_assistant(models: Models, handler: LabellingUsageHandler) -> None:
    """Part 1: every turn resends the system prompt and the whole history, so the cached prefix grows."""
    llm = models.glm
    history: list[BaseMessage] = [SystemMessage(SUPPORT_SYSTEM_PROMPT)]
    for n, question in enumerate(SUPPORT_TURNS, 1):
        history.append(HumanMessage(question))
        history.append(llm.invoke(history, config=_config(handler, "assistant", n)))


def run_document(models: Models, handler: LabellingUsageHandler) -> None:
    """Part 2: each question is a fresh request behind the same document prefix."""
    llm = models.glm
    system = SystemMessage(SPEC_SYSTEM_PROMPT)
    for n, question in enumerate(SPEC_QUESTIONS, 1):
        llm.invoke([system, HumanMessage(question)], config=_config(handler, "document", n))


def run_review(models: Models, handler: LabellingUsageHandler) -> None:
    """Part 3: the first snippet alone warms the cache (as the guide does), the other eleven go in one batch.

    Sent all at once on a cold cache, the concurrent requests would race the first one and miss.
    """
    llm = models.glm
    system = SystemMessage(REVIEW_SYSTEM_PROMPT)
    prompts = [[system, HumanMessage(review_request(snippet))] for snippet in SNIPPETS]
    llm.invoke(prompts[0], config=_config(handler, "review", 1))
    configs = [_config(handler, "review", n, REVIEW_CONCURRENCY) for n in range(2, len(prompts) + 1)]
    llm.batch(list(prompts[1:]), config=configs)


def run_pinned(models: Models, handler: LabellingUsageHandler) -> PinnedCache:
    """Part 4: pin the document in a Gemini cache, ask every question against it, then delete the cache.

    The cache's creation and its storage for the whole TTL are reported on the first question; deleting
    it at the end stops the storage, which Gemini bills for as long as the cache lives. The cache is
    deleted even when a question fails, so an aborted run leaves nothing billing on the account.
    """
    llm = models.gemini
    pinned = llm.cache_context(PINNED_DOCUMENT, system=PINNED_SYSTEM_PROMPT)
    try:
        for n, question in enumerate(PINNED_QUESTIONS, 1):
            pinned.invoke(question, config=_config(handler, "gemini", n))
        return PinnedCache(pinned.cache_name, pinned.tokens, pinned.expire_time, llm.cache_ttl)
    finally:
        pinned.delete()


@dataclass(frozen=True)
class Part:
    """A part of the scenario: its short key (tables, tags, JSON), its title, its model and how it runs.

    `run` returns the cache it pinned when it pins one (part 4), else None.
    """

    key: str
    title: str
    provider: Provider
    calls: int
    run: Callable[[Models, LabellingUsageHandler], PinnedCache | None]


PARTS = (
    Part("assistant", "Multi-turn support assistant", "glm", len(SUPPORT_TURNS), run_assistant),
    Part("document", "Questions over a long document", "glm", len(SPEC_QUESTIONS), run_document),
    Part("review", "Batch code review", "glm", len(SNIPPETS), run_review),
    Part("gemini", "Gemini: pinned long document", "gemini", len(PINNED_QUESTIONS), run_pinned),
)


@dataclass(frozen=True)
class Scenario:
    """What a run produced: the labelled calls in scenario order, and part 4's (deleted) cache."""

    calls: list[LabelledCall]
    pinned: PinnedCache | None


def run_scenario(models: Models, handler: LabellingUsageHandler, progress: Callable[[str], None] = print) -> Scenario:
    """Run every part in order; the calls come back in scenario order."""
    pinned = None
    for i, part in enumerate(PARTS, 1):
        progress(f"[{i}/{len(PARTS)}] {part.title}: {part.calls} calls")
        pinned = part.run(models, handler) or pinned
    if pinned is not None:
        progress(f"      deleted {pinned.name}: its storage stops here")
    return Scenario(handler.labelled_calls(), pinned)
