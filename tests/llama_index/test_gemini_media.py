"""LlamaIndex media blocks through `Gemini` and `GLM` against the emulator: ImageBlock, DocumentBlock,
AudioBlock and VideoBlock from bytes, paths and URLs (mime types kept), inline and via the Files API."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    AudioBlock,
    ChatMessage,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    VideoBlock,
)

from cache_integrations import InvalidRequestError
from cache_integrations.explicit.files import ManagedFiles
from cache_integrations.llama_index import Gemini
from cache_integrations.testing import Emulator, FakeClock
from tests.llama_index.conftest import make_gemini, make_glm
from tests.media import samples

PNG = samples.png(64, 48)
PDF = samples.pdf(3)
WAV = samples.wav(1.5)
MP4 = samples.mp4(2.0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _no_sleep(_: float) -> None:
    return None


async def _ano_sleep(_: float) -> None:
    return None


def gemini(emu: Emulator, clock: FakeClock, **kwargs: Any) -> Gemini:
    emu.files.chunk_granularity = 1024
    llm = make_gemini(emu, clock, **kwargs)
    llm.files.sleep, llm.files.asleep = _no_sleep, _ano_sleep
    llm.files.chunk_size = 2048
    assert isinstance(llm.media.uploader, ManagedFiles)  # reads the manager's clock
    return llm


def ask(block: Any) -> list[ChatMessage]:
    return [ChatMessage(role="user", blocks=[TextBlock(text="Describe this."), block])]


def sent_media(emu: Emulator) -> dict[str, Any]:
    body = [r for r in emu.requests if ":generateContent" in r.path or ":streamGenerateContent" in r.path][-1].body
    media = [p for p in body["contents"][-1]["parts"] if "text" not in p]
    assert len(media) == 1
    return dict(media[0])


def uploads(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.path == "/upload/v1beta/files" and "upload_id" not in r.query)


@pytest.fixture
def media_dir(tmp_path: Path) -> Path:
    for name, data in (("chart.png", PNG), ("plan.pdf", PDF), ("talk.wav", WAV), ("clip.mp4", MP4)):
        (tmp_path / name).write_bytes(data)
    return tmp_path


@pytest.mark.parametrize(
    ("make", "mime", "data"),
    [
        (lambda d: ImageBlock(image=PNG), "image/png", PNG),
        (lambda d: ImageBlock(image=PNG, image_mimetype="image/png"), "image/png", PNG),
        (lambda d: ImageBlock(path=d / "chart.png"), "image/png", PNG),
        (lambda d: ImageBlock(url=f"data:image/png;base64,{b64(PNG)}"), "image/png", PNG),
        (lambda d: DocumentBlock(data=PDF), "application/pdf", PDF),
        (lambda d: DocumentBlock(path=d / "plan.pdf"), "application/pdf", PDF),
        (
            lambda d: DocumentBlock(path=str(d / "plan.pdf"), document_mimetype="application/pdf"),
            "application/pdf",
            PDF,
        ),
        (
            lambda d: DocumentBlock(data=b"Flight plan, day 1.", document_mimetype="text/plain"),
            "text/plain",
            b"Flight plan, day 1.",
        ),
        (lambda d: AudioBlock(audio=WAV, format="wav"), "audio/wav", WAV),
        (lambda d: AudioBlock(path=d / "talk.wav"), "audio/wav", WAV),
        (lambda d: VideoBlock(video=MP4, video_mimetype="video/mp4"), "video/mp4", MP4),
        (lambda d: VideoBlock(path=d / "clip.mp4"), "video/mp4", MP4),
    ],
)
def test_blocks_become_inline_data_with_their_mime_types(
    emu: Emulator, clock: FakeClock, media_dir: Path, make: Any, mime: str, data: bytes
) -> None:
    gemini(emu, clock).chat(ask(make(media_dir)))
    assert sent_media(emu) == {"inlineData": {"mimeType": mime, "data": b64(data)}}


def test_an_image_s_declared_mime_type_is_kept(emu: Emulator, clock: FakeClock) -> None:
    gemini(emu, clock).chat(ask(ImageBlock(image=PNG, image_mimetype="image/webp")))  # trusted as given
    assert sent_media(emu)["inlineData"]["mimeType"] == "image/webp"


def test_url_blocks_are_file_data(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    llm.chat(ask(ImageBlock(url="https://example.com/photos/cat.jpg")))
    assert sent_media(emu) == {"fileData": {"fileUri": "https://example.com/photos/cat.jpg", "mimeType": "image/jpeg"}}
    file = llm.files.upload(PDF, mime_type="application/pdf")
    llm.chat(ask(DocumentBlock(url=file.uri)))  # a Files API URI: the media type is looked up
    assert sent_media(emu) == {"fileData": {"fileUri": file.uri, "mimeType": "application/pdf"}}


def test_paths_above_the_threshold_are_uploaded_once_from_disk(
    emu: Emulator, clock: FakeClock, media_dir: Path
) -> None:
    llm = gemini(emu, clock, file_upload_threshold=100)
    doc = DocumentBlock(path=media_dir / "plan.pdf", title="A17 flight plan")
    llm.chat(ask(doc))
    (name,) = emu.files.names()
    stored = emu.files.get(name)
    assert (
        stored is not None
        and re.fullmatch(r"cache-integrations:[0-9a-f]{40} A17 flight plan", stored.display_name)
        and stored.size == len(PDF)
    )
    assert sent_media(emu) == {"fileData": {"fileUri": stored.uri, "mimeType": "application/pdf"}}
    list(llm.stream_chat(ask(doc)))
    assert uploads(emu) == 1


async def test_async_chat_uploads_video_and_waits_until_active(
    emu: Emulator, clock: FakeClock, media_dir: Path
) -> None:
    llm = gemini(emu, clock, file_upload_threshold=100)
    await llm.achat(ask(VideoBlock(path=media_dir / "clip.mp4")))
    (name,) = emu.files.names()
    stored = emu.files.get(name)
    assert stored is not None and stored.state == "ACTIVE"
    assert sent_media(emu) == {"fileData": {"fileUri": stored.uri, "mimeType": "video/mp4"}}
    gen = await llm.astream_chat(ask(VideoBlock(path=media_dir / "clip.mp4")))
    assert [r async for r in gen] and uploads(emu) == 1


def test_a_document_chat_over_a_cached_pdf(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=100)
    pinned = llm.cache_context(
        [ChatMessage(role="user", blocks=[DocumentBlock(data=samples.pdf(8), title="A17")])],
        system="You are an expert at analyzing transcripts.",
    )
    replies = [pinned.chat(q) for q in ("Summarize.", "When is launch?")]
    assert uploads(emu) == 1 and emu.counters.caches_created == 1 and pinned.tokens >= 8 * 258
    for reply in replies:
        assert reply.raw is not None and reply.raw["usage"]["prompt_tokens_details"]["cached_tokens"] == pinned.tokens


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        (
            ask(DocumentBlock(path="/no/such/report.pdf")),
            r"messages\[0\]\.content\[1\]: cannot read '/no/such/report\.pdf'",
        ),
        (
            ask(DocumentBlock(data=b"\x00\x01\x02\x03")),
            r"messages\[0\]\.content\[1\]: cannot tell the media type of the document",
        ),
    ],
)
def test_bad_blocks_fail_before_sending(
    emu: Emulator, clock: FakeClock, messages: list[ChatMessage], match: str
) -> None:
    llm = gemini(emu, clock)
    with pytest.raises(InvalidRequestError, match=match):
        llm.chat(messages)
    with pytest.raises(InvalidRequestError, match=match):
        llm.stream_chat(messages)
    assert emu.requests == []


def test_glm_takes_image_blocks_and_video_urls(emu: Emulator) -> None:
    make_glm(emu, model="glm-4.6v").chat(ask(ImageBlock(image=PNG)))
    assert emu.requests[-1].body["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"},
    }
    make_glm(emu, model="glm-4.5v").chat(ask(VideoBlock(url="https://cdn.example/clip.mp4")))
    assert emu.requests[-1].body["messages"][0]["content"][1] == {
        "type": "video_url",
        "video_url": {"url": "https://cdn.example/clip.mp4"},
    }
    with pytest.raises(InvalidRequestError, match=r"GLM \(glm-4\.6v\) does not accept document parts"):
        make_glm(emu, model="glm-4.6v").chat(ask(DocumentBlock(data=PDF)))
