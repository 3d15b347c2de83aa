"""Media helpers every adapter and provider shares: media types, data URLs, reading a `MediaPart`.

Framework adapters turn their content blocks into `MediaPart`s with `media_part` (one rule for what
a URL, a base64 string or a file id means); providers ask `part_mime_type` and `read_media` for the
bytes and their type. Nothing here talks to a provider.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import re
from typing import Any

from .errors import InvalidRequestError
from .messages import MEDIA_KINDS, ImagePart, MediaKind, MediaPart

__all__ = [
    "as_media_part",
    "check_mime",
    "is_files_api_uri",
    "kind_of_mime",
    "media_part",
    "media_size",
    "mime_from_name",
    "parse_data_url",
    "part_mime_type",
    "read_media",
    "sniff_mime",
]

# Deterministic types for the extensions media comes in. `mimetypes` reads platform tables (and
# Python 3.11's lacks webp, heic, flac, aac, m4a, opus, mkv, md, ...), so this table is asked first.
_MIME_BY_EXTENSION = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "text/xml",
    ".json": "application/json",
    ".rtf": "text/rtf",
    ".py": "text/x-python",
    ".js": "text/javascript",
    ".css": "text/css",
    ".wav": "audio/wav",
    ".mp3": "audio/mp3",
    ".aiff": "audio/aiff",
    ".aif": "audio/aiff",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpg",
    ".mov": "video/mov",
    ".avi": "video/avi",
    ".flv": "video/x-flv",
    ".webm": "video/webm",
    ".wmv": "video/wmv",
    ".3gp": "video/3gpp",
    ".mkv": "video/x-matroska",
}
_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9*][a-z0-9!#$&^_.+-]*$")
_KIND_BY_TOP = {"image": "image", "audio": "audio", "video": "video"}
# Media types that belong to more than one top-level family: a ".mp4" audio-only track is audio.
_COMPATIBLE = {("audio", "video/mp4"), ("video", "audio/mp4"), ("audio", "video/webm"), ("audio", "video/ogg")}
_FILES_API_URI = re.compile(r"^https?://[^/]+(?:/[^?#]*)?/v1(?:alpha|beta)?/files/[a-z0-9][a-z0-9-]*$")


def mime_from_name(name: str) -> str | None:
    """The media type a file name's (or URL path's) extension stands for, or None."""
    base = name.rsplit("/", 1)[-1].lower()
    if "." not in base:
        return None
    found = _MIME_BY_EXTENSION.get(base[base.rfind(".") :])
    return found or mimetypes.guess_type(base, strict=False)[0]


def sniff_mime(data: bytes) -> str | None:
    """The media type told by the first bytes (the common formats only), or None."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "video/avi"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 6):
        return "audio/mp3"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand in (b"qt  ",):
            return "video/mov"
        if brand.startswith(b"3g"):
            return "video/3gpp"
        if brand in (b"heic", b"heix", b"mif1"):
            return "image/heic"
        return "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def kind_of_mime(mime: str) -> MediaKind:
    """``image/*`` -> image, ``audio/*`` -> audio, ``video/*`` -> video, anything else -> document."""
    kind = _KIND_BY_TOP.get(mime.split("/", 1)[0])
    return kind if kind is not None else "document"  # type: ignore[return-value]


def parse_data_url(url: str) -> tuple[str, str]:
    """``data:<mime>;base64,<data>`` -> (mime, base64 text); ValueError when it is not that shape."""
    header, comma, data = url[len("data:") :].partition(",")
    mime, *params = header.split(";")
    if not url.startswith("data:") or not comma or not mime or "base64" not in params or not data:
        raise ValueError(f"a data URL must look like 'data:<mime>;base64,<data>', got {url[:48]!r}")
    return mime.strip().lower(), data


def _decode_base64(text: str | bytes, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"{where}: the base64 data does not decode ({exc})") from exc


def check_mime(mime: str, where: str) -> str:
    """`mime` lower-cased, or an error naming `where` when it is not ``type/subtype``."""
    value = mime.strip().lower()
    if not _MIME_RE.match(value):
        raise InvalidRequestError(f"{where}: mime_type {mime!r} is not a media type such as 'image/png'")
    return value


def is_files_api_uri(value: str) -> bool:
    """Whether `value` is a Gemini Files API file: ``files/<id>`` or ``https://.../v1beta/files/<id>``."""
    return value.startswith("files/") or bool(_FILES_API_URI.match(value))


