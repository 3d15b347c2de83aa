"""The Files API's ``File`` resource and the sources an upload reads from.

See `cache_integrations.providers.gemini_files` for the facts (and their sources) these follow.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any, Literal

import httpx

from ..errors import InvalidRequestError, ProviderError
from ..media import mime_from_name, sniff_mime

__all__ = [
    "FILE_LIFETIME_SECONDS",
    "MAX_FILE_BYTES",
    "UPLOAD_CHUNK_GRANULARITY",
    "File",
    "FileState",
    "UploadSource",
    "file_name",
    "parse_file",
    "upload_endpoint",
]

MAX_FILE_BYTES = 2 * 1024**3
"""2 GB per file (https://ai.google.dev/gemini-api/docs/files)."""
FILE_LIFETIME_SECONDS = 48 * 3600
"""Files are stored for 48 hours (https://ai.google.dev/gemini-api/docs/files)."""
UPLOAD_CHUNK_GRANULARITY = 8 * 1024 * 1024
"""Chunk granularity Google's upload server reports in ``X-Goog-Upload-Chunk-Granularity``."""
_PROVIDER = "google"
_FILE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
_FILE_URI = re.compile(r"^https?://[^/]+(?:/[^?#]*)?/files/([a-z0-9][a-z0-9-]*)$")
_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})$")

FileState = Literal["STATE_UNSPECIFIED", "PROCESSING", "ACTIVE", "FAILED"]
# ------------------------------------------------------------------------------------------ resource


@dataclass(frozen=True, slots=True)
class File:
    """A Files API ``File`` as Gemini reports it; `sha256` is the hex digest of the uploaded bytes."""

    name: str
    uri: str
    mime_type: str
    size_bytes: int
    state: str
    create_time: datetime | None = None
    update_time: datetime | None = None
    expiration_time: datetime | None = None
    sha256: str | None = None
    display_name: str = ""
    video_metadata: Mapping[str, Any] | None = None
    error: str | None = None
    source: str | None = None

    @property
    def id(self) -> str:
        """The id without ``files/``."""
        return self.name.removeprefix("files/")

    @property
    def video_duration(self) -> float | None:
        """Seconds, from ``videoMetadata.videoDuration`` (a Duration such as ``"12.5s"``)."""
        value = (self.video_metadata or {}).get("videoDuration")
        if isinstance(value, str) and value.endswith("s"):
            try:
                return float(value[:-1])
            except ValueError:
                return None
        return None


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    match = _TIMESTAMP.match(value)
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    date, clock, fraction, zone = match.groups()
    offset = "+00:00" if zone.upper() == "Z" else zone
    return datetime.fromisoformat(f"{date}T{clock}.{(fraction or '')[:6].ljust(6, '0')}{offset}")


