"""Render requests into the single prompt text a chat template would produce.

Rendering works on the JSON *as received*: tool definitions are re-serialised with ``json.dumps``,
which keeps the sender's key order, and tools/messages keep their order. A client that reorders
tools or schema keys between calls therefore changes the prompt and loses its cache, exactly the
failure mode this library exists to prevent. The result is a list of segments that the caller joins
with newlines; token counts are additive across segments because whitespace is never a token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MediaRenderer = Callable[[Mapping[str, Any]], str]
"""Renders one ``inlineData`` / ``fileData`` part as prompt text (the emulator's Files API supplies it)."""

CHAT_GENERATION_MARKER = "<|assistant|>"
GEMINI_GENERATION_MARKER = "<|model|>"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _part_placeholder(kind: str) -> str:
    return f"<|{kind}|>"


def render_chat_content(content: Any) -> str:
    """Text of an OpenAI-style ``content`` (string, ``None`` or a list of typed parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out: list[str] = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping):
                kind = str(part.get("type", "text"))
                if kind == "text":
                    out.append(str(part.get("text", "")))
                elif kind in ("image_url", "image", "input_image"):
                    out.append(_part_placeholder("image"))
                elif kind in ("input_audio", "audio"):
                    out.append(_part_placeholder("audio"))
                elif kind in ("video_url", "video"):
                    out.append(_part_placeholder("video"))
                else:
                    out.append(_part_placeholder(kind))
        return "\n".join(out)
    return _dumps(content)


def render_chat(body: Mapping[str, Any], *, preserve_thinking: bool = False) -> list[str]:
    """Segments of an OpenAI/GLM chat request: tools, then each message, then the generation marker."""
    segments: list[str] = []
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        segments.append("<|tools|>\n" + "\n".join(_dumps(t) for t in tools))
    for msg in body.get("messages") or []:
        if not isinstance(msg, Mapping):
            continue
        role = str(msg.get("role", ""))
        text = render_chat_content(msg.get("content"))
        if role == "assistant":
            lines = [CHAT_GENERATION_MARKER]
            reasoning = msg.get("reasoning_content")
            if preserve_thinking and isinstance(reasoning, str) and reasoning:
                lines.append("<|think|>\n" + reasoning)
            if text:
                lines.append(text)
            for call in msg.get("tool_calls") or []:
                fn = call.get("function", {}) if isinstance(call, Mapping) else {}
                args = fn.get("arguments", "")
                lines.append(
                    "<|tool_call|>\n"
                    + str(fn.get("name", ""))
                    + "\n"
                    + (args if isinstance(args, str) else _dumps(args))
                )
            segments.append("\n".join(lines))
        elif role == "tool":
            segments.append(f"<|tool|>\n{msg.get('tool_call_id', '')}\n{text}")
        else:
            name = msg.get("name")
            head = f"<|{role}|>" if not name else f"<|{role}|> {name}"
            segments.append(f"{head}\n{text}")
    segments.append(CHAT_GENERATION_MARKER)
    return segments


def _gemini_part(part: Mapping[str, Any], media: MediaRenderer | None = None) -> str:
    if "text" in part:
        return str(part.get("text") or "")
    call = part.get("functionCall") or part.get("function_call")
    if isinstance(call, Mapping):
        return f"<|function_call|>\n{call.get('name', '')}\n{_dumps(call.get('args', {}))}"
    resp = part.get("functionResponse") or part.get("function_response")
    if isinstance(resp, Mapping):
        return f"<|function_response|>\n{resp.get('name', '')}\n{_dumps(resp.get('response', {}))}"
    if media is not None and any(isinstance(part.get(k), Mapping) for k in _BLOB_KEYS):
        return media(part)
    for key in _BLOB_KEYS:
        blob = part.get(key)
        if isinstance(blob, Mapping):
            mime = str(blob.get("mimeType") or blob.get("mime_type") or "")
            return _part_placeholder("image" if mime.startswith("image/") else "media")
    return _dumps(part)


_BLOB_KEYS = ("inlineData", "inline_data", "fileData", "file_data")


def render_gemini_contents(contents: Any, media: MediaRenderer | None = None) -> list[str]:
    """One segment per ``Content``: a role marker and its parts (media through `media` when given)."""
    segments: list[str] = []
    if not isinstance(contents, list):
        return segments
    for content in contents:
        if not isinstance(content, Mapping):
            continue
        role = str(content.get("role") or "user")
        parts = content.get("parts") or []
        body = "\n".join(_gemini_part(p, media) for p in parts if isinstance(p, Mapping))
        segments.append(f"<|{role}|>\n{body}")
    return segments


def render_gemini_prefix(system_instruction: Any, tools: Any, tool_config: Any) -> list[str]:
    """Segments for the parts of a Gemini request that may live in a ``cachedContent``."""
    segments: list[str] = []
    if isinstance(tools, list) and tools:
        segments.append("<|tools|>\n" + "\n".join(_dumps(t) for t in tools))
    if tool_config:
        segments.append("<|tool_config|>\n" + _dumps(tool_config))
    if system_instruction:
        if isinstance(system_instruction, str):
            text = system_instruction
        elif isinstance(system_instruction, Mapping):
            parts: Sequence[Any] = system_instruction.get("parts") or []
            text = "\n".join(_gemini_part(p) for p in parts if isinstance(p, Mapping))
        else:
            text = _dumps(system_instruction)
        segments.append("<|system|>\n" + text)
    return segments
