"""LlamaIndex media blocks (`ImageBlock`, `DocumentBlock`, `AudioBlock`, `VideoBlock`) to `MediaPart`.

A block's bytes (LlamaIndex keeps them base64-encoded once validated), its path (left on disk, so a
large video streams to the Files API) or its URL (never fetched here) becomes the part's source,
in LlamaIndex's own order of preference (bytes, then path, then URL). Media types are kept:
``image_mimetype``, ``document_mimetype``, ``video_mimetype``, and an ``AudioBlock``'s ``format``.
"""

from __future__ import annotations

import base64
import binascii
from io import IOBase
from typing import Any

from llama_index.core.base.llms.types import AudioBlock, DocumentBlock, ImageBlock, VideoBlock

from ..errors import InvalidRequestError
from ..media import media_part
from ..messages import MediaPart

__all__ = ["MEDIA_BLOCK_TYPES", "media_from_block"]

MEDIA_BLOCK_TYPES = (ImageBlock, DocumentBlock, AudioBlock, VideoBlock)
_DEFAULT_TITLE = "input_document"  # what DocumentBlock puts in `title` when none was given


def _raw_bytes(value: bytes | IOBase, where: str) -> bytes:
    """A block's bytes: an IO object is read; bytes are LlamaIndex's base64 (raw if they are not)."""
    if isinstance(value, IOBase):
        try:
            value.seek(0)
            data = value.read()
        except (OSError, ValueError) as exc:
            raise InvalidRequestError(f"{where}: cannot read the block's data: {exc}") from None
        if not isinstance(data, bytes):
            raise InvalidRequestError(f"{where}: the block's data stream must be binary")
        return data
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return bytes(value)


def media_from_block(block: Any, where: str) -> MediaPart:
    """The `MediaPart` an image, document, audio or video block stands for."""
    detail: str | None = None
    name: str | None = None
    if isinstance(block, ImageBlock):
        kind, data, mime, detail = "image", block.image, block.image_mimetype, block.detail
    elif isinstance(block, DocumentBlock):
        kind, data, mime = "document", block.data, block.document_mimetype
        name = block.title if block.title and block.title != _DEFAULT_TITLE else None
    elif isinstance(block, AudioBlock):
        kind, data = "audio", block.audio
        mime = f"audio/{block.format.lower().lstrip('.')}" if block.format else None
    elif isinstance(block, VideoBlock):
        kind, data, mime, detail = "video", block.video, block.video_mimetype, block.detail
    else:  # pragma: no cover - callers check the type
        raise InvalidRequestError(f"{where}: {type(block).__name__} is not a media block")
    source: dict[str, Any] = {}
    if data is not None and (not isinstance(data, bytes) or data):
        source["data"] = _raw_bytes(data, where)
    elif block.path is not None:
        source["path"] = block.path
    elif block.url is not None:
        source["url"] = str(block.url)
    else:
        raise InvalidRequestError(f"{where}: a {type(block).__name__} needs data, a path or a url")
    return media_part(kind, where=where, mime_type=mime or None, name=name, detail=detail, **source)
