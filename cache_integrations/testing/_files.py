"""The emulated Gemini Files API: resumable uploads, get / list / delete, processing states, 48 h expiry.

Protocol (as Google's caching guide and SDKs speak it): ``POST /upload/v1beta/files`` with
``X-Goog-Upload-Protocol: resumable`` and ``X-Goog-Upload-Command: start`` opens a session and answers
``X-Goog-Upload-URL`` (on the host and scheme the request came to), ``X-Goog-Upload-Status: active``
and ``X-Goog-Upload-Chunk-Granularity``; chunks are POSTed there with ``upload`` (every chunk but the
last a multiple of the granularity) at ``X-Goog-Upload-Offset``, the last one with ``upload,
finalize``, which answers ``{"file": {...}}`` with status ``final``; ``query`` answers
``X-Goog-Upload-Size-Received``. The session URL is the credential: chunks need no API key.

Files of audio and video start ``PROCESSING`` and turn ``ACTIVE`` after `FileStore.processing_polls`
``files.get`` calls or `processing_seconds` on the emulator clock, whichever comes first; other
files are ACTIVE at once; `FileStore.fail_next` makes uploads end ``FAILED``. Files expire 48 hours
after upload on the emulator clock. Errors use Gemini's verbatim texts: a gone file is 403
PERMISSION_DENIED "You do not have permission to access the File <id> or it may not exist.", a
file used before it is ACTIVE is 400 FAILED_PRECONDITION "The File <id> is not in an ACTIVE state
and usage is not allowed.". Texts the real service was not observed giving (a wrong offset, a chunk
off the granularity) are the emulator's own and say so.

`FileStore.drop_next_chunk` simulates a dropped connection: the next chunk is stored only in part
and the answer never arrives (the in-process transport raises ``httpx.RemoteProtocolError``; over
HTTP the server answers 500), so clients must ``query`` and resume.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._context import RequestContext
from ._gemini import JSON_TYPE, _parse_json, _Reject, authenticate, format_time, google_error, invalid
from ._http import EmulatorResponse, json_response
from ._media import MediaInfo, MediaMeter, is_supported_mime
from ._synth import digest, encode
from .tokenizer import media_marker

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["FileStore", "StoredFile"]

_NS = 1_000_000_000
_FILES_PREFIX = "/v1beta/files"
_UPLOAD_PATH = "/upload/v1beta/files"
_FILE_ITEM = re.compile(r"^/v1beta/files/([^/:]+)$")
_FILE_REF = re.compile(r"^(?:https?://[^/]+(?:/[^?#]*)?/)?files/([a-z0-9][a-z0-9-]*)$")
_UPLOAD_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_EXTERNAL_TOKENS = 258  # an external URL the emulator cannot fetch counts as one image or page
FILE_GONE = "You do not have permission to access the File {id} or it may not exist."
NOT_ACTIVE = "The File {id} is not in an ACTIVE state and usage is not allowed."
PAYLOAD_TOO_LARGE = "Request payload size exceeds the limit: {limit} bytes."
UNSUPPORTED_MIME = "Unsupported MIME type: {mime}"


@dataclass
class StoredFile:
    """One uploaded file as the emulator keeps it (with the bytes, for token accounting)."""

    file_id: str
    display_name: str
    mime_type: str
    size: int
    sha256: str
    uri: str
    create_ns: int
    update_ns: int
    expire_ns: int
    info: MediaInfo
    state: str = "ACTIVE"
    polls_left: int = 0
    ready_ns: int = 0
    failure: str | None = None
    order: int = 0

    @property
    def name(self) -> str:
        return f"files/{self.file_id}"

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.display_name:
            out["displayName"] = self.display_name
        out.update(
            {
                "mimeType": self.mime_type,
                "sizeBytes": str(self.size),
                "createTime": format_time(self.create_ns),
                "updateTime": format_time(self.update_ns),
                "expirationTime": format_time(self.expire_ns),
                # A bytes field holding the hex digest, so JSON shows base64 of the hex text.
                "sha256Hash": base64.b64encode(self.sha256.encode()).decode(),
                "uri": self.uri,
                "state": self.state,
                "source": "UPLOADED",
            }
        )
        if self.state == "ACTIVE" and self.info.duration is not None and self.mime_type.startswith("video/"):
            out["videoMetadata"] = {"videoDuration": f"{self.info.duration:g}s"}
        if self.state == "FAILED":
            out["error"] = {"code": 3, "message": self.failure or "File processing failed."}
        return out


@dataclass
class _Session:
    upload_id: str
    size: int
    mime_type: str
    display_name: str
    uri_base: str
    data: bytearray = field(default_factory=bytearray)
    status: str = "active"
    file: StoredFile | None = None


def _headers(status: str, **extra: str) -> dict[str, str]:
    return {"x-goog-upload-status": status, **extra}


class FileStore:
    """The emulator's Files API. Knobs are plain attributes, changeable between requests.

    ``processing_polls`` / ``processing_seconds``: how long audio and video stay PROCESSING;
    ``chunk_granularity``: what the upload server reports (8 MiB like Google; tests lower it);
    ``lifetime_seconds``: 48 hours; ``max_file_bytes``: 2 GB.
    """

    def __init__(self, emulator: Emulator) -> None:
        self._emu = emulator
        self.meter = MediaMeter(emulator.tokenizer)
        self.processing_polls = 2
        self.processing_seconds = 30.0
        self.chunk_granularity = 8 * 1024 * 1024
        self.lifetime_seconds = 48 * 3600.0
        self.max_file_bytes = 2 * 1024**3
        self._files: dict[str, StoredFile] = {}
        self._sessions: dict[str, _Session] = {}
        self._seq = 0
        self._fail: list[str] = []
        self._drop: list[int] = []

    # -- knobs for tests -----------------------------------------------------------------------

    def fail_next(self, message: str = "File processing failed.", *, times: int = 1) -> None:
        """Make the next `times` uploads finish processing as FAILED with `message`."""
        with self._emu._lock:
            self._fail.extend([message] * times)

    def drop_next_chunk(self, keep_bytes: int = 0) -> None:
        """Drop the connection of the next upload chunk after storing its first `keep_bytes` bytes."""
        with self._emu._lock:
            self._drop.append(max(0, keep_bytes))

    def names(self) -> list[str]:
        """``files/<id>`` of every live file, oldest first."""
        with self._emu._lock:
            return [f.name for f in self._alive()]

    def get(self, name: str) -> StoredFile | None:
        """A live file by ``files/<id>``, its id or its URI (without counting as a poll)."""
        match = _FILE_REF.match(name if "/" in name else f"files/{name}")
        with self._emu._lock:
            return self._lookup(match.group(1)) if match else None

    def delete(self, name: str) -> bool:
        """Delete a file server-side (as expiry or another process would); True if it existed."""
        found = self.get(name)
        if found is None:
            return False
        with self._emu._lock:
            return self._remove(found.file_id, "files_deleted")

    # -- state ---------------------------------------------------------------------------------

    def _now_ns(self) -> int:
        return int(self._emu.clock.time() * _NS) // 1000 * 1000

    def _remove(self, file_id: str, counter: str) -> bool:
        if self._files.pop(file_id, None) is None:
            return False
        self._emu._c[counter] += 1
        return True

    def _purge(self) -> None:
        now = self._now_ns()
        for file_id in [i for i, f in self._files.items() if f.expire_ns <= now]:
            self._remove(file_id, "files_expired")

    def _alive(self) -> list[StoredFile]:
        self._purge()
        return sorted(self._files.values(), key=lambda f: f.order)

    def alive_count(self) -> int:
        self._purge()
        return len(self._files)

    def _lookup(self, file_id: str) -> StoredFile | None:
        self._purge()
        return self._files.get(file_id)

    def _advance(self, file: StoredFile, *, poll: bool) -> None:
        if file.state != "PROCESSING":
            return
        if poll:
            file.polls_left -= 1
        now = self._now_ns()
        if file.polls_left <= 0 or now >= file.ready_ns:
            file.state = "FAILED" if file.failure is not None else "ACTIVE"
            file.update_ns = now

    def _new_id(self) -> str:
        self._seq += 1
        return encode(digest("file", self._emu.seed, self._seq), "abcdefghijklmnopqrstuvwxyz0123456789", 12)

    # -- routes --------------------------------------------------------------------------------

    def route(self, ctx: RequestContext) -> EmulatorResponse | None:
        """Answer a Files API request, or None when the path is not one of its routes."""
        path, method = ctx.path, ctx.method
        if path == _UPLOAD_PATH and method == "POST":
            return self._session_command(ctx) if "upload_id" in ctx.query else self._start(ctx)
        if path == _FILES_PREFIX and method == "GET":
            return self._list(ctx)
        match = _FILE_ITEM.match(path)
        if match and method in ("GET", "DELETE"):
            return self._item(ctx, match.group(1))
        return None

    def _start(self, ctx: RequestContext) -> EmulatorResponse:
        key = authenticate(self._emu, ctx)
        if isinstance(key, EmulatorResponse):
            return key
        headers = ctx.headers
        if headers.get("x-goog-upload-protocol", "").lower() != "resumable":
            return invalid("The emulator supports only X-Goog-Upload-Protocol: resumable uploads.")
        if headers.get("x-goog-upload-command", "").strip().lower() != "start":
            return invalid("A resumable upload starts with X-Goog-Upload-Command: start.")
        try:
            size = int(headers.get("x-goog-upload-header-content-length", ""))
        except ValueError:
            return invalid("X-Goog-Upload-Header-Content-Length is required and must be an integer.")
        if size > self.max_file_bytes:
            return invalid(PAYLOAD_TOO_LARGE.format(limit=self.max_file_bytes))
        mime = headers.get("x-goog-upload-header-content-type", "").strip().lower()
        display = ""
        if ctx.body.strip():
            try:
                body = _parse_json(ctx)
            except _Reject as reject:
                return reject.response
            file = body.get("file") or {}
            if not isinstance(file, Mapping):
                return invalid("Invalid value at 'file': expected an object.")
            display = str(file.get("displayName", file.get("display_name")) or "")
            mime = mime or str(file.get("mimeType", file.get("mime_type")) or "")
        if len(display) > 512:
            return invalid("* CreateFileRequest.file.display_name: must be at most 512 characters\n")
        if not mime:
            return invalid("X-Goog-Upload-Header-Content-Type is required.")
        host = ctx.headers.get("host", "generativelanguage.googleapis.com")
        upload_id = encode(digest("upload", self._emu.seed, ctx.seq), _UPLOAD_ID_ALPHABET, 40)
        self._sessions[upload_id] = _Session(upload_id, size, mime, display, f"{ctx.scheme}://{host}/v1beta/files/")
        url = f"{ctx.scheme}://{host}{_UPLOAD_PATH}?upload_id={upload_id}&upload_protocol=resumable"
        extra = _headers(
            "active",
            **{
                "x-goog-upload-url": url,
                "x-goog-upload-chunk-granularity": str(self.chunk_granularity),
                "x-guploader-uploadid": upload_id,
            },
        )
        return EmulatorResponse(200, {"content-type": "text/plain; charset=utf-8", **extra}, b"")

    def _session_command(self, ctx: RequestContext) -> EmulatorResponse:
        session = self._sessions.get(ctx.query.get("upload_id", ""))
        if session is None:
            return google_error(404, "The upload session does not exist (or has expired).", "NOT_FOUND")
        commands = {c.strip().lower() for c in ctx.headers.get("x-goog-upload-command", "").split(",")}
        if "query" in commands:
            if session.status == "final" and session.file is not None:
                return json_response(200, {"file": session.file.resource()}, JSON_TYPE, _headers("final"))
            received = {"x-goog-upload-size-received": str(len(session.data))}
            return EmulatorResponse(200, _headers(session.status, **received), b"")
        if "cancel" in commands:
            session.status = "cancelled"
            return EmulatorResponse(200, _headers("cancelled"), b"")
        if not commands & {"upload", "finalize"}:
            return invalid("X-Goog-Upload-Command must be upload, 'upload, finalize', finalize, query or cancel.")
        if session.status != "active":
            return google_error(400, f"The upload session is {session.status}.", "FAILED_PRECONDITION")
        try:
            offset = int(ctx.headers.get("x-goog-upload-offset", "0"))
        except ValueError:
            return invalid("X-Goog-Upload-Offset must be an integer.")
        if offset != len(session.data):  # the emulator's wording; Google's server was not observed here
            return EmulatorResponse(
                400,
                {"content-type": JSON_TYPE, **_headers("active")},
                f'{{"error":{{"code":400,"message":"Upload offset {offset} does not match the {len(session.data)} '
                f'bytes received.","status":"INVALID_ARGUMENT"}}}}'.encode(),
            )
        chunk = ctx.body
        if self._drop:
            keep = self._drop.pop(0)
            session.data.extend(chunk[:keep])
            self._emu._c["errors_injected"] += 1
            return EmulatorResponse(500, {}, b"", disconnect=True)
        finalize = "finalize" in commands
        if len(session.data) + len(chunk) > session.size:
            return invalid(f"The upload has more bytes than the {session.size} declared at start.")
        if not finalize and len(chunk) % self.chunk_granularity:
            return invalid(
                f"A chunk that does not finalize must be a multiple of {self.chunk_granularity} bytes "
                f"(X-Goog-Upload-Chunk-Granularity); got {len(chunk)}."
            )
        session.data.extend(chunk)
        self._emu._c["upload_bytes"] += len(chunk)
        if not finalize:
            return EmulatorResponse(200, _headers("active"), b"")
        if len(session.data) != session.size:
            return invalid(f"The upload ended after {len(session.data)} of the {session.size} bytes declared.")
        session.status = "final"
        session.file = self._store(session)
        return json_response(200, {"file": session.file.resource()}, JSON_TYPE, _headers("final"))

    def _store(self, session: _Session) -> StoredFile:
        data = bytes(session.data)
        sha = hashlib.sha256(data).hexdigest()
        now = self._now_ns()
        file_id = self._new_id()
        info = self.meter.measure(session.mime_type, data, sha)
        file = StoredFile(
            file_id=file_id,
            display_name=session.display_name,
            mime_type=session.mime_type,
            size=len(data),
            sha256=sha,
            uri=session.uri_base + file_id,
            create_ns=now,
            update_ns=now,
            expire_ns=now + int(self.lifetime_seconds * _NS),
            info=info,
            order=self._seq,
        )
        failure = self._fail.pop(0) if self._fail else None
        if failure is not None or session.mime_type.startswith(("audio/", "video/")):
            file.state = "PROCESSING"
            file.failure = failure
            file.polls_left = self.processing_polls
            file.ready_ns = now + int(self.processing_seconds * _NS)
        self._files[file_id] = file
        self._emu._c["files_uploaded"] += 1
        return file

    def _gone(self, file_id: str) -> EmulatorResponse:
        return google_error(403, FILE_GONE.format(id=file_id), "PERMISSION_DENIED")

    def _item(self, ctx: RequestContext, file_id: str) -> EmulatorResponse:
        auth = authenticate(self._emu, ctx)
        if isinstance(auth, EmulatorResponse):
            return auth
        file = self._lookup(file_id)
        if file is None:
            return self._gone(file_id)
        if ctx.method == "DELETE":
            self._remove(file_id, "files_deleted")
            return json_response(200, {}, JSON_TYPE)
        self._advance(file, poll=True)
        return json_response(200, file.resource(), JSON_TYPE)

    def _list(self, ctx: RequestContext) -> EmulatorResponse:
        auth = authenticate(self._emu, ctx)
        if isinstance(auth, EmulatorResponse):
            return auth
        try:
            size = int(ctx.query.get("pageSize", "10") or 10)
        except ValueError:
            return invalid("Invalid value at 'page_size' (TYPE_INT32)")
        size = 10 if size <= 0 else min(size, 100)
        alive = self._alive()
        token = ctx.query.get("pageToken")
        if token:
            try:
                marker = int(base64.urlsafe_b64decode(token.encode() + b"==").decode().removeprefix("after:"))
            except (ValueError, UnicodeDecodeError, binascii.Error):
                return invalid("Invalid page token.")
            alive = [f for f in alive if f.order > marker]
        page = alive[:size]
        for file in page:
            self._advance(file, poll=False)
        out: dict[str, Any] = {"files": [f.resource() for f in page]} if page else {}
        if size < len(alive):
            out["nextPageToken"] = base64.urlsafe_b64encode(f"after:{page[-1].order}".encode()).decode().rstrip("=")
        return json_response(200, out, JSON_TYPE)

    # -- media inside generateContent / countTokens / cachedContents ---------------------------

    def render(self, part: Mapping[str, Any]) -> str:
        """The prompt text of an ``inlineData`` / ``fileData`` part, worth its media tokens.

        Raises the emulator's rejection with Gemini's answer for a gone file (403), a file not yet
        ACTIVE (400 FAILED_PRECONDITION), undecodable base64 or an unsupported media type (400).
        """
        inline = part.get("inlineData", part.get("inline_data"))
        if isinstance(inline, Mapping):
            return self._render_inline(inline)
        blob = part.get("fileData", part.get("file_data"))
        assert isinstance(blob, Mapping)
        uri = str(blob.get("fileUri", blob.get("file_uri")) or "")
        match = _FILE_REF.match(uri)
        if match is None:
            if not uri.startswith(("http://", "https://")):
                raise _Reject(invalid(f"Invalid or unsupported file uri: {uri}"))
            key = hashlib.sha256(uri.encode()).hexdigest()[:16]
            return media_marker(f"u{key}", _EXTERNAL_TOKENS)  # an external URL: not fetched
        file_id = match.group(1)
        file = self._lookup(file_id)
        if file is None:
            raise _Reject(self._gone(file_id))
        self._advance(file, poll=False)
        if file.state != "ACTIVE":
            raise _Reject(google_error(400, NOT_ACTIVE.format(id=file_id), "FAILED_PRECONDITION"))
        return media_marker(f"f{file_id}", file.info.tokens)

    def _render_inline(self, blob: Mapping[str, Any]) -> str:
        mime = str(blob.get("mimeType", blob.get("mime_type")) or "").strip().lower()
        text = blob.get("data")
        if not mime:
            raise _Reject(invalid("* GenerateContentRequest.contents.parts.inline_data.mime_type: required\n"))
        if not is_supported_mime(mime):
            raise _Reject(invalid(UNSUPPORTED_MIME.format(mime=mime)))
        if not isinstance(text, str) or not text:
            raise _Reject(invalid("* GenerateContentRequest.contents.parts.inline_data.data: required\n"))
        key = hashlib.sha256(text.encode()).hexdigest()
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _Reject(
                invalid(f"Invalid value at 'inline_data.data' (TYPE_BYTES), Base64 decoding failed for \"{text[:40]}\"")
            ) from None
        info = self.meter.measure(mime, data, key)
        return media_marker(f"i{key[:16]}", info.tokens)