def media_part(
    kind: str,
    *,
    where: str,
    url: str | None = None,
    base64_data: str | bytes | None = None,
    data: bytes | None = None,
    file_id: str | None = None,
    path: str | os.PathLike[str] | None = None,
    mime_type: str | None = None,
    name: str | None = None,
    detail: str | None = None,
) -> MediaPart:
    """A `MediaPart` from what a content block carries, with one rule for every framework.

    A ``data:`` URL stays a URL (checked for shape; its type fills in a missing `mime_type`); a Files
    API URL becomes a file reference; other http(s) URLs stay URLs; base64 text is decoded (so bad
    base64 is an error here, before anything is sent). Exactly one source must be given.
    """
    if kind not in MEDIA_KINDS:
        raise InvalidRequestError(f"{where}: media kind {kind!r} is not one of {sorted(MEDIA_KINDS)}")
    given = [
        n
        for n, v in (("url", url), ("base64", base64_data), ("data", data), ("file_id", file_id), ("path", path))
        if v is not None and v != ""
    ]
    if len(given) != 1:
        what = "none" if not given else " and ".join(given)
        raise InvalidRequestError(
            f"{where}: a {kind} block needs exactly one of url, base64 data, file_id or path; got {what}"
        )
    mime = check_mime(mime_type, where) if mime_type else None
    fields: dict[str, Any] = {}
    if url:
        if url.startswith("data:"):
            try:
                url_mime = parse_data_url(url)[0]
            except ValueError as exc:
                raise InvalidRequestError(f"{where}: {exc}") from None
            fields["url"] = url  # kept as sent: its base64 goes on the wire byte for byte
            mime = mime or check_mime(url_mime, where)
        elif is_files_api_uri(url):
            fields["file_uri"] = url
        else:
            scheme = url.split(":", 1)[0].lower() if ":" in url else ""
            if scheme not in ("http", "https", "gs"):
                raise InvalidRequestError(
                    f"{where}: {kind} URL scheme {scheme!r} is not supported; use https:, data: or a Files API URI"
                )
            fields["url"] = url
    elif base64_data:
        fields["data"] = _decode_base64(base64_data, where)
    elif data is not None:
        if not data:
            raise InvalidRequestError(f"{where}: the {kind} data is empty")
        fields["data"] = bytes(data)
    elif file_id:
        fields["file_uri"] = file_id
    else:
        fields["path"] = os.fspath(path)  # type: ignore[arg-type]
    if "data" in fields and not fields["data"]:
        raise InvalidRequestError(f"{where}: the {kind} data is empty")
    try:
        return MediaPart(kind, mime_type=mime, name=name or None, detail=detail, **fields)  # type: ignore[arg-type]
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"{where}: {exc}") from None


def as_media_part(part: ImagePart | MediaPart) -> MediaPart:
    """The `MediaPart` an `ImagePart` stands for (a data URL stays a URL: its base64 passes through)."""
    if isinstance(part, MediaPart):
        return part
    return MediaPart("image", url=part.url, detail=part.detail)


def part_mime_type(part: MediaPart, where: str) -> str:
    """The part's media type: given, from a data URL, from the path's or URL's extension, or sniffed.

    Raises a clear error naming `where` when it cannot be told, and when it contradicts the kind
    (an image part holding ``audio/wav``).
    """
    mime = part.mime_type
    if not mime:
        if part.url is not None and part.url.startswith("data:"):
            try:
                mime = parse_data_url(part.url)[0]
            except ValueError as exc:
                raise InvalidRequestError(f"{where}: {exc}") from None
        elif part.path is not None:
            mime = mime_from_name(part.path) or _sniff_path(part.path, where)
        elif part.url is not None:
            mime = mime_from_name(part.url.split("?", 1)[0].split("#", 1)[0])
        elif part.data is not None:
            mime = sniff_mime(part.data)
    if not mime:
        source = f"{part.source} {getattr(part, part.source)!r:.120}" if part.data is None else "inline data"
        raise InvalidRequestError(
            f"{where}: cannot tell the media type of the {part.kind} ({source}); pass mime_type "
            "(for example 'application/pdf', 'image/png', 'audio/mp3', 'video/mp4')"
        )
    mime = check_mime(mime, where)
    top = kind_of_mime(mime)
    if part.kind != "document" and top != part.kind and (part.kind, mime) not in _COMPATIBLE:
        raise InvalidRequestError(f"{where}: a {part.kind} part cannot hold media of type {mime!r}")
    return mime


def _sniff_path(path: str, where: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return sniff_mime(f.read(16))
    except OSError as exc:
        raise InvalidRequestError(f"{where}: cannot read {path!r}: {exc.strerror or exc}") from None


def read_media(part: MediaPart, where: str) -> bytes:
    """The bytes of an inline part (data, a data URL or a local path); clear errors for unreadable ones."""
    if part.data is not None:
        return part.data
    if part.url is not None and part.url.startswith("data:"):
        try:
            return _decode_base64(parse_data_url(part.url)[1], where)
        except ValueError as exc:
            raise InvalidRequestError(f"{where}: {exc}") from None
    if part.path is not None:
        try:
            with open(part.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise InvalidRequestError(f"{where}: cannot read {part.path!r}: {exc.strerror or exc}") from None
        if not data:
            raise InvalidRequestError(f"{where}: {part.path!r} is empty")
        return data
    raise InvalidRequestError(f"{where}: a {part.source} {part.kind} has no local bytes to read")


def media_size(part: MediaPart, where: str) -> int | None:
    """Bytes of an inline part without reading a path (None for URLs and file references)."""
    if part.data is not None:
        return len(part.data)
    if part.url is not None and part.url.startswith("data:"):
        try:
            text = parse_data_url(part.url)[1]
        except ValueError as exc:
            raise InvalidRequestError(f"{where}: {exc}") from None
        return len(text) * 3 // 4 - text[-2:].count("=")
    if part.path is not None:
        try:
            size = os.stat(part.path).st_size
        except OSError as exc:
            raise InvalidRequestError(f"{where}: cannot read {part.path!r}: {exc.strerror or exc}") from None
        if not os.path.isfile(part.path):
            raise InvalidRequestError(f"{where}: {part.path!r} is not a regular file")
        return size
    return None
