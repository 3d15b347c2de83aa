"""The neutral media part and the rules every adapter shares: sources, media types, reading, and
Gemini's encoding and upload decisions (per part, so a prefix stays byte-stable)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from cache_integrations.errors import InvalidRequestError
from cache_integrations.media import media_part, media_size, mime_from_name, part_mime_type, read_media, sniff_mime
from cache_integrations.messages import ChatRequest, ImagePart, MediaPart, Message, TextPart
from cache_integrations.providers.gemini import encode_generate
from cache_integrations.providers.gemini_files import File
from cache_integrations.providers.gemini_media import GeminiMedia, media_to_wire
from tests.media import samples

PDF = samples.pdf(2)


def test_a_media_part_has_exactly_one_source() -> None:
    with pytest.raises(InvalidRequestError, match=r"exactly one source of data, url, file_uri and path, got none"):
        MediaPart("image")
    with pytest.raises(InvalidRequestError, match=r"got \['data', 'url'\]"):
        MediaPart("image", data=b"x", url="https://x")
    with pytest.raises(InvalidRequestError, match=r"MediaPart\.kind: 'gif' is not one of"):
        MediaPart("gif", data=b"x")  # type: ignore[arg-type]
    assert MediaPart("document", path=Path("/tmp/a.pdf")).path == "/tmp/a.pdf"
    assert MediaPart("video", data=bytearray(b"ab")).data == b"ab"


def test_the_repr_never_prints_the_bytes() -> None:
    part = MediaPart("video", mime_type="video/mp4", data=b"\x00" * 10_000)
    assert repr(part) == "MediaPart(kind='video', mime_type='video/mp4', data=<10000 bytes>)"
    assert len(repr(MediaPart("image", url="data:image/png;base64," + "A" * 10_000))) < 200


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"url": "data:image/png;base64,iVBORw0KGgo="},
            {"url": "data:image/png;base64,iVBORw0KGgo=", "mime_type": "image/png"},
        ),
        (
            {"url": "https://generativelanguage.googleapis.com/v1beta/files/abc"},
            {"file_uri": "https://generativelanguage.googleapis.com/v1beta/files/abc"},
        ),
        ({"url": "files/abc"}, {"file_uri": "files/abc"}),
        ({"url": "https://example.com/a.png"}, {"url": "https://example.com/a.png"}),
        ({"base64_data": base64.b64encode(b"hi").decode()}, {"data": b"hi"}),
        ({"file_id": "abc"}, {"file_uri": "abc"}),
        ({"path": "/tmp/x.pdf"}, {"path": "/tmp/x.pdf"}),
    ],
)
def test_what_a_block_s_source_means(kwargs: dict[str, Any], expected: dict[str, Any]) -> None:
    part = media_part("image", where="w", **kwargs)
    for name, value in expected.items():
        assert getattr(part, name) == value


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"w: a image block needs exactly one of url, base64 data, file_id or path; got none"),
        ({"url": "https://x", "file_id": "a"}, r"got url and file_id"),
        ({"url": "data:image/png,raw"}, r"w: a data URL must look like"),
        ({"url": "ftp://x/y.png"}, r"w: image URL scheme 'ftp' is not supported"),
        ({"base64_data": "@@@"}, r"w: the base64 data does not decode"),
        ({"data": b""}, r"w: the image data is empty"),
        ({"url": "https://x/a.png", "mime_type": "png"}, r"w: mime_type 'png' is not a media type"),
    ],
)
def test_bad_block_sources(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        media_part("image", where="w", **kwargs)


def test_media_types_from_names_and_bytes() -> None:
    assert [
        mime_from_name(n) for n in ("a.PDF", "b.webp", "c.heic", "d.flac", "e.m4a", "f.mkv", "g", "h.unknownext")
    ] == ["application/pdf", "image/webp", "image/heic", "audio/flac", "audio/mp4", "video/x-matroska", None, None]
    assert [sniff_mime(d) for d in (samples.png(2, 2), PDF, samples.wav(0.1), samples.mp4(1.0), b"plain")] == [
        "image/png",
        "application/pdf",
        "audio/wav",
        "video/mp4",
        None,
    ]


def test_part_mime_type_checks_the_kind(tmp_path: Path) -> None:
    path = tmp_path / "noext"
    path.write_bytes(PDF)
    assert part_mime_type(MediaPart("document", path=str(path)), "w") == "application/pdf"  # sniffed
    assert (
        part_mime_type(MediaPart("audio", mime_type="video/mp4", data=b"x"), "w") == "video/mp4"
    )  # an .mp4 audio track
    with pytest.raises(InvalidRequestError, match=r"w: a video part cannot hold media of type 'image/png'"):
        part_mime_type(MediaPart("video", data=samples.png(2, 2)), "w")


def test_reading_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(PDF)
    url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    for part in (
        MediaPart("document", data=PDF),
        MediaPart("document", path=str(path)),
        MediaPart("document", url=url),
    ):
        assert read_media(part, "w") == PDF and media_size(part, "w") == len(PDF)
    with pytest.raises(InvalidRequestError, match=r"w: cannot read '.*missing.pdf': No such file"):
        read_media(MediaPart("document", path=str(tmp_path / "missing.pdf")), "w")
    with pytest.raises(InvalidRequestError, match=r"is not a regular file"):
        media_size(MediaPart("document", path=str(tmp_path)), "w")


# -- Gemini encoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "wire"),
    [
        (
            MediaPart("document", data=PDF),
            {"inlineData": {"mimeType": "application/pdf", "data": base64.b64encode(PDF).decode()}},
        ),
        (
            MediaPart("video", mime_type="video/mp4", file_uri="files/abc"),
            {
                "fileData": {
                    "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc",
                    "mimeType": "video/mp4",
                }
            },
        ),
        (
            MediaPart("video", url="https://www.youtube.com/watch?v=9hE5-98ZeCg"),
            {"fileData": {"fileUri": "https://www.youtube.com/watch?v=9hE5-98ZeCg"}},
        ),
        (
            MediaPart("audio", url="https://x.test/a.mp3"),
            {"fileData": {"fileUri": "https://x.test/a.mp3", "mimeType": "audio/mp3"}},
        ),
        (
            ImagePart("data:image/png;base64,iVBORw0KGgo="),
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        ),
    ],
)
def test_gemini_wire_parts(part: Any, wire: dict[str, Any]) -> None:
    assert media_to_wire(part, "w") == wire


@pytest.mark.parametrize(
    ("part", "match"),
    [
        (MediaPart("video", file_uri="files/abc"), r"w: a Files API video \('files/abc'\) needs its mime_type"),
        (
            MediaPart("video", mime_type="video/mp4", file_uri="s3://bucket/x"),
            r"neither a Files API URI nor 'files/<id>'",
        ),
        (MediaPart("image", url="gs://bucket/a.png"), r"w: image URL scheme 'gs' is not supported"),
    ],
)
def test_gemini_wire_errors(part: MediaPart, match: str) -> None:
    with pytest.raises(InvalidRequestError, match=match):
        media_to_wire(part, "w")


def test_an_image_part_holding_a_pdf_data_url_still_encodes() -> None:
    url = "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    body = encode_generate(ChatRequest("gemini-2.5-flash", (Message("user", (ImagePart(url),)),)), stream=False).body
    assert b'"mimeType":"application/pdf"' in body


# -- the upload decision --------------------------------------------------------------------------------


class RecordingUploader:
    def __init__(self) -> None:
        self.uploaded: list[tuple[MediaPart, str]] = []
        self.described: list[str] = []

    def _file(self, mime: str) -> File:
        return File(
            name="files/up1",
            uri="https://generativelanguage.googleapis.com/v1beta/files/up1",
            mime_type=mime,
            size_bytes=1,
            state="ACTIVE",
        )

    def upload(self, part: MediaPart, *, mime_type: str, where: str) -> File:
        self.uploaded.append((part, mime_type))
        return self._file(mime_type)

    async def aupload(self, part: MediaPart, *, mime_type: str, where: str) -> File:
        return self.upload(part, mime_type=mime_type, where=where)

    def describe(self, reference: str) -> File:
        self.described.append(reference)
        return self._file("video/mp4")

    async def adescribe(self, reference: str) -> File:
        return self.describe(reference)

    def manages(self, reference: str) -> bool:
        return False

    def forget(self, reference: str) -> bool:
        return False


def _media(threshold: int) -> tuple[GeminiMedia, RecordingUploader]:
    uploader = RecordingUploader()
    return GeminiMedia(files=None, threshold=threshold, uploader=uploader), uploader  # type: ignore[arg-type]


def _request(*parts: Any) -> ChatRequest:
    return ChatRequest("gemini-2.5-flash", (Message("user", (TextPart("q"), *parts)),))


def test_each_part_is_decided_alone_by_its_own_size(tmp_path: Path) -> None:
    media, uploader = _media(threshold=1000)
    small, big = MediaPart("image", data=samples.png(4, 4)), MediaPart("document", data=b"%PDF-" + b"x" * 2000)
    path = tmp_path / "small.pdf"
    path.write_bytes(PDF[:900])
    resolved = media.resolve(_request(small, big, MediaPart("document", path=str(path))))
    parts = resolved.messages[0].content
    assert isinstance(parts, tuple)
    assert parts[1] is small  # untouched
    assert parts[2] == MediaPart("document", mime_type="application/pdf", file_uri=uploader._file("").uri)
    assert parts[3] == MediaPart("document", mime_type="application/pdf", data=PDF[:900])  # read into the request
    assert [u[1] for u in uploader.uploaded] == ["application/pdf"]


def test_pdfs_over_fifty_megabytes_are_uploaded_whatever_the_threshold(tmp_path: Path) -> None:
    media, uploader = _media(threshold=10**9)
    path = tmp_path / "big.pdf"
    with path.open("wb") as f:
        f.write(b"%PDF-1.4\n")
        f.truncate(50 * 1024 * 1024 + 1)
    media.resolve(_request(MediaPart("document", path=str(path))))
    assert len(uploader.uploaded) == 1


def test_a_part_over_two_gigabytes_can_be_neither_inlined_nor_uploaded(tmp_path: Path) -> None:
    media, uploader = _media(threshold=1000)
    path = tmp_path / "huge.mp4"
    with path.open("wb") as f:
        f.truncate(2 * 1024**3 + 1)
    with pytest.raises(
        InvalidRequestError, match=r"messages\[0\]\.content\[1\]: the video is 2147483649 bytes, over Gemini's 2 GB"
    ):
        media.resolve(_request(MediaPart("video", path=str(path))))
    assert uploader.uploaded == []


def test_file_references_without_a_type_or_a_full_uri_are_looked_up() -> None:
    media, uploader = _media(threshold=1000)
    full = MediaPart(
        "video", mime_type="video/mp4", file_uri="https://generativelanguage.googleapis.com/v1beta/files/a"
    )
    resolved = media.resolve(_request(full, MediaPart("video", file_uri="files/b")))
    parts = resolved.messages[0].content
    assert isinstance(parts, tuple) and parts[1] is full
    assert parts[2] == MediaPart("video", mime_type="video/mp4", file_uri=uploader._file("").uri)
    assert uploader.described == ["files/b"]


async def test_async_resolution_matches() -> None:
    media, _ = _media(threshold=10)
    sync = media.resolve(_request(MediaPart("document", data=PDF)))
    assert await media.aresolve(_request(MediaPart("document", data=PDF))) == sync


def test_media_outside_user_messages_is_left_to_the_encoder_s_error() -> None:
    media, uploader = _media(threshold=10)
    request = ChatRequest(
        "gemini-2.5-flash", (Message("system", (MediaPart("document", data=PDF),)), Message("user", "q"))
    )
    assert media.resolve(request) is request and uploader.uploaded == []
