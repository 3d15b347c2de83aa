"""The Gemini Files API client against the emulator: the resumable protocol (start, chunks, finalize),
resuming after a dropped connection, polling until ACTIVE, FAILED and deadlines, get/list/delete, expiry,
the checks made before anything is sent, and where the API key may go."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cache_integrations.errors import (
    FileNotActiveError,
    FileProcessingFailedError,
    FileProcessingTimeoutError,
    InvalidRequestError,
    ProviderConnectionError,
    UploadedFileNotFoundError,
)
from cache_integrations.messages import ChatRequest, MediaPart, Message
from cache_integrations.providers.gemini import GeminiProvider
from cache_integrations.providers.gemini_files import (
    GeminiFiles,
    UploadSource,
    file_name,
    parse_file,
    upload_endpoint,
)
from cache_integrations.testing import Emulator, FakeClock
from tests.media import samples

KEY = "test-gemini-files-secret"
BASE = "http://emulator/v1beta"


class FakeTime:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    emu = Emulator(clock=clock)
    emu.files.chunk_granularity = 1024
    return emu


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def _files(emu: Emulator, fake_time: FakeTime, **kwargs: Any) -> GeminiFiles:
    transport = emu.transport()
    provider = GeminiProvider(
        api_key=SecretStr(KEY),
        base_url=BASE,
        http_client=httpx.Client(transport=transport),
        async_http_client=httpx.AsyncClient(transport=transport),
    )
    kwargs.setdefault("chunk_size", 2048)
    return GeminiFiles(
        provider, sleep=fake_time.sleep, asleep=fake_time.asleep, monotonic=fake_time.monotonic, **kwargs
    )


@pytest.fixture
def files(emu: Emulator, fake_time: FakeTime) -> GeminiFiles:
    return _files(emu, fake_time)


def _uploads(emu: Emulator) -> list[Any]:
    return [r for r in emu.requests if r.path == "/upload/v1beta/files"]


# -- the protocol ------------------------------------------------------------------------------------


def test_a_small_pdf_goes_in_one_finalizing_chunk_after_a_resumable_start(emu: Emulator, files: GeminiFiles) -> None:
    data = samples.pdf(3)
    file = files.upload(data, mime_type="application/pdf", display_name="A17_FlightPlan")
    start, chunk = _uploads(emu)
    assert start.headers["x-goog-upload-protocol"] == "resumable"
    assert start.headers["x-goog-upload-command"] == "start"
    assert start.headers["x-goog-upload-header-content-length"] == str(len(data))
    assert start.headers["x-goog-upload-header-content-type"] == "application/pdf"
    assert start.body == {"file": {"display_name": "A17_FlightPlan"}}
    assert chunk.query["upload_protocol"] == "resumable" and chunk.query["upload_id"]
    assert chunk.headers["x-goog-upload-command"] == "upload, finalize"
    assert chunk.headers["x-goog-upload-offset"] == "0"
    assert file.name.startswith("files/") and file.uri == f"{BASE}/{file.name}"
    assert file.state == "ACTIVE" and file.mime_type == "application/pdf" and file.size_bytes == len(data)
    assert file.display_name == "A17_FlightPlan"
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert file.expiration_time is not None and file.create_time is not None
    assert (file.expiration_time - file.create_time).total_seconds() == 48 * 3600


def test_a_large_upload_is_sent_in_granularity_sized_chunks_with_offsets(emu: Emulator, files: GeminiFiles) -> None:
    data = bytes(range(256)) * 27  # 6912 bytes: chunks of 2048 (a multiple of the server's 1024) and a tail
    seen: list[tuple[int, int]] = []
    file = files.upload(
        data, mime_type="application/octet-stream", progress=lambda done, total: seen.append((done, total))
    )
    chunks = _uploads(emu)[1:]
    assert [c.headers["x-goog-upload-offset"] for c in chunks] == ["0", "2048", "4096", "6144"]
    assert [c.headers["x-goog-upload-command"] for c in chunks] == ["upload"] * 3 + ["upload, finalize"]
    assert seen == [(2048, 6912), (4096, 6912), (6144, 6912), (6912, 6912)]
    assert file.sha256 == hashlib.sha256(data).hexdigest() == emu.files.get(file.name).sha256  # type: ignore[union-attr]


def test_the_chunk_size_follows_the_granularity_the_server_reports(emu: Emulator, fake_time: FakeTime) -> None:
    emu.files.chunk_granularity = 1500
    files = _files(emu, fake_time, chunk_size=2000)  # rounded up to 3000, a multiple of 1500
    files.upload(b"x" * 7000, mime_type="text/plain")
    assert [c.headers["x-goog-upload-offset"] for c in _uploads(emu)[1:]] == ["0", "3000", "6000"]


def test_a_dropped_connection_mid_chunk_is_resumed_from_what_the_server_received(
    emu: Emulator, files: GeminiFiles, fake_time: FakeTime
) -> None:
    data = bytes(range(256)) * 24  # 6144 bytes, 3 chunks
    emu.files.drop_next_chunk(keep_bytes=1000)  # the first chunk arrives in part, then the connection drops
    file = files.upload(data, mime_type="application/octet-stream")
    commands = [(c.headers["x-goog-upload-command"], c.headers.get("x-goog-upload-offset")) for c in _uploads(emu)[1:]]
    assert commands == [
        ("upload", "0"),
        ("query", None),
        ("upload", "1000"),
        ("upload", "3048"),
        ("upload, finalize", "5096"),
    ]
    assert fake_time.sleeps and all(s > 0 for s in fake_time.sleeps)
    assert file.sha256 == hashlib.sha256(data).hexdigest() == emu.files.get(file.name).sha256  # type: ignore[union-attr]


def test_an_upload_that_keeps_dropping_gives_up_with_a_connection_error(emu: Emulator, fake_time: FakeTime) -> None:
    files = _files(emu, fake_time, resume_attempts=2)
    for _ in range(3):
        emu.files.drop_next_chunk()
    with pytest.raises(ProviderConnectionError, match=r"failed 3 times in a row at byte 0") as info:
        files.upload(b"y" * 3000, mime_type="text/plain")
    assert KEY not in str(info.value)


async def test_async_upload_resumes_too(emu: Emulator, files: GeminiFiles) -> None:
    data = b"z" * 5000
    emu.files.drop_next_chunk(keep_bytes=10)
    file = await files.aupload(io.BytesIO(data), mime_type="text/plain")
    assert file.sha256 == hashlib.sha256(data).hexdigest()
    assert [c.headers["x-goog-upload-command"] for c in _uploads(emu)[1:]][:2] == ["upload", "query"]


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_over_real_http_a_dropped_chunk_is_a_500_and_the_upload_resumes(emu: Emulator, fake_time: FakeTime) -> None:
    with emu.serve() as server:
        provider = GeminiProvider(api_key=SecretStr(KEY), base_url=server.gemini_base_url)
        files = GeminiFiles(provider, chunk_size=1024, sleep=fake_time.sleep)
        emu.files.drop_next_chunk(keep_bytes=0)
        file = files.upload(b"q" * 4000, mime_type="text/plain", display_name="notes")
    assert file.size_bytes == 4000 and file.uri.startswith(server.gemini_base_url)
    assert any(c.headers["x-goog-upload-command"] == "query" for c in _uploads(emu))


# -- sources and the checks before sending ------------------------------------------------------------


def test_sources_path_bytes_and_file_objects_upload_the_same_bytes(files: GeminiFiles, tmp_path: Path) -> None:
    data = samples.png(40, 30)
    path = tmp_path / "chart.png"
    path.write_bytes(data)
    by_path = files.upload(path)  # mime from the extension, display name from the file name
    by_str = files.upload(str(path), display_name="again")
    with path.open("rb") as f:
        by_obj = files.upload(f)
    by_bytes = files.upload(data)  # mime sniffed from the PNG signature
    assert {f.sha256 for f in (by_path, by_str, by_obj, by_bytes)} == {hashlib.sha256(data).hexdigest()}
    assert by_path.display_name == "chart.png" and by_str.display_name == "again" and by_bytes.display_name == ""
    assert {f.mime_type for f in (by_path, by_obj, by_bytes)} == {"image/png"}


def test_a_non_seekable_stream_is_uploaded_from_memory(files: GeminiFiles) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self._data.read(n)

    file = files.upload(Pipe(b"w" * 3000), mime_type="text/plain")
    assert file.size_bytes == 3000


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (lambda p: p / "missing.pdf", {}, r"file: cannot read '.*missing\.pdf': No such file"),
        (lambda p: p, {}, r"file: '.*' is a directory"),
        (lambda p: b"", {}, r"file: the data is empty"),
        (lambda p: b"\x00\x01 not a known format", {}, r"mime_type: cannot tell the media type of the data"),
        (lambda p: b"x", {"mime_type": "pdf"}, r"upload: mime_type 'pdf' is not a media type"),
        (lambda p: b"x", {"mime_type": "text/plain", "display_name": "n" * 513}, r"display_name: at most 512"),
        (lambda p: io.StringIO("text"), {}, r"file: the file object must be opened in binary mode"),
        (lambda p: 42, {}, r"file: expected a path \(str or Path\), bytes or a binary file object, got int"),
    ],
)
def test_bad_sources_fail_before_anything_is_sent(
    emu: Emulator, files: GeminiFiles, tmp_path: Path, make: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        files.upload(make(tmp_path), **kwargs)
    assert emu.requests == []


def test_a_file_over_two_gigabytes_fails_before_anything_is_sent(
    emu: Emulator, files: GeminiFiles, tmp_path: Path
) -> None:
    path = tmp_path / "huge.mp4"
    with path.open("wb") as f:
        f.truncate(2 * 1024**3 + 1)  # sparse: no disk used
    with pytest.raises(InvalidRequestError, match=r"2147483649 bytes, over the Files API limit of 2147483648"):
        files.upload(path)
    assert emu.requests == []
    with pytest.raises(InvalidRequestError, match=r"over the Files API limit of 10 bytes"):
        UploadSource.of(b"x" * 11, limit=10)


# -- processing states ------------------------------------------------------------------------------


def test_video_is_processing_until_polled_active_with_backoff(
    emu: Emulator, files: GeminiFiles, fake_time: FakeTime
) -> None:
    emu.files.processing_polls = 3
    uploaded = files.upload(samples.mp4(4.0), display_name="lecture")
    assert uploaded.state == "PROCESSING"
    active = files.wait_active(uploaded)
    assert active.state == "ACTIVE" and active.video_duration == 4.0
    assert fake_time.sleeps == [1.0, 2.0, 4.0]  # backoff doubles between polls


async def test_async_wait_active(emu: Emulator, files: GeminiFiles) -> None:
    uploaded = await files.aupload(samples.wav(1.0))
    assert uploaded.state == "PROCESSING" and uploaded.mime_type == "audio/wav"
    assert (await files.await_active(uploaded.name)).state == "ACTIVE"


def test_a_failed_file_raises_naming_the_file_and_its_display_name(emu: Emulator, files: GeminiFiles) -> None:
    emu.files.fail_next("Video codec not supported.")
    uploaded = files.upload(samples.mp4(1.0), display_name="bad-codec.mp4")
    with pytest.raises(FileProcessingFailedError) as info:
        files.wait_active(uploaded)
    error = info.value
    assert error.name == uploaded.name and error.display_name == "bad-codec.mp4"
    assert error.reason == "Video codec not supported."
    assert f"{uploaded.name} ('bad-codec.mp4') failed processing: Video codec not supported." in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), again.name, again.display_name, str(again)) == (
        type(error),
        error.name,
        error.display_name,
        str(error),
    )


def test_still_processing_at_the_deadline_raises_naming_the_file(
    emu: Emulator, files: GeminiFiles, fake_time: FakeTime
) -> None:
    emu.files.processing_polls = 1000
    emu.files.processing_seconds = 10**6
    uploaded = files.upload(samples.wav(1.0), display_name="interview.wav")
    with pytest.raises(
        FileProcessingTimeoutError, match=r"files/\w+ \('interview\.wav'\) is still PROCESSING after 30 s"
    ) as info:
        files.wait_active(uploaded, timeout=30)
    assert info.value.state == "PROCESSING" and info.value.name == uploaded.name and fake_time.now == 30


def test_a_processing_file_is_refused_by_generate_with_gemini_s_error(emu: Emulator, files: GeminiFiles) -> None:
    uploaded = files.upload(samples.wav(1.0))
    request = ChatRequest(
        "gemini-2.5-flash", (Message("user", (MediaPart("audio", mime_type="audio/wav", file_uri=uploaded.uri),)),)
    )
    with pytest.raises(FileNotActiveError) as info:
        assert isinstance(files.provider, GeminiProvider)
        files.provider.chat(request)
    assert info.value.file_name == uploaded.name and info.value.code == "FAILED_PRECONDITION"
    assert str(info.value).endswith(f"The File {uploaded.id} is not in an ACTIVE state and usage is not allowed.")


# -- get, list, delete, expiry ----------------------------------------------------------------------


def test_get_list_in_pages_and_delete(emu: Emulator, files: GeminiFiles) -> None:
    made = [files.upload(f"doc {i}".encode(), mime_type="text/plain", display_name=f"d{i}") for i in range(3)]
    assert files.get(made[1].name) == made[1]
    assert files.get(made[1].id).name == made[1].name and files.get(made[1].uri).name == made[1].name
    assert [f.name for f in files.list(page_size=1)] == [f.name for f in made]
    assert len([r for r in emu.requests if r.path == "/v1beta/files"]) == 3  # one request per page
    files.delete(made[0])
    assert [f.name for f in files.list()] == [f.name for f in made[1:]]
    with pytest.raises(UploadedFileNotFoundError) as info:
        files.get(made[0].name)
    assert info.value.file_name == made[0].name and info.value.status_code == 403
    assert info.value.message == f"You do not have permission to access the File {made[0].id} or it may not exist."
    with pytest.raises(InvalidRequestError, match=r"page_size: expected an int from 1 to 100"):
        files.list(page_size=101)


async def test_async_get_list_delete(files: GeminiFiles) -> None:
    made = await files.aupload(b"hello", mime_type="text/plain")
    assert (await files.aget(made)).name == made.name
    assert [f.name async for f in files.alist()] == [made.name]
    await files.adelete(made.name)
    assert [f async for f in files.alist()] == []


def test_files_expire_after_48_hours_on_the_emulator_clock(emu: Emulator, files: GeminiFiles, clock: FakeClock) -> None:
    made = files.upload(samples.pdf(1), mime_type="application/pdf")
    clock.advance(47 * 3600)
    assert files.get(made).state == "ACTIVE"
    clock.advance(2 * 3600)
    with pytest.raises(UploadedFileNotFoundError):
        files.get(made)
    assert emu.counters.files_expired == 1 and emu.counters.files_alive == 0


# -- where the key goes -----------------------------------------------------------------------------


def _upload_server(session_url: str) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("x-goog-upload-command") == "start":
            return httpx.Response(200, headers={"x-goog-upload-url": session_url, "x-goog-upload-status": "active"})
        file = {
            "name": "files/abc",
            "uri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
            "mimeType": "text/plain",
            "sizeBytes": "2",
            "state": "ACTIVE",
        }
        return httpx.Response(200, headers={"x-goog-upload-status": "final"}, json={"file": file})

    return httpx.MockTransport(handler), seen


def test_the_key_is_not_sent_to_an_upload_url_on_another_host() -> None:
    transport, seen = _upload_server("https://uploads.elsewhere.example/upload?upload_id=1")
    provider = GeminiProvider(api_key=SecretStr(KEY), http_client=httpx.Client(transport=transport))
    provider.files.upload(b"hi", mime_type="text/plain")
    start, chunk = seen
    assert start.url.host == "generativelanguage.googleapis.com" and start.headers["x-goog-api-key"] == KEY
    assert start.url.path == "/upload/v1beta/files" and "key" not in start.url.params
    assert chunk.url.host == "uploads.elsewhere.example" and "x-goog-api-key" not in chunk.headers


def test_an_upload_url_that_downgrades_to_http_is_refused() -> None:
    transport, seen = _upload_server("http://generativelanguage.googleapis.com/upload?upload_id=1")
    provider = GeminiProvider(api_key=SecretStr(KEY), http_client=httpx.Client(transport=transport))
    with pytest.raises(Exception, match="downgrades https to http"):
        provider.files.upload(b"hi", mime_type="text/plain")
    assert len(seen) == 1


# -- parsing ----------------------------------------------------------------------------------------


def test_sha256_hash_is_base64_of_the_hex_digest() -> None:
    digest = hashlib.sha256(b"apollo").hexdigest()
    as_google = base64.b64encode(digest.encode()).decode()
    assert parse_file({"name": "files/a", "sha256Hash": as_google}).sha256 == digest
    raw = base64.b64encode(hashlib.sha256(b"apollo").digest()).decode()
    assert parse_file({"name": "files/a", "sha256Hash": raw}).sha256 == digest


def test_a_file_resource_as_google_prints_it() -> None:
    data = json.loads(
        """{"name": "files/xyz-123", "displayName": "clip", "mimeType": "video/mp4", "sizeBytes": "1048576",
        "createTime": "2026-01-12T10:00:00.123456789Z", "updateTime": "2026-01-12T10:00:05Z",
        "expirationTime": "2026-01-14T10:00:00.123456789Z", "uri": "https://generativelanguage.googleapis.com/v1beta/files/xyz-123",
        "state": "ACTIVE", "source": "UPLOADED", "videoMetadata": {"videoDuration": "12.500s"}}"""
    )
    file = parse_file(data)
    assert (file.id, file.size_bytes, file.video_duration, file.source) == ("xyz-123", 1048576, 12.5, "UPLOADED")
    assert file.expiration_time is not None and file.expiration_time.microsecond == 123456


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("files/abc-1", "files/abc-1"),
        ("abc-1", "files/abc-1"),
        ("https://generativelanguage.googleapis.com/v1beta/files/abc-1", "files/abc-1"),
    ],
)
def test_file_names(value: str, expected: str) -> None:
    assert file_name(value) == expected


@pytest.mark.parametrize("value", ["files/ABC", "files/-a", "files/a/../b", "", "x" * 41])
def test_bad_file_names(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="expected 'files/<id>'"):
        file_name(value)


def test_upload_endpoint_sits_beside_the_api_version() -> None:
    assert upload_endpoint("https://generativelanguage.googleapis.com/v1beta") == (
        "https://generativelanguage.googleapis.com/upload/v1beta/files"
    )
    assert upload_endpoint("http://127.0.0.1:8080/proxy/v1beta/") == "http://127.0.0.1:8080/proxy/upload/v1beta/files"


def test_file_errors_survive_pickling() -> None:
    error = UploadedFileNotFoundError("gone", file_name="files/a", status_code=403, provider="google")
    again = pickle.loads(pickle.dumps(error))
    assert (again.file_name, again.status_code) == ("files/a", 403)
    timeout = FileProcessingTimeoutError("slow", name="files/b", display_name="v", state="PROCESSING", waited=3.0)
    again_t = pickle.loads(pickle.dumps(timeout))
    assert (again_t.name, again_t.display_name, again_t.state, again_t.waited) == ("files/b", "v", "PROCESSING", 3.0)


def test_async_upload_runs_on_several_event_loops(emu: Emulator, fake_time: FakeTime) -> None:
    files = _files(emu, fake_time)
    names = {asyncio.run(files.aupload(f"loop {i}".encode(), mime_type="text/plain")).name for i in range(3)}
    assert len(names) == 3


def test_a_large_upload_shows_a_progress_bar_on_a_terminal_only(
    emu: Emulator, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cache_integrations import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    files = _files(emu, fake_time, chunk_size=512 * 1024)
    emu.files.chunk_granularity = 512 * 1024
    data = b"%PDF-1.4\n" + bytes(range(256)) * 6000  # about 1.5 MB
    reported: list[tuple[int, int]] = []
    quiet = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", quiet)
    files.upload(
        data, mime_type="application/pdf", display_name="quiet.pdf", progress=lambda d, t: reported.append((d, t))
    )
    assert quiet.getvalue() == "" and reported[-1] == (len(data), len(data))  # the caller's callback still runs
    tty = Terminal()
    monkeypatch.setattr(progress.sys, "stderr", tty)
    files.upload(data, mime_type="application/pdf", display_name="flight-plan.pdf")
    assert "Uploading flight-plan.pdf" in tty.getvalue()
