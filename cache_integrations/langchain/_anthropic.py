"""Anthropic breakpoints applied to `langchain_anthropic.ChatAnthropic` calls.

The core's `AnthropicBreakpointStrategy` says where the (at most four) `cache_control` breakpoints go: the end
of the system prompt (or of the tools), the end of the request, and the previous request's end when the turn
added more than the 20-block lookback bridges. Here they become what ChatAnthropic sends, on copies of the
caller's objects (nothing the caller holds is changed):

- the request's end: the top-level ``cache_control`` setting. ChatAnthropic passes it to the direct API
  (automatic caching, which marks the last block that can take a marker) and turns it into a block marker for
  other transports, so the last message is sent as the caller wrote it;
- a system prompt: ``cache_control`` on its last text block (a string becomes one text block, the same prompt
  on the wire);
- message ``i``: on its last block that keeps a marker through ChatAnthropic's formatting. A `ToolMessage`
  becomes the ``tool_result`` block ChatAnthropic itself would build, with the marker added at the
  ``tool_result`` level (its content stays byte for byte the same). An `AIMessage` with tool calls can only
  carry it on its text: ChatAnthropic rebuilds ``tool_use`` blocks from ``tool_calls`` without markers;
- the tools: ``cache_control`` on the last tool (a dict tool in Anthropic's format: the key; a `BaseTool`:
  ``extras["cache_control"]``, which ChatAnthropic copies into the tool definition).

Markers the caller placed (on messages, tools or the top-level setting) count toward the four (the
coordinator tells the strategy), and `fit_caller_ttls` keeps our TTLs valid next to theirs: a 1-hour
breakpoint may not follow a 5-minute one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from langchain_core.messages import BaseMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool

from ..strategies import CachePlan, cache_control_of, fit_caller_ttls
from ._foreign import PROVIDER_APPLIERS, ForeignCall, tool_cache_control

__all__ = ["apply_breakpoints", "caller_ttls", "mark_message", "mark_tool"]

logger = logging.getLogger("cache_integrations.langchain")

# Content blocks whose `cache_control` survives ChatAnthropic's formatting (text is checked for emptiness).
_MARKABLE = frozenset(
    (
        "text",
        "image",
        "file",
        "document",
        "text-plain",
        "search_result",
        "tool_result",
        "server_tool_use",
        "mcp_tool_use",
        "mcp_tool_result",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
    )
)


def _markable(block: Any, *, system: bool) -> bool:
    if isinstance(block, str):
        return bool(block.strip())
    if not isinstance(block, Mapping):
        return False
    kind = block.get("type")
    if kind == "text":
        return bool(str(block.get("text") or "").strip())
    return not system and kind in _MARKABLE


def _block_control(block: Any) -> Any:
    if not isinstance(block, Mapping):
        return None
    extras = block.get("extras")
    control = block.get("cache_control")
    if control is None and isinstance(extras, Mapping):
        control = extras.get("cache_control")
    if control is None and block.get("type") == "tool_result" and isinstance(block.get("content"), list):
        control = next((_block_control(b) for b in reversed(block["content"]) if _block_control(b)), None)
    return control


def _message_control(message: BaseMessage) -> Any:
    """The caller's own `cache_control` on a message (any block, or its `additional_kwargs`), if any."""
    content = message.content
    if isinstance(content, list):
        control = next((c for b in reversed(content) if (c := _block_control(b)) is not None), None)
        if control is not None:
            return control
    return message.additional_kwargs.get("cache_control")


def _ttl(control: Any) -> str:
    return str(control.get("ttl") or "5m") if isinstance(control, Mapping) else "5m"


def _mark_blocks(content: Sequence[Any], control: Mapping[str, str], *, system: bool) -> list[Any] | None:
    """A copy of `content` with `control` on its last block that keeps it, or None when none does."""
    blocks = list(content)
    for j in range(len(blocks) - 1, -1, -1):
        block = blocks[j]
        if not _markable(block, system=system):
            continue
        if isinstance(block, str):
            blocks[j] = {"type": "text", "text": block, "cache_control": dict(control)}
        else:
            blocks[j] = {**block, "cache_control": dict(control)}
        return blocks
    return None


def _tool_result_block(message: ToolMessage) -> list[dict[str, Any]]:
    """The ``tool_result`` block(s) ChatAnthropic builds from `message`, so a marked copy sends the same."""
    try:
        from langchain_anthropic.chat_models import _merge_messages
    except ImportError:  # pragma: no cover - langchain-anthropic without it: build the documented shape
        pass
    else:
        merged = _merge_messages([message])
        content = merged[0].content if len(merged) == 1 else None
        if isinstance(content, list) and content and all(isinstance(b, dict) for b in content):
            return [dict(b) for b in content if isinstance(b, dict)]
    return [  # pragma: no cover - see above
        {
            "type": "tool_result",
            "content": message.content,
            "tool_use_id": message.tool_call_id,
            "is_error": message.status == "error",
        }
    ]


