"""Media on Gemini: the wire encoding of `MediaPart`s, and moving large media to the Files API.

Encoding (https://ai.google.dev/gemini-api/docs/file-input-methods): inline bytes become
``inlineData {mimeType, data}`` (base64); a Files API file becomes ``fileData {mimeType, fileUri}``;
an http(s) URL becomes ``fileData`` too, which Gemini fetches itself since the January 2026 update
("External URLs (public / signed)", https://blog.google/innovation-and-ai/technology/developers-tools/
gemini-api-new-file-limits) -- except on the Gemini 2.0 models, which do not fetch external URLs,
so those get a clear error instead. YouTube links go as ``fileData`` without a media type.

Limits (same pages): a request may carry up to 100 MB inline ("Always use the Files API when the
total request size ... is larger than 100 MB"; it was 20 MB before January 2026) and an inline PDF
up to 50 MB. `GeminiMedia.resolve` uploads every inline part above ``file_upload_threshold`` (and
every PDF above 50 MB) through the Files API before a request is encoded, waits until the file is
ACTIVE and sends it as ``fileData``. The decision is per part, never per request, so the same
bytes travel the same way in every request and a conversation's prefix stays byte-stable.

How bytes become a file is behind one interface, `FileUploader`. `DirectFileUploader` uploads
directly and remembers, in this process only, what it uploaded (by content hash, until the file
nears its 48-hour expiry); `ChatGemini` and LlamaIndex `Gemini` use the registry-backed
`cache_integrations.explicit.files.ManagedFiles` instead (one upload per content across processes
and hosts, re-uploaded after expiry).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ..errors import InvalidRequestError
from ..media import as_media_part, check_mime, media_size, parse_data_url, part_mime_type, read_media
from ..messages import ChatRequest, ImagePart, MediaPart, Message, Part
from ._endpoints import DEFAULT_FILE_UPLOAD_THRESHOLD, PDF_INLINE_LIMIT
from .gemini_files import MAX_FILE_BYTES, File, GeminiFiles, UploadSource, file_name

__all__ = [
    "DEFAULT_FILE_UPLOAD_THRESHOLD",
    "INLINE_REQUEST_LIMIT",
    "PDF_INLINE_LIMIT",
    "DirectFileUploader",
    "FileUploader",
    "GeminiMedia",
    "check_media_support",
    "media_to_wire",
]

INLINE_REQUEST_LIMIT = 100 * 1024 * 1024
"""Bytes a whole request may carry inline (base64 included): 100 MB since January 2026."""

_GOOGLE_API = "https://generativelanguage.googleapis.com/v1beta"
_YOUTUBE = re.compile(r"^https?://(?:www\.|m\.)?(?:youtube\.com|youtu\.be)/", re.IGNORECASE)
_PLURAL = {"image": "images", "document": "documents", "audio": "audio", "video": "videos"}
_EXPIRY_MARGIN = 3600.0  # reuse an uploaded file only while it has at least this long to live


# --------------------------------------------------------------------------------------- encoding


def _files_uri(value: str, where: str) -> str:
    if value.startswith(("http://", "https://")):
        return value
    try:
        return f"{_GOOGLE_API}/{file_name(value)}"
    except InvalidRequestError:
        raise InvalidRequestError(
            f"{where}: file reference {value!r:.120} is neither a Files API URI nor 'files/<id>'"
        ) from None


def media_to_wire(part: ImagePart | MediaPart, where: str) -> dict[str, Any]:
    """One Gemini part for an image, document, audio or video part (validated, deterministic)."""
    media = as_media_part(part)
    kind = media.kind
    if media.file_uri is not None:
        uri = _files_uri(media.file_uri, where)
        if not media.mime_type:
            raise InvalidRequestError(
                f"{where}: a Files API {kind} ({media.file_uri!r:.120}) needs its mime_type; ChatGemini and "
                "Gemini look it up, a bare provider call cannot"
            )
        return {"fileData": {"fileUri": uri, "mimeType": check_mime(media.mime_type, where)}}
    url = media.url
    if url is not None and url.startswith("data:"):
        try:
            url_mime, data = parse_data_url(url)
        except ValueError:
            raise InvalidRequestError(
                f"{where}: a data URL {kind} must look like 'data:<mime>;base64,<data>', got {url[:48]!r}"
            ) from None
        mime = check_mime(media.mime_type, where) if media.mime_type else url_mime
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url is not None:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in ("http", "https"):
            raise InvalidRequestError(
                f"{where}: {kind} URL scheme {scheme!r} is not supported; use https:, data: or a Files API file"
            )
        if _YOUTUBE.match(url) and not media.mime_type:
            return {"fileData": {"fileUri": url}}
        return {"fileData": {"fileUri": url, "mimeType": part_mime_type(media, where)}}
    mime = part_mime_type(media, where)
    data_bytes = read_media(media, where)
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data_bytes).decode("ascii")}}


def _fetches_external_urls(model: str) -> bool:
    """Gemini 2.0 models do not fetch external http(s) URLs (the January 2026 update excluded them)."""
    return not re.search(r"gemini-2\.0(?![0-9])", model)


def check_media_support(request: ChatRequest) -> None:
    """Reject what the model cannot take before anything is sent (external URLs on Gemini 2.0)."""
    if _fetches_external_urls(request.model):
        return
    for i, message in enumerate(request.messages):
        if isinstance(message.content, str):
            continue
        for j, part in enumerate(message.content):
            url = part.url if isinstance(part, (ImagePart, MediaPart)) else None
            if url and url.startswith(("http://", "https://")) and not _YOUTUBE.match(url):
                raise InvalidRequestError(
                    f"messages[{i}].content[{j}]: {request.model} does not fetch external URLs ({url[:80]!r}); "
                    "Gemini 2.5 and later do. Send the bytes instead (inline, or uploaded through the Files API)"
                )


# ---------------------------------------------------------------------------------------- uploads


class FileUploader(Protocol):
    """Turns a part's bytes into an ACTIVE Files API file (`DirectFileUploader`, or the registry-backed
    `cache_integrations.explicit.files.ManagedFiles` that ChatGemini and Gemini use)."""

    def upload(self, part: MediaPart, *, mime_type: str, where: str) -> File: ...

    async def aupload(self, part: MediaPart, *, mime_type: str, where: str) -> File: ...

    def describe(self, reference: str) -> File:
        """The ACTIVE file to send for a file reference (for an uploader's own files: the current upload)."""
        ...

    async def adescribe(self, reference: str) -> File: ...

    def manages(self, reference: str) -> bool:
        """Whether the uploader made this file (so a reference to it is looked up on every resolve)."""
        ...

    def forget(self, reference: str) -> bool:
        """The provider says the file is gone: drop it; True when resolving again can replace it."""
        ...


def _source(part: MediaPart, where: str) -> Any:
    if part.path is not None:
        return part.path
    return read_media(part, where)


class DirectFileUploader:
    """Uploads straight to the Files API, waits until the file is ACTIVE, and reuses it in this process.

    Reuse is keyed by the content's SHA-256 (a path: its resolved name, size and modification time)
    and the media type, and lasts while the file has more than an hour to live by its
    ``expirationTime`` read on `clock` (a test on an emulator's fake clock sets it). Thread-safe; two
    threads uploading the same bytes at once may both upload (harmless; the registry-backed
    uploader of a later release makes that single-flight across processes).
    """

    def __init__(self, files: GeminiFiles, *, clock: Callable[[], float] = time.time) -> None:
        self.files = files
        self.clock = clock
        self._known: dict[Hashable, File] = {}
        self._lock = threading.Lock()

    def _key(self, part: MediaPart, mime: str, where: str) -> Hashable:
        if part.path is not None:
            try:
                st = os.stat(part.path)
            except OSError as exc:
                raise InvalidRequestError(f"{where}: cannot read {part.path!r}: {exc.strerror or exc}") from None
            return ("path", os.path.realpath(part.path), st.st_size, st.st_mtime_ns, mime)
        return ("sha256", hashlib.sha256(read_media(part, where)).hexdigest(), mime)

    def _fresh(self, key: Hashable) -> File | None:
        with self._lock:
            known = self._known.get(key)
        if known is None:
            return None
        expires = known.expiration_time
        if expires is not None and expires.timestamp() - self.clock() < _EXPIRY_MARGIN:
            with self._lock:
                self._known.pop(key, None)
            return None
        return known

    def _remember(self, key: Hashable, file: File) -> File:
        with self._lock:
            self._known[key] = file
        return file

    def upload(self, part: MediaPart, *, mime_type: str, where: str) -> File:
        key = self._key(part, mime_type, where)
        known = self._fresh(key)
        if known is not None:
            return known
        source = UploadSource.of(_source(part, where), where=where)
        uploaded = self.files.upload(source, mime_type=mime_type, display_name=part.name)
        return self._remember(key, self.files.wait_active(uploaded))

    async def aupload(self, part: MediaPart, *, mime_type: str, where: str) -> File:
        key = await asyncio.to_thread(self._key, part, mime_type, where)
        known = self._fresh(key)
        if known is not None:
            return known
        source = UploadSource.of(_source(part, where), where=where)
        uploaded = await self.files.aupload(source, mime_type=mime_type, display_name=part.name)
        return self._remember(key, await self.files.await_active(uploaded))

    def describe(self, reference: str) -> File:
        key = ("name", file_name(reference))
        known = self._fresh(key)
        if known is not None:
            return known
        return self._remember(key, self.files.wait_active(file_name(reference)))

    async def adescribe(self, reference: str) -> File:
        key = ("name", file_name(reference))
        known = self._fresh(key)
        if known is not None:
            return known
        return self._remember(key, await self.files.await_active(file_name(reference)))

    def manages(self, reference: str) -> bool:
        return False

    def forget(self, reference: str) -> bool:
        try:
            name = file_name(reference)
        except InvalidRequestError:
            return False
        with self._lock:
            gone = [k for k, f in self._known.items() if f.name == name]
            for k in gone:
                del self._known[k]
        return bool(gone)


# -------------------------------------------------------------------------------------- resolving


@dataclass(frozen=True, slots=True)
class _Step:
    """What to do with one part before encoding: upload it, read it into memory, or look it up."""

    message: int
    index: int
    part: MediaPart
    action: str  # "upload" | "read" | "describe"
    mime: str | None = None

    @property
    def where(self) -> str:
        return f"messages[{self.message}].content[{self.index}]"


class GeminiMedia:
    """Prepares a request's media for Gemini: large inline parts go through the Files API.

    `threshold` is in bytes of the part itself (before base64). Parts above it, PDFs above 50 MB
    and anything a request could not carry inline are uploaded and sent as ``fileData``; smaller
    local files are read into the request; file references without a media type are looked up.
    """

    def __init__(self, files: GeminiFiles, *, threshold: int, uploader: FileUploader | None = None) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
            raise InvalidRequestError(f"file_upload_threshold: expected a number of bytes >= 0, got {threshold!r}")
        self.files = files
        self.threshold = threshold
        self.uploader: FileUploader = uploader if uploader is not None else DirectFileUploader(files)

    def _plan(self, request: ChatRequest, upload_all: int = 0) -> list[_Step]:
        steps: list[_Step] = []
        inline = 0
        for i, message in enumerate(request.messages):
            if isinstance(message.content, str) or message.role != "user":
                continue
            threshold = 0 if i < upload_all else self.threshold
            for j, raw in enumerate(message.content):
                if not isinstance(raw, (ImagePart, MediaPart)):
                    continue
                part = as_media_part(raw)
                where = f"messages[{i}].content[{j}]"
                if part.file_uri is not None:
                    if (
                        not part.mime_type
                        or not part.file_uri.startswith(("http://", "https://"))
                        or self.uploader.manages(part.file_uri)
                    ):
                        steps.append(_Step(i, j, part, "describe"))
                    continue
                size = media_size(part, where)
                if size is None:
                    continue  # an http(s) URL: Gemini fetches it
                mime = part_mime_type(part, where)
                if size > MAX_FILE_BYTES:
                    raise InvalidRequestError(
                        f"{where}: the {part.kind} is {size} bytes, over Gemini's 2 GB per-file limit; "
                        "it can be neither inlined nor uploaded"
                    )
                limit = min(threshold, PDF_INLINE_LIMIT) if mime == "application/pdf" else threshold
                if size > limit:
                    steps.append(_Step(i, j, part, "upload", mime))
                    continue
                inline += 4 * -(-size // 3)
                if part.path is not None:
                    steps.append(_Step(i, j, part, "read", mime))
        if inline > INLINE_REQUEST_LIMIT:
            raise InvalidRequestError(
                f"messages: the inline media add up to {inline} bytes in base64, over Gemini's {INLINE_REQUEST_LIMIT}-"
                f"byte request limit; lower file_upload_threshold (now {self.threshold}) so more of them are uploaded"
            )
        return steps

    def _replacement(self, step: _Step, file: File | None = None, data: bytes | None = None) -> MediaPart:
        part = step.part
        if file is not None:
            return MediaPart(part.kind, mime_type=file.mime_type or step.mime, file_uri=file.uri, name=part.name)
        return MediaPart(part.kind, mime_type=step.mime, data=data, detail=part.detail, name=part.name)

    def check(self, request: ChatRequest) -> None:
        """Raise for media that cannot be sent (unreadable, unknown type, over a limit) without any I/O
        beyond reading file sizes: what `resolve` would reject, before a stream is opened."""
        self._plan(request)

    def resolve(self, request: ChatRequest, *, upload_all: int = 0) -> ChatRequest:
        """`request` with its large media uploaded (blocking until the files are ACTIVE).

        Media in the first `upload_all` messages is uploaded whatever its size (a pinned context's prefix:
        its cache then holds ``fileData`` parts). References to files the uploader manages are replaced by
        the current upload of their content (uploaded again when they expired).
        """
        steps = self._plan(request, upload_all)
        if not steps:
            return request
        new: dict[tuple[int, int], MediaPart] = {}
        for step in steps:
            if step.action == "upload":
                assert step.mime is not None
                file = self.uploader.upload(step.part, mime_type=step.mime, where=step.where)
                new[step.message, step.index] = self._replacement(step, file)
            elif step.action == "read":
                new[step.message, step.index] = self._replacement(step, data=read_media(step.part, step.where))
            else:
                file = self.uploader.describe(step.part.file_uri or "")
                new[step.message, step.index] = _described(step.part, file, step.where)
        return _replaced(request, new)

    async def aresolve(self, request: ChatRequest, *, upload_all: int = 0) -> ChatRequest:
        """`resolve` for asyncio."""
        steps = self._plan(request, upload_all)
        if not steps:
            return request
        new: dict[tuple[int, int], MediaPart] = {}
        for step in steps:
            if step.action == "upload":
                assert step.mime is not None
                file = await self.uploader.aupload(step.part, mime_type=step.mime, where=step.where)
                new[step.message, step.index] = self._replacement(step, file)
            elif step.action == "read":
                data = await asyncio.to_thread(read_media, step.part, step.where)
                new[step.message, step.index] = self._replacement(step, data=data)
            else:
                file = await self.uploader.adescribe(step.part.file_uri or "")
                new[step.message, step.index] = _described(step.part, file, step.where)
        return _replaced(request, new)


def _described(part: MediaPart, file: File, where: str) -> MediaPart:
    mime = part.mime_type or file.mime_type
    if not mime:
        raise InvalidRequestError(f"{where}: {file.name} reports no media type; pass mime_type")
    return MediaPart(part.kind, mime_type=mime, file_uri=file.uri or part.file_uri, name=part.name)


def _replaced(request: ChatRequest, new: dict[tuple[int, int], MediaPart]) -> ChatRequest:
    messages: list[Message] = list(request.messages)
    for i in sorted({i for i, _ in new}):
        content = messages[i].content
        assert not isinstance(content, str)
        parts: Sequence[Part] = tuple(new.get((i, j), p) for j, p in enumerate(content))
        messages[i] = replace(messages[i], content=tuple(parts))
    return replace(request, messages=tuple(messages))
