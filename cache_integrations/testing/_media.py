"""Media token accounting for the emulated Gemini: Google's published per-image, per-page, per-second rules.

Rules (https://ai.google.dev/gemini-api/docs/tokens, "Multimodal tokens"; the document-processing
guide https://ai.google.dev/gemini-api/docs/document-processing):

- an image with both sides <= 384 px is 258 tokens; a larger one is cropped and scaled into
  768x768-px tiles of 258 tokens each (``ceil(w / 768) * ceil(h / 768) * 258``);
- a PDF is 258 tokens per page (Gemini 2.x; Gemini 3's default media resolution may count more);
- video is 263 tokens per second, audio 32 tokens per second;
- text documents (``text/*``, JSON) are tokenized as text.

What the emulator can read from the bytes it reads with small, well-kept libraries, each optional
(the ``testing`` extra installs them): page counts with pypdf, image sizes with Pillow, audio and
video durations with mutagen (stdlib ``wave`` for WAV, the ``avih`` header for AVI). When a library
is missing or the bytes are not what their type says, the count falls back to an estimate and
`MediaInfo.source` says so; real Gemini's counts (``countTokens``, ``usageMetadata``) are always the ones to trust.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import struct
import threading
import wave
from collections import OrderedDict
from dataclasses import dataclass

from .tokenizer import Tokenizer

__all__ = [
    "AUDIO_TOKENS_PER_SECOND",
    "IMAGE_TOKENS",
    "PDF_PAGE_TOKENS",
    "VIDEO_TOKENS_PER_SECOND",
    "MediaInfo",
    "MediaMeter",
    "image_tokens",
    "is_supported_mime",
]

IMAGE_TOKENS = 258
IMAGE_TILE_PX = 768
SMALL_IMAGE_PX = 384
PDF_PAGE_TOKENS = 258
VIDEO_TOKENS_PER_SECOND = 263
AUDIO_TOKENS_PER_SECOND = 32
# Bitrates for estimating a duration the bytes would not tell (mutagen missing or a format it cannot read).
_AUDIO_BYTES_PER_SECOND = 16_000  # 128 kbit/s
_VIDEO_BYTES_PER_SECOND = 250_000  # 2 Mbit/s
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")
_TEXT_MIMES = frozenset(
    (
        "application/json",
        "application/x-javascript",
        "application/javascript",
        "application/x-python",
        "application/rtf",
    )
)


def is_supported_mime(mime: str) -> bool:
    """What Gemini's generateContent takes as media (anything else: 400 "Unsupported MIME type")."""
    top = mime.split("/", 1)[0]
    return top in ("image", "audio", "video", "text") or mime == "application/pdf" or mime in _TEXT_MIMES


def image_tokens(width: int, height: int) -> int:
    """258 for an image within 384x384 px, else 258 per 768x768 tile."""
    if width <= SMALL_IMAGE_PX and height <= SMALL_IMAGE_PX:
        return IMAGE_TOKENS
    return math.ceil(width / IMAGE_TILE_PX) * math.ceil(height / IMAGE_TILE_PX) * IMAGE_TOKENS


@dataclass(frozen=True)
class MediaInfo:
    """What the emulator made of one piece of media: its tokens and how it knows (`source`)."""

    mime: str
    tokens: int
    source: str
    width: int | None = None
    height: int | None = None
    pages: int | None = None
    duration: float | None = None

    @property
    def modality(self) -> str:
        """The ``promptTokensDetails`` modality: IMAGE, AUDIO, VIDEO, DOCUMENT or TEXT."""
        top = self.mime.split("/", 1)[0]
        if top in ("image", "audio", "video"):
            return top.upper()
        return "DOCUMENT" if self.mime == "application/pdf" else "TEXT"


def _image(mime: str, data: bytes) -> MediaInfo:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # Pillow missing, or not an image it reads: one small image's worth
        return MediaInfo(mime, IMAGE_TOKENS, "estimate")
    return MediaInfo(mime, image_tokens(width, height), "pillow", width=width, height=height)


def _pdf(mime: str, data: bytes) -> MediaInfo:
    try:
        from pypdf import PdfReader

        pages = len(PdfReader(io.BytesIO(data)).pages)
        source = "pypdf"
    except Exception:
        pages = max(1, len(_PDF_PAGE.findall(data)))
        source = "estimate"
    return MediaInfo(mime, pages * PDF_PAGE_TOKENS, source, pages=pages)


def _avi_duration(data: bytes) -> float | None:
    """Seconds of a RIFF AVI from its main header (``avih``: microseconds per frame, total frames)."""
    if not (data.startswith(b"RIFF") and data[8:12] == b"AVI "):
        return None
    at = data.find(b"avih", 12, 4096)
    if at < 0 or len(data) < at + 8 + 20:
        return None
    per_frame, _, _, _, frames = struct.unpack_from("<5I", data, at + 8)
    return per_frame * frames / 1_000_000 if per_frame and frames else None


def _duration(data: bytes) -> tuple[float | None, str]:
    avi = _avi_duration(data)  # mutagen does not read AVI
    if avi is not None:
        return avi, "avi header"
    try:
        import mutagen

        found = mutagen.File(io.BytesIO(data))
        length = getattr(getattr(found, "info", None), "length", None)
        if isinstance(length, (int, float)) and length > 0:
            return float(length), "mutagen"
    except Exception:
        pass
    try:
        with wave.open(io.BytesIO(data)) as w:
            return w.getnframes() / float(w.getframerate()), "wave"
    except Exception:
        return None, "estimate"


def _timed(mime: str, data: bytes, per_second: int, bytes_per_second: int) -> MediaInfo:
    duration, source = _duration(data)
    if duration is None:
        duration = max(len(data) / bytes_per_second, 1.0)
    return MediaInfo(mime, max(1, math.ceil(duration * per_second)), source, duration=duration)


class MediaMeter:
    """Measures media for token accounting, remembering the last results by content hash. Thread-safe."""

    def __init__(self, tokenizer: Tokenizer, memo_size: int = 256) -> None:
        self._tok = tokenizer
        self._memo: OrderedDict[tuple[str, str], MediaInfo] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def measure(self, mime: str, data: bytes, digest: str | None = None) -> MediaInfo:
        """Tokens of `data` as `mime`; `digest` (any stable hash of the bytes) keys the memo."""
        key = (mime, digest or hashlib.sha256(data).hexdigest())
        with self._lock:
            hit = self._memo.get(key)
            if hit is not None:
                self._memo.move_to_end(key)
                return hit
        info = self._measure(mime, data)
        with self._lock:
            self._memo[key] = info
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return info

    def _measure(self, mime: str, data: bytes) -> MediaInfo:
        top = mime.split("/", 1)[0]
        if top == "image":
            return _image(mime, data)
        if mime == "application/pdf":
            return _pdf(mime, data)
        if top == "audio":
            return _timed(mime, data, AUDIO_TOKENS_PER_SECOND, _AUDIO_BYTES_PER_SECOND)
        if top == "video":
            return _timed(mime, data, VIDEO_TOKENS_PER_SECOND, _VIDEO_BYTES_PER_SECOND)
        return MediaInfo(mime, self._tok.count(data.decode("utf-8", "replace")), "text")