def _sha256(value: Any) -> str | None:
    """Google's ``sha256Hash``: base64 of the hex digest (also accepts base64 of the raw 32 bytes)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    text = raw.decode("ascii", "replace").lower()
    if len(raw) == 64 and all(c in "0123456789abcdef" for c in text):
        return text
    return raw.hex() if len(raw) == 32 else None


def parse_file(data: Mapping[str, Any]) -> File:
    """A ``File`` JSON object (from get, list, or a finalized upload's ``{"file": ...}``)."""
    try:
        error = data.get("error")
        video = data.get("videoMetadata")
        return File(
            name=str(data["name"]),
            uri=str(data.get("uri") or ""),
            mime_type=str(data.get("mimeType") or ""),
            size_bytes=int(data.get("sizeBytes") or 0),
            state=str(data.get("state") or "STATE_UNSPECIFIED"),
            create_time=_timestamp(data.get("createTime")),
            update_time=_timestamp(data.get("updateTime")),
            expiration_time=_timestamp(data.get("expirationTime")),
            sha256=_sha256(data.get("sha256Hash")),
            display_name=str(data.get("displayName") or ""),
            video_metadata=dict(video) if isinstance(video, Mapping) else None,
            error=str(error.get("message") or error) if isinstance(error, Mapping) else None,
            source=str(data["source"]) if data.get("source") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderError(
            f"malformed File resource ({type(exc).__name__}: {exc})", status_code=200, provider=_PROVIDER, body=data
        ) from exc


def file_name(value: str | File) -> str:
    """``files/<id>`` from a `File`, its name, its bare id or its URI; rejects anything else."""
    if isinstance(value, File):
        return value.name
    if not isinstance(value, str):
        raise InvalidRequestError(f"file: expected 'files/<id>', an id or a Files API URI, got {type(value).__name__}")
    match = _FILE_URI.match(value)
    file_id = match.group(1) if match else value.removeprefix("files/")
    if not _FILE_ID.match(file_id):
        raise InvalidRequestError(
            f"file: expected 'files/<id>' (id: up to 40 lowercase letters, digits or dashes), an id or a "
            f"Files API URI, got {value!r:.120}"
        )
    return "files/" + file_id


def upload_endpoint(base_url: str) -> str:
    """The upload endpoint for an API base URL: ``https://host/v1beta`` -> ``https://host/upload/v1beta/files``."""
    url = httpx.URL(base_url.rstrip("/"))
    prefix, _, version = url.path.rpartition("/")
    return str(url.copy_with(path=f"{prefix}/upload/{version}/files", query=None))


# ---------------------------------------------------------------------------------------- sources


class UploadSource:
    """Bytes to upload: a path (read chunk by chunk), bytes, or a binary file object.

    Validated when built: an unreadable path, an empty source or one over the 2 GB limit is an
    `InvalidRequestError` naming it, before anything is sent.
    """

    __slots__ = ("_data", "_fileobj", "_start", "name", "path", "size")

    def __init__(
        self,
        *,
        size: int,
        name: str | None = None,
        path: str | None = None,
        data: bytes | None = None,
        fileobj: IO[bytes] | None = None,
        start: int = 0,
    ) -> None:
        self.size = size
        self.name = name
        self.path = path
        self._data = data
        self._fileobj = fileobj
        self._start = start

    @classmethod
    def of(cls, source: Any, *, where: str = "file", limit: int = MAX_FILE_BYTES) -> UploadSource:
        """Build a source from a `str`/`os.PathLike` path, `bytes` or a binary file object."""
        if isinstance(source, UploadSource):
            built = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            built = cls(size=len(source), data=bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            built = cls._from_path(os.fspath(source), where)
        elif hasattr(source, "read"):
            built = cls._from_fileobj(source, where, limit)
        else:
            raise InvalidRequestError(
                f"{where}: expected a path (str or Path), bytes or a binary file object, got {type(source).__name__}"
            )
        if built.size == 0:
            raise InvalidRequestError(f"{where}: {built.label} is empty; there is nothing to upload")
        if built.size > limit:
            raise InvalidRequestError(
                f"{where}: {built.label} is {built.size} bytes, over the Files API limit of {limit} bytes per file"
            )
        return built

    @classmethod
    def _from_path(cls, path: str, where: str) -> UploadSource:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.read(0)
        except IsADirectoryError:
            raise InvalidRequestError(f"{where}: {path!r} is a directory, not a file") from None
        except OSError as exc:
            raise InvalidRequestError(f"{where}: cannot read {path!r}: {exc.strerror or exc}") from None
        return cls(size=size, name=os.path.basename(path), path=path)

    @classmethod
    def _from_fileobj(cls, fileobj: Any, where: str, limit: int) -> UploadSource:
        if "b" not in getattr(fileobj, "mode", "b") or isinstance(fileobj, io.TextIOBase):
            raise InvalidRequestError(f"{where}: the file object must be opened in binary mode ('rb')")
        raw_name = getattr(fileobj, "name", None)
        name = os.path.basename(raw_name) if isinstance(raw_name, str) else None
        try:
            if fileobj.seekable():
                start = fileobj.tell()
                end = fileobj.seek(0, os.SEEK_END)
                fileobj.seek(start)
                return cls(size=end - start, name=name, fileobj=fileobj, start=start)
            data = fileobj.read(limit + 1)  # not seekable: keep it in memory so a chunk can be resent
        except OSError as exc:
            raise InvalidRequestError(f"{where}: cannot read the file object: {exc}") from None
        if not isinstance(data, bytes):
            raise InvalidRequestError(f"{where}: the file object must be opened in binary mode ('rb')")
        return cls(size=len(data), name=name, data=data)

    @property
    def data(self) -> bytes | None:
        """The bytes, when the source holds them in memory (None for a path or a file object)."""
        return self._data

    @property
    def label(self) -> str:
        return repr(self.path) if self.path else (f"the file object {self.name!r}" if self.name else "the data")

    def head(self, n: int = 16) -> bytes:
        with self.reader() as read_at:
            return read_at(0, min(n, self.size))

    def guess_mime(self) -> str | None:
        """The media type from the name's extension, else from the first bytes."""
        return (mime_from_name(self.name) if self.name else None) or sniff_mime(self.head())

    @contextmanager
    def reader(self) -> Iterator[Callable[[int, int], bytes]]:
        """A ``read_at(offset, n)`` function valid inside the block."""
        if self._data is not None:
            data = self._data
            yield lambda offset, n: data[offset : offset + n]
        elif self.path is not None:
            with open(self.path, "rb") as f:

                def read_file(offset: int, n: int) -> bytes:
                    f.seek(offset)
                    return f.read(n)

                yield read_file
        else:
            fileobj, start = self._fileobj, self._start
            assert fileobj is not None

            def read_obj(offset: int, n: int) -> bytes:
                fileobj.seek(start + offset)
                return fileobj.read(n)

            yield read_obj

    def sha256(self) -> str:
        """Hex digest of the bytes (read in 8 MiB pieces)."""
        digest = hashlib.sha256()
        with self.reader() as read_at:
            for offset in range(0, self.size, UPLOAD_CHUNK_GRANULARITY):
                digest.update(read_at(offset, UPLOAD_CHUNK_GRANULARITY))
        return digest.hexdigest()
