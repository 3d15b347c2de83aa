"""Files as managed resources through ChatGemini: upload_file, dedup, expiry, vanished files, ownership.

The emulator serves the Files API in-process on a fake clock; its counters and request log are the
server's side of every assertion (uploads started, generate requests and the fileUri they carried).
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage

from cache_integrations import FileProcessingFailedError, InvalidRequestError, UploadedFileNotFoundError
from cache_integrations.explicit.files import UploadedFile
from cache_integrations.langchain import ChatGemini
from cache_integrations.testing import Emulator, FakeClock
from tests.media import samples

PDF = samples.pdf(8)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Emulator:
    emu = Emulator(clock=clock)
    emu.files.chunk_granularity = 1024
    return emu


def _no_sleep(_: float) -> None:
    return None


async def _ano_sleep(_: float) -> None:
    return None


def gemini(emu: Emulator, clock: FakeClock, **kwargs: Any) -> ChatGemini:
    transport = emu.transport()
    kwargs.setdefault("cache_registry", "memory")
    llm = ChatGemini(
        api_key=kwargs.pop("api_key", "gemini-test-key"),
        base_url="http://emulator/v1beta",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )
    llm.cache_manager.clock = clock.time
    llm.files.sleep, llm.files.asleep = _no_sleep, _ano_sleep
    llm.files.chunk_size = 2048
    return llm


def uploads(emu: Emulator) -> int:
    """Upload sessions the server saw started."""
    return sum(1 for r in emu.requests if r.path == "/upload/v1beta/files" and "upload_id" not in r.query)


def sent_uris(emu: Emulator) -> list[str]:
    out = []
    for r in emu.requests:
        if r.path.endswith((":generateContent", ":streamGenerateContent")) and r.status == 200:
            out += [p["fileData"]["fileUri"] for c in r.body["contents"] for p in c["parts"] if "fileData" in p]
    return out


def ask_about(block: dict[str, Any], question: str = "What is this?") -> list[HumanMessage]:
    return [HumanMessage(content=[{"type": "text", "text": question}, block])]


def pdf_block(data: bytes = PDF) -> dict[str, Any]:
    return {"type": "file", "base64": base64.b64encode(data).decode(), "mime_type": "application/pdf"}


# -- upload_file ---------------------------------------------------------------------------------------


def test_upload_file_takes_paths_bytes_and_file_objects_and_uploads_a_content_once(
    emu: Emulator, clock: FakeClock, tmp_path: Path
) -> None:
    llm = gemini(emu, clock)
    path = tmp_path / "a17_flight_plan.pdf"
    path.write_bytes(PDF)
    handle = llm.upload_file(path)
    stored = emu.files.get(handle.name)
    assert stored is not None
    assert isinstance(handle, UploadedFile) and re.fullmatch(r"files/[a-z0-9]+", handle.name)
    assert (handle.uri, handle.mime_type, handle.size, handle.state) == (
        stored.uri,
        "application/pdf",
        len(PDF),
        "ACTIVE",
    )
    assert handle.display_name == "a17_flight_plan.pdf" and handle.sha256 == stored.sha256
    assert handle.expire_time is not None and handle.expire_time.timestamp() == stored.expire_ns / 1e9
    assert handle.expire_time.timestamp() - clock.time() == 48 * 3600
    # the same bytes again, as a str path, as bytes and as a file object: no new upload
    again = [
        llm.upload_file(str(path)),
        llm.upload_file(PDF, "application/pdf"),
        llm.upload_file(io.BytesIO(PDF), "application/pdf"),
    ]
    assert {h.name for h in again} == {handle.name} and uploads(emu) == 1
    # other bytes are another file; a media type given explicitly wins over the extension
    text = llm.upload_file(b"Launch at 21:33 EST.", mime_type="text/plain", display_name="note")
    assert (text.mime_type, text.display_name) == ("text/plain", "note") and uploads(emu) == 2


def test_upload_file_reports_progress_and_waits_for_a_video_to_be_active(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    seen: list[tuple[int, int]] = []
    video = samples.mp4(30.0, padding=10_000)
    handle = llm.upload_file(video, "video/mp4", "launch", progress=lambda done, total: seen.append((done, total)))
    assert handle.state == "ACTIVE" and emu.files.get(handle.name).state == "ACTIVE"  # type: ignore[union-attr]
    polls = [r for r in emu.requests if r.method == "GET" and r.path == f"/v1beta/{handle.name}"]
    assert len(polls) == emu.files.processing_polls, "it polled until the server said ACTIVE"
    assert len(seen) > 2 and seen[-1] == (len(video), len(video)) and all(t == len(video) for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_failed_file_names_the_file_and_its_display_name_and_is_not_kept(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    emu.files.fail_next("Video codec not supported.")
    with pytest.raises(
        FileProcessingFailedError, match=r"files/[a-z0-9]+ .*'cache-integrations:[0-9a-f]{40} launch'"
    ) as info:
        llm.upload_file(samples.mp4(5.0), "video/mp4", "launch")
    assert info.value.name.startswith("files/") and "Video codec not supported." in str(info.value)
    assert llm.upload_file(samples.mp4(5.0), "video/mp4", "launch").state == "ACTIVE"
    assert uploads(emu) == 2, "a failed upload is not remembered: the next one uploads again"


def test_bad_sources_fail_before_anything_is_sent(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    llm = gemini(emu, clock)
    with pytest.raises(InvalidRequestError, match=r"cannot read '.*nothing\.pdf'"):
        llm.upload_file(tmp_path / "nothing.pdf")
    with pytest.raises(InvalidRequestError, match=r"mime_type: cannot tell the media type of the data"):
        llm.upload_file(b"\x00\x01\x02\x03")
    with pytest.raises(InvalidRequestError, match=r"empty"):
        llm.upload_file(b"")
    assert emu.requests == []


def test_list_and_delete_files_touch_only_this_librarys_files(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    foreign = llm.files.upload(b"someone else's notes", mime_type="text/plain", display_name="notes.txt")
    unnamed = llm.files.upload(b"no display name", mime_type="text/plain")
    ours = [llm.upload_file(PDF, "application/pdf"), llm.upload_file(samples.png(), "image/png", "photo")]
    listed = llm.list_files()
    assert sorted(f.name for f in listed) == sorted(h.name for h in ours)
    assert llm.delete_files() == 2
    assert sorted(emu.files.names()) == sorted([foreign.name, unnamed.name])


# -- managed files in requests -------------------------------------------------------------------------


def test_a_pdf_used_in_5_calls_is_uploaded_once(emu: Emulator, clock: FakeClock, tmp_path: Path) -> None:
    registry = f"sqlite:///{tmp_path / 'registry.sqlite3'}"
    llm = gemini(emu, clock, file_upload_threshold=1000, cache_registry=registry)
    for i in range(3):
        llm.invoke(ask_about(pdf_block(), f"Question {i}"))
    asyncio.run(llm.ainvoke(ask_about(pdf_block(), "Question 3")))
    # a second model (another process would do the same) sharing the registry
    other = gemini(emu, clock, file_upload_threshold=1000, cache_registry=registry)
    list(other.stream(ask_about(pdf_block(), "Question 4")))
    assert uploads(emu) == 1
    uris = sent_uris(emu)
    assert len(uris) == 5 and len(set(uris)) == 1


def test_an_uploaded_file_is_sent_by_its_handle_uri(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    handle = llm.upload_file(PDF, "application/pdf")
    llm.invoke(ask_about({"type": "file", "file_id": handle.uri, "mime_type": "application/pdf"}))
    llm.invoke(ask_about({"type": "file", "url": handle.name, "mime_type": "application/pdf"}))
    assert sent_uris(emu) == [handle.uri, handle.uri] and uploads(emu) == 1


def test_a_file_in_requests_is_uploaded_again_after_it_expired(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=1000)
    handle = llm.upload_file(PDF, "application/pdf")
    llm.invoke(ask_about({"type": "file", "file_id": handle.uri, "mime_type": "application/pdf"}))
    clock.advance(47.5 * 3600)  # within the hour before expiry: not worth sending any more
    llm.invoke(ask_about({"type": "file", "file_id": handle.uri, "mime_type": "application/pdf"}))
    llm.invoke(ask_about(pdf_block()))
    first, second, third = sent_uris(emu)
    assert first != second == third and uploads(emu) == 2
    assert handle.uri == second, "the handle follows the content's new upload"
    assert handle.expire_time is not None and handle.expire_time.timestamp() - clock.time() == 48 * 3600


def test_a_file_deleted_on_the_server_is_uploaded_again_and_the_call_retried(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=1000)
    llm.invoke(ask_about(pdf_block()))
    (name,) = emu.files.names()
    emu.files.delete(name)  # expired early, deleted by another tool...
    reply = llm.invoke(ask_about(pdf_block(), "Again?"))
    assert reply.content
    statuses = [r.status for r in emu.requests if r.path.endswith(":generateContent")]
    assert statuses == [200, 403, 200], "one failed attempt, then the retry with the new upload"
    assert uploads(emu) == 2 and emu.files.get(sent_uris(emu)[-1]) is not None

    async def stream_after_another_deletion() -> str:
        emu.files.delete(emu.files.names()[0])
        return "".join([str(c.content) async for c in llm.astream(ask_about(pdf_block(), "Once more?"))])

    assert asyncio.run(stream_after_another_deletion())
    assert uploads(emu) == 3


def test_a_deleted_handle_is_not_uploaded_again_behind_the_callers_back(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    handle = llm.upload_file(PDF, "application/pdf")
    handle.delete()
    assert emu.files.names() == []
    with pytest.raises(UploadedFileNotFoundError) as info:
        llm.invoke(ask_about({"type": "file", "file_id": handle.uri, "mime_type": "application/pdf"}))
    assert info.value.file_name == handle.name and uploads(emu) == 1
    # uploading it explicitly again brings it back, and the handle follows the new file
    old_name = handle.name
    again = llm.upload_file(PDF, "application/pdf")
    assert again is handle and handle.name != old_name and emu.files.names() == [handle.name] and uploads(emu) == 2


async def test_async_uploads_are_deduplicated_too(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=1000)
    handles = await asyncio.gather(*(llm.aupload_file(PDF, "application/pdf") for _ in range(5)))
    assert len({h.name for h in handles}) == 1 and uploads(emu) == 1
    replies = await asyncio.gather(*(llm.ainvoke(ask_about(pdf_block(), f"Q{i}")) for i in range(4)))
    assert all(r.content for r in replies) and uploads(emu) == 1
