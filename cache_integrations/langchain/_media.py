"""LangChain multimodal content blocks to the core's `MediaPart`.

Accepted shapes (``langchain_core.messages.content``): the v1 standard blocks ``image``, ``audio``,
``video`` and ``file`` with ``url`` (http(s), ``data:``, a Files API URI), ``base64`` or
``file_id`` plus ``mime_type``; ``text-plain``; the v0 blocks with ``source_type`` ``url`` /
``base64`` / ``id`` / ``text``; and the older shapes LangChain still passes through: OpenAI's
``image_url`` and ``input_audio`` and ``file`` (``{"file": {"file_data" | "file_id", "filename"}}``),
and langchain-google-genai's ``media`` (``data`` or ``file_uri`` with ``mime_type``).
What a URL or id *means* is decided once, in `cache_integrations.media.media_part`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequestError
from ..media import kind_of_mime, media_part, parse_data_url
from ..messages import MediaPart

__all__ = ["MEDIA_BLOCKS", "media_from_block"]

MEDIA_BLOCKS = frozenset(("image", "image_url", "audio", "video", "file", "text-plain", "media", "input_audio"))
"""Content block types that carry media."""

_KIND = {"image": "image", "image_url": "image", "audio": "audio", "input_audio": "audio", "video": "video"}


def _name(block: Mapping[str, Any]) -> str | None:
    extras = block.get("extras")
    for source in (block, extras if isinstance(extras, Mapping) else {}):
        for key in ("filename", "name", "title"):
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _kind(block_type: str, mime: str | None) -> str:
    """The block's kind; ``file`` and ``media`` blocks take theirs from the media type."""
    if block_type in _KIND:
        return _KIND[block_type]
    return kind_of_mime(mime) if mime else "document"


def _str(value: Any, field: str, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequestError(f"{where}: {field} must be a string, got {type(value).__name__}")


def media_from_block(block: Mapping[str, Any], where: str) -> MediaPart:
    """The `MediaPart` a media content block stands for; raises naming `where` when it cannot."""
    block_type = str(block.get("type"))
    mime = _str(block.get("mime_type"), "mime_type", where)
    detail: str | None = None
    fields: dict[str, Any] = {}
    if block_type == "image_url":
        image = block.get("image_url")
        if isinstance(image, Mapping):
            detail = _str(image.get("detail"), "image_url.detail", where)
            image = image.get("url")
        if not isinstance(image, str) or not image:
            raise InvalidRequestError(f"{where}: an image_url block needs image_url.url, got {image!r:.80}")
        fields["url"] = image
        if image.startswith("data:"):  # OpenAI-style clients send PDFs this way too
            try:
                mime = mime or parse_data_url(image)[0]
            except ValueError as exc:
                raise InvalidRequestError(f"{where}: {exc}") from None
            block_type = "file" if kind_of_mime(mime) != "image" else block_type
    elif block_type == "input_audio":
        audio = block.get("input_audio")
        if not isinstance(audio, Mapping) or not isinstance(audio.get("data"), str):
            raise InvalidRequestError(f"{where}: an input_audio block needs input_audio.data (base64)")
        fields["base64_data"] = audio["data"]
        fmt = audio.get("format")
        mime = mime or (f"audio/{fmt}" if isinstance(fmt, str) and fmt else None)
    elif block_type == "file" and isinstance(block.get("file"), Mapping):
        file = block["file"]
        data = _str(file.get("file_data"), "file.file_data", where)
        if data and data.startswith("data:"):
            fields["url"] = data
        elif data:
            fields["base64_data"] = data
        if file.get("file_id"):
            fields["file_id"] = _str(file.get("file_id"), "file.file_id", where)
        fields["name"] = _str(file.get("filename"), "file.filename", where)
    elif block_type == "media":
        data = block.get("data")
        if isinstance(data, (bytes, bytearray)):
            fields["data"] = bytes(data)
        elif data is not None:
            fields["base64_data"] = _str(data, "data", where)
        if block.get("file_uri"):
            fields["url"] = _str(block.get("file_uri"), "file_uri", where)
    elif "source_type" in block:  # LangChain v0 data blocks
        source = block.get("source_type")
        if source == "url":
            fields["url"] = _str(block.get("url"), "url", where)
        elif source == "base64":
            fields["base64_data"] = _str(block.get("data"), "data", where)
        elif source == "id":
            fields["file_id"] = _str(block.get("id"), "id", where)
        elif source == "text":
            fields["data"] = str(block.get("text") or block.get("url") or "").encode()
            mime = mime or "text/plain"
        else:
            raise InvalidRequestError(
                f"{where}: source_type {source!r} is not one of 'url', 'base64', 'id', 'text' for a {block_type} block"
            )
    elif block_type == "text-plain" and isinstance(block.get("text"), str):
        fields["data"] = block["text"].encode()
        mime = mime or "text/plain"
    else:  # v1 standard blocks
        if block.get("url") is not None:
            fields["url"] = _str(block.get("url"), "url", where)
        if block.get("base64") is not None:
            fields["base64_data"] = _str(block.get("base64"), "base64", where)
        if block.get("file_id") is not None:
            fields["file_id"] = _str(block.get("file_id"), "file_id", where)
        if block.get("data") is not None and not fields:  # a common slip: ``data`` for ``base64``
            fields["base64_data"] = _str(block.get("data"), "data", where)
        if block_type == "text-plain":
            mime = mime or "text/plain"
    fields.setdefault("name", _name(block))
    if isinstance(fields.get("base64_data"), str):
        fields["base64_data"] = fields["base64_data"].strip()
    kind = _kind("file" if block_type in ("text-plain", "media") else block_type, mime)
    return media_part(kind, where=where, mime_type=mime, detail=detail, **fields)