def mark_message(message: BaseMessage, control: Mapping[str, str]) -> BaseMessage | None:
    """A copy of `message` that ChatAnthropic sends with `control` on its last markable block, or None when
    no block of it can carry a marker (an AIMessage holding only tool calls, an empty message)."""
    if isinstance(message, ToolMessage):
        blocks = _tool_result_block(message)
        if not blocks:
            return None
        blocks[-1] = {**blocks[-1], "cache_control": dict(control)}
        return message.model_copy(update={"content": blocks})
    system = isinstance(message, SystemMessage) or message.type == "system"
    content = message.content
    # tool_use blocks are never marked: ChatAnthropic rebuilds them from `tool_calls`, without markers, so an
    # AIMessage with tool calls carries the marker on its text (a shorter prefix) or not at all.
    marked = _mark_blocks([content] if isinstance(content, str) else content, control, system=system)
    if marked is None:
        return None
    return message.model_copy(update={"content": marked})


def mark_tool(tool: Any, control: Mapping[str, str]) -> Any | None:
    """A copy of `tool` that ChatAnthropic sends with `control`, or None for a tool it would not carry it on."""
    if isinstance(tool, BaseTool):
        return tool.model_copy(update={"extras": {**(tool.extras or {}), "cache_control": dict(control)}})
    if isinstance(tool, Mapping) and "name" in tool and "input_schema" in tool:
        return {**tool, "cache_control": dict(control)}
    return None


def _laid_out(call: ForeignCall, plan: CachePlan) -> list[tuple[str, int]]:
    """For each laid-out message index (the plan's coordinates), where that message is in `call`:
    (``"system"`` | ``"messages"``, position). Without a separate system prompt the coordinator already
    reordered `call.messages` by the plan."""
    if not call.system:
        return [("messages", i) for i in range(len(call.messages))]
    n = len(call.system)
    flat = [("system", i) for i in range(n)] + [("messages", i) for i in range(len(call.messages))]
    order = plan.order if len(plan.order) == len(flat) else tuple(range(len(flat)))
    return [flat[i] for i in order]


def caller_ttls(call: ForeignCall, plan: CachePlan) -> dict[int, str]:
    """The caller's own markers: position (-1 tools, else laid-out message index) -> TTL."""
    out: dict[int, str] = {}
    for tool in call.tools:
        control = tool_cache_control(tool)
        if control is not None:
            out[-1] = _ttl(control)
    slots = _laid_out(call, plan)
    for i, (where, k) in enumerate(slots):
        control = _message_control(getattr(call, where)[k])
        if control is not None:
            out[i] = _ttl(control)
    top = call.settings.get("cache_control")
    if top is not None and slots:
        out[len(slots) - 1] = _ttl(top)
    return out


def apply_breakpoints(call: ForeignCall, plan: CachePlan) -> ForeignCall:
    """`call` with the plan's breakpoints placed the way ChatAnthropic sends them (see the module)."""
    if not plan.breakpoints:
        return call
    breakpoints = fit_caller_ttls(plan.breakpoints, caller_ttls(call, plan))
    slots = _laid_out(call, plan)
    system = list(call.system)
    messages = list(call.messages)
    tools = list(call.tools)
    settings = dict(call.settings)
    for bp in breakpoints:
        control = cache_control_of(bp)
        if bp.where == "tools":
            marked_tool = mark_tool(tools[-1], control) if tools else None
            if marked_tool is None:
                logger.debug("prompt caching: the last tool cannot carry cache_control; breakpoint %s dropped", bp)
            else:
                tools[-1] = marked_tool
            continue
        index = bp.index or 0
        if index >= len(slots):
            continue
        if bp.where == "message" and index == len(slots) - 1 and "cache_control" not in settings:
            settings["cache_control"] = control  # the request's end: ChatAnthropic's automatic caching
            continue
        where, k = slots[index]
        target = system if where == "system" else messages
        marked = mark_message(target[k], control)
        if marked is None:
            logger.debug("prompt caching: message %d cannot carry cache_control; breakpoint %s dropped", index, bp)
            continue
        target[k] = marked
    return replace(call, system=tuple(system), messages=tuple(messages), tools=tuple(tools), settings=settings)


PROVIDER_APPLIERS["anthropic"] = apply_breakpoints
