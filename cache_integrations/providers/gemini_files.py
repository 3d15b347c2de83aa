"""The Gemini Files API: resumable uploads, get, list, delete, and waiting until a file is ACTIVE.

Facts this module relies on, from Google's documentation:

- "The File API lets you store up to 20 GB of files per project, with a per-file maximum size of
  2 GB. Files are stored for 48 hours." (https://ai.google.dev/gemini-api/docs/files, and the
  document-processing guide https://ai.google.dev/gemini-api/docs/document-processing).
- The ``File`` resource (https://ai.google.dev/api/files#File): ``name`` is ``files/<id>`` where the
  id has up to 40 lowercase letters, digits or dashes and neither starts nor ends with a dash;
  ``displayName`` holds at most 512 characters; ``sizeBytes`` is an int64 printed as a string;
  ``expirationTime`` is "when the File will be deleted"; ``sha256Hash`` is a ``bytes`` field, so
  JSON carries it base64-encoded, and the bytes Google stores there are the *hex* digest (so the
  value decodes to 64 hex characters, not to 32 raw bytes); ``state`` is ``STATE_UNSPECIFIED``,
  ``PROCESSING`` ("cannot be used for inference yet"), ``ACTIVE`` or ``FAILED`` (then ``error``
  holds a Status); ``videoMetadata.videoDuration`` once a video is processed.
- ``files.list``: "If unspecified, defaults to 10. Maximum pageSize is 100."
  (https://ai.google.dev/api/files#method:-files.list); ``files.delete`` answers ``{}``.
- The resumable protocol, as in Google's caching guide's REST example (the Apollo 17 flight plan):
  ``POST /upload/v1beta/files`` with ``X-Goog-Upload-Protocol: resumable``, ``X-Goog-Upload-Command:
  start``, ``X-Goog-Upload-Header-Content-Length`` and ``-Content-Type`` and a JSON body
  ``{"file": {"display_name": ...}}`` answers with the session's ``X-Goog-Upload-URL`` (and
  ``X-Goog-Upload-Chunk-Granularity``, 8 MiB); bytes go there with ``X-Goog-Upload-Command:
  upload`` and ``X-Goog-Upload-Offset``, the last chunk with ``upload, finalize``, which answers
  ``{"file": {...}}`` with ``X-Goog-Upload-Status: final``. Every chunk but the last is a multiple
  of the granularity. After a dropped connection ``X-Goog-Upload-Command: query`` answers
  ``X-Goog-Upload-Size-Received``, and the upload resumes from there.

The session URL comes from the server, so the API key is sent to it only when it is on the host
the caller configured (`HTTPProvider.headers_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import (
    FileProcessingFailedError,
    FileProcessingTimeoutError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
)
from ..layout import canonical_json
from ..media import check_mime
from ..progress import upload_progress
from ._gemini_file import (
    FILE_LIFETIME_SECONDS,
    MAX_FILE_BYTES,
    UPLOAD_CHUNK_GRANULARITY,
    File,
    FileState,
    UploadSource,
    file_name,
    parse_file,
    upload_endpoint,
)
from ._http import HTTPProvider

__all__ = [
    "FILE_LIFETIME_SECONDS",
    "MAX_FILE_BYTES",
    "UPLOAD_CHUNK_GRANULARITY",
    "File",
    "FileState",
    "GeminiFiles",
    "UploadSource",
    "file_name",
    "parse_file",
    "upload_endpoint",
]

_PROVIDER = "google"
_MAX_DISPLAY_NAME = 512  # characters (https://ai.google.dev/api/files#File)
Progress = Callable[[int, int], None]
"""Called with (bytes the server has, total bytes) after every chunk."""


# ---------------------------------------------------------------------------------------- uploads


@dataclass
class _Upload:
    """One resumable session: where the bytes go, how far the server has them, the running digest."""

    url: str
    size: int
    chunk: int
    label: str
    offset: int = 0
    failures: int = 0
    hashed: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def next_chunk(self, read_at: Callable[[int, int], bytes]) -> tuple[bytes, dict[str, str]]:
        n = min(self.chunk, self.size - self.offset)
        data = read_at(self.offset, n)
        if len(data) != n:
            raise InvalidRequestError(f"file: {self.label} changed while uploading (read {len(data)} of {n} bytes)")
        if self.offset + n > self.hashed:
            self.digest.update(data[self.hashed - self.offset :])
            self.hashed = self.offset + n
        last = self.offset + n >= self.size
        headers = {
            "Content-Type": "application/octet-stream",
            "X-Goog-Upload-Command": "upload, finalize" if last else "upload",
            "X-Goog-Upload-Offset": str(self.offset),
        }
        return data, headers

    def verify(self, file: File) -> File:
        if file.sha256 is not None and self.hashed == self.size and file.sha256 != self.digest.hexdigest():
            raise ProviderError(
                f"the upload of {self.label} arrived corrupted: Gemini's sha256 {file.sha256} differs from the "
                f"sent bytes' {self.digest.hexdigest()}",
                status_code=200,
                provider=_PROVIDER,
            )
        return file


_UPLOAD_DONE = object()


class GeminiFiles:
    """Sync and async Files API calls over a `GeminiProvider`'s pooled clients and credentials.

    Polling sleeps through `sleep` / `asleep` and reads `monotonic`, so tests inject fake ones.
    """

    def __init__(
        self,
        provider: HTTPProvider,
        *,
        upload_url: str | None = None,
        chunk_size: int = UPLOAD_CHUNK_GRANULARITY,
        resume_attempts: int = 5,
        poll_interval: float = 1.0,
        max_poll_interval: float = 10.0,
        wait_timeout: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if chunk_size < 1:
            raise InvalidRequestError(f"chunk_size: expected a positive number of bytes, got {chunk_size!r}")
        self.provider = provider
        self.upload_url = upload_url or upload_endpoint(provider.base_url)
        self.chunk_size = chunk_size
        self.resume_attempts = resume_attempts
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.wait_timeout = wait_timeout
        self.sleep = sleep
        self.asleep = asleep
        self.monotonic = monotonic

    def __repr__(self) -> str:
        return f"GeminiFiles(upload_url={self.upload_url!r})"

    def uri_for(self, name: str | File) -> str:
        """The URI of ``files/<id>`` on the configured endpoint (what the server reports as ``uri``)."""
        return f"{self.provider.base_url}/{file_name(name)}"

    # -- validation and the start request ------------------------------------------------------

    def _prepare(
        self, source: Any, mime_type: str | None, display_name: str | None
    ) -> tuple[UploadSource, str, str | None]:
        src = UploadSource.of(source)
        mime = (mime_type or src.guess_mime() or "").strip().lower()
        if not mime:
            raise InvalidRequestError(
                f"mime_type: cannot tell the media type of {src.label}; pass mime_type "
                "(for example 'application/pdf', 'video/mp4', 'audio/mp3')"
            )
        mime = check_mime(mime, "upload")
        name = display_name if display_name is not None else src.name
        if name is not None and len(name) > _MAX_DISPLAY_NAME:
            raise InvalidRequestError(
                f"display_name: at most {_MAX_DISPLAY_NAME} characters (Files API limit), got {len(name)}"
            )
        return src, mime, name

    def _start_request(self, src: UploadSource, mime: str, name: str | None) -> tuple[bytes, dict[str, str]]:
        headers = self.provider.headers_for(self.upload_url)
        headers.update(
            {
                "X-Goog-Upload-Protocol": "resumable",
                "X-Goog-Upload-Command": "start",
                "X-Goog-Upload-Header-Content-Length": str(src.size),
                "X-Goog-Upload-Header-Content-Type": mime,
                "Content-Type": "application/json",
            }
        )
        body = {"file": {"display_name": name}} if name else {"file": {}}
        return canonical_json(body).encode(), headers

    def _session(self, resp: httpx.Response, src: UploadSource) -> _Upload:
        url = resp.headers.get("x-goog-upload-url")
        status = resp.headers.get("x-goog-upload-status", "active")
        if not url or status != "active":
            raise ProviderError(
                f"the upload start answered without an active session (X-Goog-Upload-Status {status!r})",
                status_code=resp.status_code,
                provider=_PROVIDER,
            )
        target = httpx.URL(url)
        if target.scheme not in ("http", "https") or not target.host:
            raise ProviderError("the upload session URL is not an http(s) URL", status_code=200, provider=_PROVIDER)
        if target.scheme == "http" and httpx.URL(self.upload_url).scheme == "https":
            raise ProviderError(
                "the upload session URL downgrades https to http; refusing to send the file",
                status_code=200,
                provider=_PROVIDER,
            )
        try:
            granularity = max(1, int(resp.headers.get("x-goog-upload-chunk-granularity") or 1))
        except ValueError:
            granularity = UPLOAD_CHUNK_GRANULARITY
        chunk = math.ceil(self.chunk_size / granularity) * granularity
        return _Upload(url=url, size=src.size, chunk=chunk, label=src.label)

    def _chunk_headers(self, upload: _Upload, extra: Mapping[str, str]) -> dict[str, str]:
        headers = self.provider.headers_for(upload.url)
        headers.update(extra)
        return headers

    def _error(self, resp: httpx.Response) -> ProviderError:
        return self.provider.error_from_response(resp.status_code, resp.headers, resp.content)

    def _chunk_answer(self, upload: _Upload, resp: httpx.Response, sent: int) -> Any:
        """A finalized `File`, `_UPLOAD_DONE` for an accepted chunk, or the retryable error."""
        if resp.status_code >= 400:
            error = self._error(resp)
            if self.provider.is_retryable(error):
                return error
            raise error
        status = resp.headers.get("x-goog-upload-status", "")
        if status == "final":
            return upload.verify(_final_file(resp))
        if status == "active" and upload.offset + sent < upload.size:
            upload.offset += sent
            upload.failures = 0
            return _UPLOAD_DONE
        raise ProviderError(
            f"the upload answered X-Goog-Upload-Status {status!r} at offset {upload.offset + sent} of {upload.size}",
            status_code=resp.status_code,
            provider=_PROVIDER,
        )

    def _query_answer(self, upload: _Upload, resp: httpx.Response) -> Any:
        """After a failure: the finalized `File`, `_UPLOAD_DONE` with the offset moved, or the error."""
        if resp.status_code >= 400:
            error = self._error(resp)
            if self.provider.is_retryable(error):
                return error
            raise error
        status = resp.headers.get("x-goog-upload-status", "")
        if status == "final":
            return upload.verify(_final_file(resp))
        received = resp.headers.get("x-goog-upload-size-received", "")
        if status != "active" or not received.strip().isdigit() or int(received) > upload.size:
            raise ProviderError(
                f"the upload session is no longer resumable (status {status!r}, received {received!r})",
                status_code=resp.status_code,
                provider=_PROVIDER,
            )
        upload.offset = int(received)
        return _UPLOAD_DONE

    def _start_delay(self, problem: Exception, attempt: int) -> float:
        """Backoff before re-sending a start request (it creates nothing until bytes arrive), or raise."""
        retryable = not isinstance(problem, ProviderError) or self.provider.is_retryable(problem)
        if retryable and attempt < self.provider.retry.max_retries:
            return self.provider.retry.delay(attempt)
        if isinstance(problem, ProviderError):
            raise problem
        raise ProviderConnectionError(
            f"google: could not start an upload at {self.upload_url} ({type(problem).__name__}) "
            f"after {attempt + 1} attempt(s)",
            provider=_PROVIDER,
        ) from problem

    def _next_delay(self, upload: _Upload, problem: Exception) -> float:
        upload.failures += 1
        if upload.failures > self.resume_attempts:
            if isinstance(problem, ProviderError):
                raise problem
            raise ProviderConnectionError(
                f"google: the upload of {upload.label} failed {upload.failures} times in a row at byte "
                f"{upload.offset} ({type(problem).__name__})",
                provider=_PROVIDER,
                maybe_sent=True,
            ) from problem
        return self.provider.retry.delay(upload.failures - 1)

    # -- sync ----------------------------------------------------------------------------------

    def upload(
        self,
        source: Any,
        *,
        mime_type: str | None = None,
        display_name: str | None = None,
        progress: Progress | None = None,
    ) -> File:
        """Upload a path, bytes or binary file object with the resumable protocol and return the `File`.

        The file may still be PROCESSING (video and audio usually are); `wait_active` waits for it.
        A dropped connection or a 5xx mid-upload is resumed from the offset the server reports.
        """
        src, mime, name = self._prepare(source, mime_type, display_name)
        body, headers = self._start_request(src, mime, name)
        client = self.provider.http_client()
        resp = self._start_sync(client, body, headers)
        upload = self._session(resp, src)
        with _terminal_bar(progress, name or "upload", upload.size) as progress, src.reader() as read_at:
            while True:
                data, extra = upload.next_chunk(read_at)
                problem: Exception
                try:
                    resp = client.post(upload.url, content=data, headers=self._chunk_headers(upload, extra))
                except httpx.TransportError as exc:
                    problem = exc
                else:
                    answer = self._chunk_answer(upload, resp, len(data))
                    if isinstance(answer, File):
                        _report(progress, upload.size, upload.size)
                        return answer
                    if answer is _UPLOAD_DONE:
                        _report(progress, upload.offset, upload.size)
                        continue
                    problem = answer
                found = self._resume_sync(client, upload, problem)
                if found is not None:
                    _report(progress, upload.size, upload.size)
                    return found

    def _start_sync(self, client: httpx.Client, body: bytes, headers: dict[str, str]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = client.post(self.upload_url, content=body, headers=headers)
            except httpx.TransportError as exc:
                delay = self._start_delay(exc, attempt)
            else:
                if resp.status_code < 400:
                    return resp
                delay = self._start_delay(self._error(resp), attempt)
            self.sleep(delay)
            attempt += 1

    def _resume_sync(self, client: httpx.Client, upload: _Upload, problem: Exception) -> File | None:
        while True:
            self.sleep(self._next_delay(upload, problem))
            try:
                resp = client.post(upload.url, headers=self._chunk_headers(upload, {"X-Goog-Upload-Command": "query"}))
            except httpx.TransportError as exc:
                problem = exc
                continue
            answer = self._query_answer(upload, resp)
            if isinstance(answer, File):
                return answer
            if answer is _UPLOAD_DONE:
                return None
            problem = answer

    def get(self, name: str | File) -> File:
        """``files.get``; a gone file raises `UploadedFileNotFoundError`."""
        return parse_file(self.provider.request("GET", file_name(name)))

    def list(self, page_size: int = 100) -> Iterator[File]:
        """Every file of this API key's project, following ``nextPageToken`` (page size 1..100)."""
        _check_page_size(page_size)
        return self._list(page_size)

    def _list(self, page_size: int) -> Iterator[File]:
        params = {"pageSize": str(page_size)}
        while True:
            data = self.provider.request("GET", "files", params=params)
            for item in data.get("files") or ():
                yield parse_file(item)
            token = data.get("nextPageToken")
            if not token:
                return
            params = {"pageSize": str(page_size), "pageToken": str(token)}

    def delete(self, name: str | File) -> None:
        """``files.delete``."""
        self.provider.request("DELETE", file_name(name))

    def wait_active(self, file: str | File, *, timeout: float | None = None) -> File:
        """Poll ``files.get`` with backoff until the file is ACTIVE.

        FAILED raises `FileProcessingFailedError`; still processing after `timeout` seconds (default
        `wait_timeout`) raises `FileProcessingTimeoutError`; both name ``files/<id>`` and the display name.
        """
        name = file_name(file)
        current = file if isinstance(file, File) else self.get(name)
        started = self.monotonic()
        deadline = started + (self.wait_timeout if timeout is None else timeout)
        delay = self.poll_interval
        while current.state != "ACTIVE":
            self.sleep(_next_poll(current, deadline, delay, self.monotonic(), started))
            delay = min(delay * 2, self.max_poll_interval)
            current = self.get(name)
        return current

    # -- async ---------------------------------------------------------------------------------

    async def aupload(
        self,
        source: Any,
        *,
        mime_type: str | None = None,
        display_name: str | None = None,
        progress: Progress | None = None,
    ) -> File:
        """`upload` for asyncio; file reads happen in a worker thread."""
        src, mime, name = self._prepare(source, mime_type, display_name)
        body, headers = self._start_request(src, mime, name)
        client = self.provider.async_http_client()
        resp = await self._astart(client, body, headers)
        upload = self._session(resp, src)
        with _terminal_bar(progress, name or "upload", upload.size) as progress, src.reader() as read_at:
            while True:
                data, extra = await asyncio.to_thread(upload.next_chunk, read_at)
                problem: Exception
                try:
                    resp = await client.post(upload.url, content=data, headers=self._chunk_headers(upload, extra))
                except httpx.TransportError as exc:
                    problem = exc
                else:
                    answer = self._chunk_answer(upload, resp, len(data))
                    if isinstance(answer, File):
                        _report(progress, upload.size, upload.size)
                        return answer
                    if answer is _UPLOAD_DONE:
                        _report(progress, upload.offset, upload.size)
                        continue
                    problem = answer
                found = await self._aresume(client, upload, problem)
                if found is not None:
                    _report(progress, upload.size, upload.size)
                    return found

    async def _astart(self, client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
        attempt = 0
        while True:
            try:
                resp = await client.post(self.upload_url, content=body, headers=headers)
            except httpx.TransportError as exc:
                delay = self._start_delay(exc, attempt)
            else:
                if resp.status_code < 400:
                    return resp
                delay = self._start_delay(self._error(resp), attempt)
            await self.asleep(delay)
            attempt += 1

    async def _aresume(self, client: httpx.AsyncClient, upload: _Upload, problem: Exception) -> File | None:
        while True:
            await self.asleep(self._next_delay(upload, problem))
            try:
                resp = await client.post(
                    upload.url, headers=self._chunk_headers(upload, {"X-Goog-Upload-Command": "query"})
                )
            except httpx.TransportError as exc:
                problem = exc
                continue
            answer = self._query_answer(upload, resp)
            if isinstance(answer, File):
                return answer
            if answer is _UPLOAD_DONE:
                return None
            problem = answer

    async def aget(self, name: str | File) -> File:
        return parse_file(await self.provider.arequest("GET", file_name(name)))

    def alist(self, page_size: int = 100) -> AsyncIterator[File]:
        _check_page_size(page_size)
        return self._alist(page_size)

    async def _alist(self, page_size: int) -> AsyncIterator[File]:
        params = {"pageSize": str(page_size)}
        while True:
            data = await self.provider.arequest("GET", "files", params=params)
            for item in data.get("files") or ():
                yield parse_file(item)
            token = data.get("nextPageToken")
            if not token:
                return
            params = {"pageSize": str(page_size), "pageToken": str(token)}

    async def adelete(self, name: str | File) -> None:
        await self.provider.arequest("DELETE", file_name(name))

    async def await_active(self, file: str | File, *, timeout: float | None = None) -> File:
        """`wait_active` for asyncio."""
        name = file_name(file)
        current = file if isinstance(file, File) else await self.aget(name)
        started = self.monotonic()
        deadline = started + (self.wait_timeout if timeout is None else timeout)
        delay = self.poll_interval
        while current.state != "ACTIVE":
            await self.asleep(_next_poll(current, deadline, delay, self.monotonic(), started))
            delay = min(delay * 2, self.max_poll_interval)
            current = await self.aget(name)
        return current


def _next_poll(current: File, deadline: float, delay: float, now: float, started: float) -> float:
    """How long to sleep before polling a not yet ACTIVE file again; raises for FAILED or a passed deadline."""
    label = f"{current.name} ({current.display_name!r})" if current.display_name else current.name
    if current.state == "FAILED":
        reason = current.error or "no reason given"
        raise FileProcessingFailedError(
            f"google: {label} failed processing: {reason}",
            name=current.name,
            display_name=current.display_name,
            reason=reason,
        )
    if now >= deadline:
        raise FileProcessingTimeoutError(
            f"google: {label} is still {current.state} after {now - started:.0f} s; wait longer or check the file",
            name=current.name,
            display_name=current.display_name,
            state=current.state,
            waited=now - started,
        )
    return min(delay, deadline - now)


def _final_file(resp: httpx.Response) -> File:
    try:
        data = resp.json()
    except ValueError as exc:
        raise ProviderError(
            "the finalized upload answered without a JSON body", status_code=resp.status_code, provider=_PROVIDER
        ) from exc
    inner = data.get("file") if isinstance(data, Mapping) else None
    if not isinstance(inner, Mapping):
        raise ProviderError(
            "the finalized upload answered without a file", status_code=resp.status_code, provider=_PROVIDER, body=data
        )
    return parse_file(inner)


@contextlib.contextmanager
def _terminal_bar(progress: Progress | None, name: str, total: int) -> Iterator[Progress]:
    """The caller's `progress` callback, plus a progress bar on a terminal for a large upload (quiet
    otherwise; see `cache_integrations.progress`)."""
    with upload_progress(f"Uploading {name}", total) as sent:
        last = 0

        def report(done: int, size: int) -> None:
            nonlocal last
            sent(max(done - last, 0))
            last = done
            if progress is not None:
                progress(done, size)

        yield report


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _check_page_size(page_size: int) -> None:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 100:
        raise InvalidRequestError(
            f"page_size: expected an int from 1 to 100 (the Files API maximum), got {page_size!r}"
        )
