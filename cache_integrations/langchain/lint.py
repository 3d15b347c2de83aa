"""`lint_prompt`: volatile values in the part of a LangChain prompt that forms the cached prefix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_messages
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.prompts.chat import HumanMessagePromptTemplate
from langchain_core.prompts.message import BaseMessagePromptTemplate

from ..diagnostics import CAUSES, LintFinding, find_volatile, lint_messages
from ._convert import messages_from_langchain, tool_from_langchain

__all__ = ["lint_prompt"]

_TIMELY = re.compile(r"date|time|now|today|timestamp|uuid|request|session|nonce|random|\bid\b", re.I)


def _template_text(template: BaseMessagePromptTemplate) -> str:
    prompt = getattr(template, "prompt", None)
    if isinstance(prompt, list):
        return "".join(str(getattr(p, "template", "")) for p in prompt)
    return str(getattr(prompt, "template", ""))


def _lint_template(prompt: ChatPromptTemplate) -> list[LintFinding]:
    findings: list[LintFinding] = []
    parts = list(prompt.messages)
    last_human = max((i for i, p in enumerate(parts) if isinstance(p, HumanMessagePromptTemplate)), default=len(parts))
    for i, part in enumerate(parts):
        if i >= last_human or isinstance(part, MessagesPlaceholder):
            continue  # the newest question, and the history (stable while it is append-only)
        where = f"prompt.messages[{i}] ({type(part).__name__})"
        if isinstance(part, BaseMessage):
            findings += [
                LintFinding(where, kind, offset, value, CAUSES["volatile_content"][1])
                for kind, offset, value in find_volatile(part.text)
            ]
            continue
        if not isinstance(part, BaseMessagePromptTemplate):
            continue
        text = _template_text(part)
        for kind, offset, value in find_volatile(text):
            findings.append(LintFinding(where, kind, offset, value, CAUSES["volatile_content"][1]))
        for variable in part.input_variables:
            offset = text.find("{" + variable + "}")
            timely = bool(_TIMELY.search(variable))
            findings.append(
                LintFinding(
                    where,
                    "template variable" + (" (likely changes per call)" if timely else ""),
                    offset,
                    "{" + variable + "}",
                    f"fill {{{variable}}} with the same value on every call, or move it to the last user message",
                )
            )
    return findings


def lint_prompt(prompt: ChatPromptTemplate | Sequence[Any], tools: Sequence[Any] = ()) -> list[LintFinding]:
    """Volatile values where the provider's cache would need stability.

    `prompt` is a `ChatPromptTemplate` (template variables in the prefix are reported too, since a
    value that changes per call breaks the cache) or messages in any form LangChain accepts.
    Example: ``lint_prompt([("system", f"Today is {date.today()}. ..."), ("human", "hi")])`` reports
    the date in the system prompt and suggests moving it to the last user message.
    """
    if isinstance(prompt, ChatPromptTemplate):
        return _lint_template(prompt)
    messages = messages_from_langchain(convert_to_messages(list(prompt)))
    return lint_messages(messages, [tool_from_langchain(t) for t in tools])
