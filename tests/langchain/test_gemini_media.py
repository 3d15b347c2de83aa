"""LangChain media blocks through ChatGemini and ChatGLM against the emulator: every block shape inline and
through the Files API, uploads above `file_upload_threshold`, a cached PDF, and errors before sending."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from cache_integrations import InvalidRequestError
from cache_integrations.explicit.files import ManagedFiles
from cache_integrations.langchain import ChatGemini, ChatGLM
from cache_integrations.providers import gemini_media
from cache_integrations.providers.gemini import GeminiProvider
from cache_integrations.testing import Emulator, FakeClock
from cache_integrations.testing._media import image_tokens
from tests.media import samples

PNG = samples.png(64, 48)
PDF = samples.pdf(3)
WAV = samples.wav(2.0)
MP4 = samples.mp4(2.0)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


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
    llm = ChatGemini(
        api_key="gemini-test-key",
        base_url="http://emulator/v1beta",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        cache_registry="memory",
        **kwargs,
    )
    llm.cache_manager.clock = clock.time
    llm.files.sleep, llm.files.asleep = _no_sleep, _ano_sleep
    assert isinstance(llm.media.uploader, ManagedFiles)  # reads the manager's clock
    llm.files.chunk_size = 2048
    return llm


def glm(emu: Emulator, model: str) -> ChatGLM:
    transport = emu.transport()
    return ChatGLM(
        api_key="glm-key",
        model=model,
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=transport),
    )


def last_generate(emu: Emulator) -> dict[str, Any]:
    found = [
        r for r in emu.requests if r.path.endswith(":generateContent") or r.path.endswith(":streamGenerateContent")
    ]
    body: dict[str, Any] = found[-1].body
    return body


def sent_media(emu: Emulator) -> dict[str, Any]:
    parts = last_generate(emu)["contents"][-1]["parts"]
    media = [p for p in parts if "text" not in p]
    assert len(media) == 1, parts
    return dict(media[0])


def ask(block: dict[str, Any]) -> HumanMessage:
    return HumanMessage(content=[{"type": "text", "text": "Describe this."}, block])


def uploads(emu: Emulator) -> int:
    return sum(1 for r in emu.requests if r.path == "/upload/v1beta/files" and "upload_id" not in r.query)


# -- every block, inline ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "mime", "data"),
    [
        ({"type": "image", "base64": b64(PNG), "mime_type": "image/png"}, "image/png", PNG),
        ({"type": "image", "url": f"data:image/png;base64,{b64(PNG)}"}, "image/png", PNG),
        ({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}}, "image/png", PNG),
        ({"type": "image_url", "image_url": f"data:image/png;base64,{b64(PNG)}"}, "image/png", PNG),
        ({"type": "image", "source_type": "base64", "data": b64(PNG), "mime_type": "image/png"}, "image/png", PNG),
        ({"type": "file", "base64": b64(PDF), "mime_type": "application/pdf"}, "application/pdf", PDF),
        (
            {"type": "file", "source_type": "base64", "data": b64(PDF), "mime_type": "application/pdf"},
            "application/pdf",
            PDF,
        ),
        (
            {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{b64(PDF)}", "filename": "a.pdf"}},
            "application/pdf",
            PDF,
        ),
        (
            {"type": "image_url", "image_url": {"url": f"data:application/pdf;base64,{b64(PDF)}"}},
            "application/pdf",
            PDF,
        ),
        ({"type": "media", "mime_type": "application/pdf", "data": PDF}, "application/pdf", PDF),
        ({"type": "audio", "base64": b64(WAV), "mime_type": "audio/wav"}, "audio/wav", WAV),
        ({"type": "input_audio", "input_audio": {"data": b64(WAV), "format": "wav"}}, "audio/wav", WAV),
        ({"type": "video", "base64": b64(MP4), "mime_type": "video/mp4"}, "video/mp4", MP4),
        (
            {"type": "text-plain", "text": "Flight plan, day 1.", "mime_type": "text/plain"},
            "text/plain",
            b"Flight plan, day 1.",
        ),
    ],
)
def test_inline_blocks_become_inline_data(
    emu: Emulator, clock: FakeClock, block: dict[str, Any], mime: str, data: bytes
) -> None:
    reply = gemini(emu, clock).invoke([ask(block)])
    assert sent_media(emu) == {"inlineData": {"mimeType": mime, "data": b64(data)}}
    assert uploads(emu) == 0
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] > 3


def test_the_media_s_tokens_are_in_the_usage(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    plain = llm.invoke([HumanMessage("Describe this.")]).usage_metadata
    with_image = llm.invoke(
        [ask({"type": "image", "base64": b64(samples.png(1000, 800)), "mime_type": "image/png"})]
    ).usage_metadata
    assert plain is not None and with_image is not None
    assert with_image["input_tokens"] - plain["input_tokens"] == image_tokens(1000, 800)


def test_an_https_url_is_file_data_that_gemini_fetches(emu: Emulator, clock: FakeClock) -> None:
    gemini(emu, clock).invoke([ask({"type": "file", "url": "https://www.nasa.gov/A17_FlightPlan.pdf"})])
    assert sent_media(emu) == {
        "fileData": {"fileUri": "https://www.nasa.gov/A17_FlightPlan.pdf", "mimeType": "application/pdf"}
    }


# -- through the Files API ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda f: {"type": "file", "file_id": f.name},  # no mime_type: looked up with files.get
        lambda f: {"type": "file", "file_id": f.id},
        lambda f: {"type": "file", "url": f.uri, "mime_type": "application/pdf"},
        lambda f: {"type": "file", "url": f.uri},
        lambda f: {"type": "file", "source_type": "id", "id": f.name},
        lambda f: {"type": "media", "file_uri": f.uri, "mime_type": "application/pdf"},
    ],
)
def test_files_api_references_become_file_data(emu: Emulator, clock: FakeClock, make: Any) -> None:
    llm = gemini(emu, clock)
    file = llm.files.upload(PDF, mime_type="application/pdf", display_name="A17")
    llm.invoke([ask(make(file))])
    assert sent_media(emu) == {"fileData": {"fileUri": file.uri, "mimeType": "application/pdf"}}


def test_a_video_reference_waits_until_the_file_is_active(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    video = llm.files.upload(MP4)
    assert video.state == "PROCESSING"
    llm.invoke([ask({"type": "video", "file_id": video.name})])
    assert sent_media(emu) == {"fileData": {"fileUri": video.uri, "mimeType": "video/mp4"}}


def test_content_above_the_threshold_is_uploaded_once_and_sent_as_file_data(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=100)
    block = {"type": "file", "base64": b64(PDF), "mime_type": "application/pdf", "filename": "A17_FlightPlan.pdf"}
    llm.invoke([ask(block)])
    (name,) = emu.files.names()
    stored = emu.files.get(name)
    assert (
        stored is not None
        and re.fullmatch(r"cache-integrations:[0-9a-f]{40} A17_FlightPlan\.pdf", stored.display_name)
        and stored.size == len(PDF)
    )
    assert sent_media(emu) == {"fileData": {"fileUri": stored.uri, "mimeType": "application/pdf"}}
    list(llm.stream([ask(block)]))
    llm.invoke([ask(block)])
    assert uploads(emu) == 1 and sent_media(emu)["fileData"]["fileUri"] == stored.uri
    small = {"type": "image", "base64": b64(samples.png(8, 8)), "mime_type": "image/png"}
    llm.invoke([ask(small)])
    assert "inlineData" in sent_media(emu) and uploads(emu) == 1


async def test_async_calls_upload_above_the_threshold_too(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=100)
    block = {"type": "video", "base64": b64(MP4), "mime_type": "video/mp4"}
    await llm.ainvoke([ask(block)])
    chunks = [c async for c in llm.astream([ask(block)])]
    assert chunks and uploads(emu) == 1
    assert sent_media(emu)["fileData"]["mimeType"] == "video/mp4"


def test_a_cached_pdf_is_uploaded_once_and_its_tokens_come_from_the_server(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock, file_upload_threshold=100)
    pdf = samples.pdf(8)
    doc = llm.cache_context(
        [HumanMessage(content=[{"type": "file", "base64": b64(pdf), "mime_type": "application/pdf"}])],
        system="You are an expert at analyzing transcripts.",
    )
    create = next(r for r in emu.requests if r.path == "/v1beta/cachedContents" and r.method == "POST")
    assert "fileData" in create.body["contents"][0]["parts"][0]
    provider = llm.cache_manager.client
    assert isinstance(provider, GeminiProvider)
    assert doc.tokens == provider.get_cached_content(doc.name).total_token_count >= 8 * 258
    answers = [doc.invoke(q) for q in ("Summarize.", "When is launch?", "Who flies?")]
    assert uploads(emu) == 1 and emu.counters.caches_created == 1
    for answer in answers:
        assert answer.usage_metadata is not None
        assert answer.usage_metadata["input_token_details"]["cache_read"] == doc.tokens


# -- errors before anything is sent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "model", "match"),
    [
        (
            [ask({"type": "file", "url": "https://x.test/download?id=3"})],
            "gemini-2.5-flash",
            r"messages\[0\]\.content\[1\]: cannot tell the media type of the document",
        ),
        (
            [ask({"type": "image", "base64": "not base64!", "mime_type": "image/png"})],
            "gemini-2.5-flash",
            r"messages\[0\]\.content\[1\]: the base64 data does not decode",
        ),
        (
            [ask({"type": "image", "base64": b64(WAV), "mime_type": "audio/wav"})],
            "gemini-2.5-flash",
            r"content\[1\]: a image part cannot hold media of type 'audio/wav'",
        ),
        (
            [ask({"type": "file", "mime_type": "application/pdf"})],
            "gemini-2.5-flash",
            r"content\[1\]: a document block needs exactly one of url, base64 data, file_id or path; got none",
        ),
        (
            [ask({"type": "image", "url": "https://x.test/a.png"})],
            "gemini-2.0-flash",
            r"content\[1\]: gemini-2\.0-flash does not fetch external URLs",
        ),
        (
            [ask({"type": "image", "url": "ftp://x.test/a.png"})],
            "gemini-2.5-flash",
            r"content\[1\]: image URL scheme 'ftp' is not supported",
        ),
        (
            [
                SystemMessage(content=[{"type": "file", "base64": b64(PDF), "mime_type": "application/pdf"}]),
                HumanMessage("hi"),
            ],
            "gemini-2.5-flash",
            r"messages\[0\]: Gemini accepts documents only in user messages",
        ),
    ],
)
def test_bad_media_fails_before_sending(
    emu: Emulator, clock: FakeClock, messages: list[Any], model: str, match: str
) -> None:
    llm = gemini(emu, clock, model=model)
    with pytest.raises(InvalidRequestError, match=match):
        llm.invoke(messages)
    assert emu.requests == []


def test_too_much_inline_media_for_one_request_fails_before_sending(emu: Emulator, clock: FakeClock) -> None:
    llm = gemini(emu, clock)
    llm.media.threshold = 10**9  # would inline everything
    big = {"type": "file", "base64": b64(b"%PDF-" + b"x" * 600), "mime_type": "application/pdf"}
    original = gemini_media.INLINE_REQUEST_LIMIT
    gemini_media.INLINE_REQUEST_LIMIT = 1000
    try:
        with pytest.raises(
            InvalidRequestError, match=r"inline media add up to 1616 bytes in base64, over Gemini's 1000-byte"
        ):
            llm.invoke([HumanMessage(content=[big, big])])
    finally:
        gemini_media.INLINE_REQUEST_LIMIT = original
    assert emu.requests == []


def test_threshold_must_be_a_byte_count() -> None:
    with pytest.raises(ValueError, match="file_upload_threshold"):
        ChatGemini(api_key="k", file_upload_threshold=-1)


# -- GLM ------------------------------------------------------------------------------------------------


def test_glm_sends_images_as_image_url_and_video_urls_to_its_video_models(emu: Emulator) -> None:
    glm(emu, "glm-4.6v").invoke([ask({"type": "image", "base64": b64(PNG), "mime_type": "image/png"})])
    assert emu.requests[-1].body["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"},
    }
    glm(emu, "glm-4.5v").invoke([ask({"type": "video", "url": "https://cdn.example/clip.mp4"})])
    assert emu.requests[-1].body["messages"][0]["content"][1] == {
        "type": "video_url",
        "video_url": {"url": "https://cdn.example/clip.mp4"},
    }


@pytest.mark.parametrize(
    ("model", "block", "match"),
    [
        (
            "glm-4.7",
            {"type": "video", "url": "https://cdn.example/clip.mp4"},
            r"content\[1\]: GLM \(glm-4\.7\) does not accept video parts",
        ),
        (
            "glm-4.5v",
            {"type": "video", "base64": b64(MP4), "mime_type": "video/mp4"},
            r"GLM takes video by http\(s\) URL only",
        ),
        (
            "glm-4.6v",
            {"type": "file", "base64": b64(PDF), "mime_type": "application/pdf"},
            r"does not accept document parts",
        ),
        ("glm-4.6v", {"type": "audio", "base64": b64(WAV), "mime_type": "audio/wav"}, r"does not accept audio parts"),
        ("glm-4.6v", {"type": "image", "file_id": "files/abc"}, r"does not accept provider file references"),
    ],
)
def test_glm_names_media_it_cannot_take(emu: Emulator, model: str, block: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        glm(emu, model).invoke([ask(block)])
    with pytest.raises(InvalidRequestError, match=match):
        next(iter(glm(emu, model).stream([ask(block)])))
    assert emu.requests == []
