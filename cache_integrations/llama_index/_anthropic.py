"""Anthropic breakpoints applied to llama-index-llms-anthropic `Anthropic` calls.

The core's `AnthropicBreakpointStrategy` says where the (at most four) breakpoints go; here they become what
llama-index-llms-anthropic sends, on copies of the caller's objects. What that package does with markers
(0.12.3, checked on the wire against the emulator) decides the mechanism:

- it flattens the system messages into one ``system`` string and drops any `CachePoint` in them, so the
  system prompt's breakpoint goes in the request's ``extra_body`` (which the anthropic SDK merges over the
  body): ``system`` as one text block, the same text the package would send, with ``cache_control``;
- a `CachePoint` after a user or assistant block becomes that block's ``cache_control`` (a tool call's
  ``tool_use`` block included): the previous request's end is marked that way;
- a tool message's markers land inside its ``tool_result`` content, where the API refuses them
  (``cache_control is not supported at messages.N.content.M.content.K``, langchain-ai/langchain#34920), so
  a tool message is never marked inside; the request's end, most often tool results in an agent, is marked by
  the top-level ``cache_control`` in ``extra_body`` (automatic caching puts it on the ``tool_result`` block
  itself);
- the last tool dict (Anthropic's format, as `_prepare_chat_with_tools` builds it) takes a ``cache_control`` key.

An LLM with its own ``cache_idx`` set manages its markers itself and is left alone. Markers the caller placed
(`CachePoint` blocks, ``cache_control`` in a message's ``additional_kwargs``, on a tool, or at the top level)
count toward the four and keep their TTLs (`within_budget`, `fit_caller_ttls`).

It plugs into the LlamaIndex `with_prompt_caching` as ``PROVIDER_APPLIERS["anthropic"]`` when that registry
is importable (`cache_integrations.llama_index._foreign`): an applier takes the call (``llm``, ``messages``
laid out by the plan, ``tools``, ``settings``, ``completion``, a frozen dataclass) and the plan and returns
the call to send.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from llama_index.core.base.llms.types import (
    CacheControl,
    CachePoint,
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)

from ..strategies import CachePlan, cache_control_of, fit_caller_ttls, within_budget

__all__ = ["caller_markers", "mark_message", "place_breakpoints", "system_text"]

logger = logging.getLogger("cache_integrations.llama_index")

CallT = TypeVar("CallT")

_TOOL_ROLES = (MessageRole.TOOL, MessageRole.FUNCTION)


def system_text(messages: Sequence[ChatMessage]) -> str:
    """The ``system`` string llama-index-llms-anthropic sends for `messages`: the text blocks of every system
    message, joined by newlines."""
    parts = [b.text for m in messages if m.role == MessageRole.SYSTEM for b in m.blocks if isinstance(b, TextBlock)]
    return "\n".join(parts)


def _ttl(control: Any) -> str:
    if isinstance(control, CacheControl):
        return str(control.ttl or "5m")
    return str(control.get("ttl") or "5m") if isinstance(control, Mapping) else "5m"


def _message_controls(message: ChatMessage) -> list[Any]:
    controls: list[Any] = [b.cache_control for b in message.blocks if isinstance(b, CachePoint)]
    if "cache_control" in message.additional_kwargs:
        controls.append(message.additional_kwargs["cache_control"])
    return controls


def caller_markers(call: Any) -> tuple[int, dict[int, str]]:
    """The caller's own markers in a call: how many the request will carry, and position (-1 tools, else the
    laid-out message index) -> TTL. Markers on system messages are dropped by the package and not counted."""
    count = 0
    ttls: dict[int, str] = {}
    for tool in call.tools or ():
        if isinstance(tool, Mapping) and tool.get("cache_control") is not None:
            count += 1
            ttls[-1] = _ttl(tool["cache_control"])
    for i, message in enumerate(call.messages):
        if message.role == MessageRole.SYSTEM:
            continue
        controls = _message_controls(message)
        count += len(controls)
        if controls:
            ttls[i] = _ttl(controls[-1])
    extra = call.settings.get("extra_body") or {}
    top = call.settings.get("cache_control", extra.get("cache_control") if isinstance(extra, Mapping) else None)
    if top is not None and call.messages:
        count += 1
        ttls[len(call.messages) - 1] = _ttl(top)
    return count, ttls


def _carries(block: Any) -> bool:
    """Whether llama-index-llms-anthropic turns `block` into an Anthropic block that may take a marker."""
    if isinstance(block, TextBlock):
        return bool(block.text)
    return isinstance(block, ImageBlock | DocumentBlock | ToolCallBlock)


def mark_message(message: ChatMessage, control: Mapping[str, str]) -> ChatMessage | None:
    """A copy of a user or assistant `message` with a `CachePoint` right after its last block that can carry
    one; None for a tool or system message, or one with no such block."""
    if message.role in _TOOL_ROLES or message.role == MessageRole.SYSTEM:
        return None
    last = next((j for j in range(len(message.blocks) - 1, -1, -1) if _carries(message.blocks[j])), None)
    if last is None:
        return None
    point = CachePoint(cache_control=CacheControl(type="ephemeral", ttl=control["ttl"]))
    blocks = [*message.blocks[: last + 1], point, *message.blocks[last + 1 :]]
    return message.model_copy(update={"blocks": blocks})


def place_breakpoints(call: CallT, plan: CachePlan) -> CallT:
    """`call` with the plan's breakpoints placed the way llama-index-llms-anthropic sends them (see the module)."""
    c: Any = call
    if not plan.breakpoints or c.completion or getattr(c.llm, "cache_idx", None) is not None:
        return call
    used, ttls = caller_markers(c)
    breakpoints = within_budget(fit_caller_ttls(plan.breakpoints, ttls), used)
    messages: list[ChatMessage] = list(c.messages)
    tools = None if c.tools is None else list(c.tools)
    settings = dict(c.settings)
    extra = dict(settings.get("extra_body") or {})
    for bp in breakpoints:
        control = cache_control_of(bp)
        index = bp.index or 0
        if bp.where == "tools":
            if tools and isinstance(tools[-1], Mapping) and "name" in tools[-1]:
                tools[-1] = {**tools[-1], "cache_control": control}
            else:
                logger.debug("prompt caching: the last tool cannot carry cache_control; %s dropped", bp)
        elif bp.where == "system":
            text = system_text(messages)
            if text and "system" not in extra and "system" not in settings:
                extra["system"] = [{"type": "text", "text": text, "cache_control": control}]
        elif index == len(messages) - 1:
            if "cache_control" not in extra and "cache_control" not in settings:
                extra["cache_control"] = control  # the request's end: automatic caching, tool results included
        elif index < len(messages):
            marked = mark_message(messages[index], control)
            if marked is None:
                logger.debug("prompt caching: message %d (%s) cannot carry a marker; %s dropped", index, bp.where, bp)
            else:
                messages[index] = marked
    if extra:
        settings["extra_body"] = extra
    out = dataclasses.replace(
        c, messages=tuple(messages), tools=None if tools is None else tuple(tools), settings=settings
    )
    return cast(CallT, out)


try:  # the LlamaIndex with_prompt_caching's registry, where it exists
    from ._foreign import PROVIDER_APPLIERS  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - a tree without it: call `place_breakpoints` directly
    pass
else:  # pragma: no cover - exercised where the registry exists
    PROVIDER_APPLIERS["anthropic"] = place_breakpoints
