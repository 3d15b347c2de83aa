"""`UploadedFile`, the handle `upload_file` returns, and how this library names and keys its uploads."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..providers.gemini_files import File, UploadSource
from ._base import FileEntry
from ._types import DISPLAY_PREFIX

if TYPE_CHECKING:  # pragma: no cover
    from .files import ManagedFiles

__all__ = ["UploadedFile", "as_file", "content_key", "label", "owned_key"]

_OWNED = re.compile(rf"{re.escape(DISPLAY_PREFIX)}([0-9a-f]{{40}})(?: .*)?", re.DOTALL)


def content_key(sha256: str, mime_type: str) -> str:
    """The registry key of a content: its SHA-256 and media type (the same bytes as PDF and as text differ)."""
    return hashlib.sha256(f"file/v1\0{sha256}\0{mime_type}".encode()).hexdigest()


def owned_key(display_name: str) -> str | None:
    match = _OWNED.fullmatch(display_name)
    return match.group(1) if match else None


def label(display_name: str) -> str:
    """The caller's part of a display name this library composed."""
    if owned_key(display_name) is None:
        return display_name
    return display_name[len(DISPLAY_PREFIX) + 40 :].removeprefix(" ")


def as_file(entry: FileEntry) -> File:
    return File(
        name=entry.name,
        uri=entry.uri,
        mime_type=entry.mime_type,
        size_bytes=entry.size,
        state=entry.state,
        expiration_time=datetime.fromtimestamp(entry.expire_at, UTC),
        sha256=entry.sha256,
        display_name=entry.display_name,
    )


class UploadedFile:
    """A file this library uploaded (or found already uploaded) through the Files API.

    `name` (``files/<id>``), `uri`, `mime_type`, `size`, `state` and `expire_time` (the server's
    ``expirationTime``) describe the file in use now: when the content is uploaded again after expiry, the
    handle follows the new file. Pass the handle (or its `uri`) in messages and to `cache_context`.
    `delete()` deletes the file now; a request that still names it then fails with
    `UploadedFileNotFoundError` instead of uploading it again.
    """

    def __init__(self, files: ManagedFiles, key: str, file: File, source: UploadSource | None) -> None:
        self._files = files
        self.key = key
        self._file = file
        self._source = source  # kept so the content can be uploaded again without the caller's help

    name = property(lambda self: self._file.name, doc="``files/<id>``.")
    uri = property(lambda self: self._file.uri, doc="The URI requests and caches refer to.")
    mime_type = property(lambda self: self._file.mime_type, doc="The media type given at upload.")
    size = property(lambda self: self._file.size_bytes, doc="Bytes.")
    state = property(lambda self: self._file.state, doc="PROCESSING, ACTIVE or FAILED (when last seen).")
    sha256 = property(lambda self: self._file.sha256, doc="Hex SHA-256 of the content.")
    display_name = property(lambda self: label(self._file.display_name), doc="The display name given at upload.")

    @property
    def expire_time(self) -> datetime | None:
        """When Gemini deletes the file (its ``expirationTime``: 48 hours after upload)."""
        return self._file.expiration_time

    @property
    def file(self) -> File:
        """The Files API resource as last seen."""
        return self._file

    def _follow(self, file: File) -> None:
        self._file = file

    def __repr__(self) -> str:
        expires = self.expire_time.isoformat() if self.expire_time else None
        return (
            f"UploadedFile(name={self.name!r}, mime_type={self.mime_type!r}, size={self.size}, "
            f"state={self.state!r}, expire_time={expires!r})"
        )

    def delete(self) -> None:
        """Delete the file now and forget it (a request naming it afterwards fails, it is not re-uploaded)."""
        self._files.delete(self)

    async def adelete(self) -> None:
        await self._files.adelete(self)
