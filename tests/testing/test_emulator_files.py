"""The emulated Files API and media in Gemini requests, at the HTTP level: the upload protocol's answers,
Gemini's error bodies, media token counts by Google's rules, and media inside generate, stream,
countTokens and cachedContents."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import httpx
import pytest

from cache_integrations.testing import Emulator, FakeClock, count_tokens
from cache_integrations.testing._media import image_tokens
from tests.media import samples

AUTH = {"x-goog-api-key": "test-key"}
MODEL = "gemini-2.5-flash"
UPLOAD = "/upload/v1beta/files"


def upload(client: httpx.Client, data: bytes, mime: str, name: str = "") -> dict[str, Any]:
    start = client.post(
        UPLOAD,
        headers={
            **AUTH,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": str(len(data)),
            "X-Goog-Upload-Header-Content-Type": mime,
        },
        json={"file": {"display_name": name}},
    )
    assert start.status_code == 200 and start.headers["x-goog-upload-status"] == "active"
    url = start.headers["x-goog-upload-url"]
    done = client.post(
        url, content=data, headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"}
    )
    assert done.status_code == 200 and done.headers["x-goog-upload-status"] == "final", done.text
    file: dict[str, Any] = done.json()["file"]
    return file


def inline(data: bytes, mime: str) -> dict[str, Any]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


def count(client: httpx.Client, parts: list[dict[str, Any]]) -> int:
    r = client.post(
        f"/v1beta/models/{MODEL}:countTokens", json={"contents": [{"role": "user", "parts": parts}]}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    total: int = r.json()["totalTokens"]
    return total


def generate(client: httpx.Client, parts: list[dict[str, Any]], action: str = "generateContent") -> httpx.Response:
    body = {"contents": [{"role": "user", "parts": parts}]}
    return client.post(f"/v1beta/models/{MODEL}:{action}", json=body, headers=AUTH)


# -- the upload protocol ------------------------------------------------------------------------------


def test_start_answers_a_session_url_on_the_requests_host_and_the_granularity(client: httpx.Client) -> None:
    r = client.post(
        UPLOAD,
        headers={
            **AUTH,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "10",
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
        json={"file": {"display_name": "notes"}},
    )
    assert r.status_code == 200 and r.content == b""
    assert r.headers["x-goog-upload-url"].startswith("http://emulator/upload/v1beta/files?upload_id=")
    assert r.headers["x-goog-upload-url"].endswith("&upload_protocol=resumable")
    assert r.headers["x-goog-upload-chunk-granularity"] == str(8 * 1024 * 1024)


def test_start_needs_a_key_and_a_declared_size_within_two_gigabytes(client: httpx.Client) -> None:
    headers = {
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Type": "video/mp4",
    }
    assert client.post(UPLOAD, headers={**headers, "X-Goog-Upload-Header-Content-Length": "1"}).status_code == 403
    r = client.post(UPLOAD, headers={**AUTH, **headers, "X-Goog-Upload-Header-Content-Length": str(2 * 1024**3 + 1)})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Request payload size exceeds the limit: 2147483648 bytes."


def test_chunks_query_and_the_checks_on_offsets_and_granularity(emu: Emulator, client: httpx.Client) -> None:
    emu.files.chunk_granularity = 4
    start = client.post(
        UPLOAD,
        headers={
            **AUTH,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "10",
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
    )
    url = start.headers["x-goog-upload-url"]

    def send(command: str, offset: int | None = None, data: bytes = b"") -> httpx.Response:
        headers = {"X-Goog-Upload-Command": command}
        if offset is not None:
            headers["X-Goog-Upload-Offset"] = str(offset)
        return client.post(url, content=data, headers=headers)

    assert send("upload", 0, b"abc").status_code == 400  # not a multiple of the granularity
    r = send("upload", 0, b"abcd")
    assert r.status_code == 200 and r.headers["x-goog-upload-status"] == "active" and r.content == b""
    assert send("upload", 2, b"efgh").status_code == 400  # the server has 4 bytes, not 2
    r = send("query")
    assert r.headers["x-goog-upload-status"] == "active" and r.headers["x-goog-upload-size-received"] == "4"
    r = send("upload, finalize", 4, b"efghij")
    assert r.headers["x-goog-upload-status"] == "final" and r.json()["file"]["sizeBytes"] == "10"
    r = send("query")  # a finished session keeps answering with the file
    assert r.headers["x-goog-upload-status"] == "final" and r.json()["file"]["name"].startswith("files/")


def test_the_file_resource_has_google_s_fields(client: httpx.Client) -> None:
    file = upload(client, b"hello world", "text/plain", "greeting")
    assert set(file) == {
        "name",
        "displayName",
        "mimeType",
        "sizeBytes",
        "createTime",
        "updateTime",
        "expirationTime",
        "sha256Hash",
        "uri",
        "state",
        "source",
    }
    assert (
        base64.b64decode(file["sha256Hash"]).decode()
        == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    )
    assert file["createTime"] == "2026-01-01T00:00:00Z" and file["expirationTime"] == "2026-01-03T00:00:00Z"
    assert file["uri"] == f"http://emulator/v1beta/{file['name']}" and file["state"] == "ACTIVE"


def test_video_is_processing_for_some_polls_then_active_with_its_duration(emu: Emulator, client: httpx.Client) -> None:
    emu.files.processing_polls = 2
    file = upload(client, samples.mp4(2.5), "video/mp4")
    assert file["state"] == "PROCESSING" and "videoMetadata" not in file
    assert client.get(f"/v1beta/{file['name']}", headers=AUTH).json()["state"] == "PROCESSING"
    active = client.get(f"/v1beta/{file['name']}", headers=AUTH).json()
    assert active["state"] == "ACTIVE" and active["videoMetadata"] == {"videoDuration": "2.5s"}


def test_processing_also_ends_with_time_on_the_emulator_clock(
    emu: Emulator, client: httpx.Client, clock: FakeClock
) -> None:
    emu.files.processing_polls = 100
    file = upload(client, samples.wav(1.0), "audio/wav")
    clock.advance(emu.files.processing_seconds)
    assert client.get(f"/v1beta/{file['name']}", headers=AUTH).json()["state"] == "ACTIVE"


def test_a_failed_upload_reports_its_error(emu: Emulator, client: httpx.Client) -> None:
    emu.files.fail_next("Unsupported codec.")
    file = upload(client, samples.pdf(1), "application/pdf")
    assert file["state"] == "PROCESSING"
    for _ in range(emu.files.processing_polls):
        got = client.get(f"/v1beta/{file['name']}", headers=AUTH).json()
    assert got["state"] == "FAILED" and got["error"]["message"] == "Unsupported codec."


def test_list_is_paged_and_a_deleted_or_expired_file_is_gone(
    emu: Emulator, client: httpx.Client, clock: FakeClock
) -> None:
    names = [upload(client, f"f{i}".encode(), "text/plain")["name"] for i in range(3)]
    first = client.get("/v1beta/files", params={"pageSize": 2}, headers=AUTH).json()
    second = client.get(
        "/v1beta/files", params={"pageSize": 2, "pageToken": first["nextPageToken"]}, headers=AUTH
    ).json()
    assert [f["name"] for f in first["files"] + second["files"]] == names and "nextPageToken" not in second
    assert client.delete(f"/v1beta/{names[0]}", headers=AUTH).json() == {}
    gone = client.get(f"/v1beta/{names[0]}", headers=AUTH)
    file_id = names[0].removeprefix("files/")
    assert gone.status_code == 403 and gone.json() == {
        "error": {
            "code": 403,
            "status": "PERMISSION_DENIED",
            "message": f"You do not have permission to access the File {file_id} or it may not exist.",
        }
    }
    clock.advance(48 * 3600)
    assert client.get("/v1beta/files", headers=AUTH).json() == {}
    assert emu.counters.files_uploaded == 3 and emu.counters.files_deleted == 1 and emu.counters.files_expired == 2


# -- media token accounting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "mime", "tokens"),
    [
        (samples.png(64, 48), "image/png", 258),  # both sides <= 384 px
        (samples.png(384, 384), "image/png", 258),
        (samples.png(1000, 800), "image/png", 2 * 2 * 258),  # 768-px tiles
        (samples.png(1536, 100), "image/png", 2 * 1 * 258),
        (samples.pdf(3), "application/pdf", 3 * 258),
        (samples.wav(2.0), "audio/wav", 64),  # 32 per second
        (samples.mp4(2.5), "video/mp4", math.ceil(2.5 * 263)),  # 263 per second
    ],
)
def test_media_tokens_follow_google_s_published_rules(
    client: httpx.Client, data: bytes, mime: str, tokens: int
) -> None:
    base = count(client, [{"text": "x"}])
    assert count(client, [{"text": "x"}, inline(data, mime)]) - base == tokens


def test_text_documents_count_as_their_text(client: httpx.Client) -> None:
    text = "Apollo 17 flight plan, day one: launch, earth orbit, translunar injection."
    base = count(client, [{"text": "x"}])
    assert count(client, [{"text": "x"}, inline(text.encode(), "text/plain")]) - base == count_tokens(text)


def test_image_tiles() -> None:
    assert [image_tokens(*size) for size in [(384, 384), (385, 10), (768, 768), (769, 768), (3000, 2000)]] == [
        258,
        258,
        258,
        516,
        4 * 3 * 258,
    ]


def test_a_file_counts_the_same_as_the_same_bytes_inline(client: httpx.Client) -> None:
    data = samples.pdf(5)
    file = upload(client, data, "application/pdf")
    by_file = count(client, [{"fileData": {"mimeType": "application/pdf", "fileUri": file["uri"]}}])
    by_name = count(client, [{"fileData": {"mimeType": "application/pdf", "fileUri": file["name"]}}])
    assert by_file == by_name == count(client, [inline(data, "application/pdf")]) > 5 * 258


def test_generate_and_stream_report_media_tokens_in_usage(client: httpx.Client) -> None:
    file = upload(client, samples.pdf(4), "application/pdf")
    parts = [{"fileData": {"mimeType": "application/pdf", "fileUri": file["uri"]}}, {"text": "Summarize"}]
    expected = count(client, parts)
    r = generate(client, parts)
    assert r.status_code == 200 and r.json()["usageMetadata"]["promptTokenCount"] == expected >= 4 * 258
    s = client.post(
        f"/v1beta/models/{MODEL}:streamGenerateContent",
        params={"alt": "sse"},
        json={"contents": [{"role": "user", "parts": parts}]},
        headers=AUTH,
    )
    events = [json.loads(b[6:]) for b in s.text.split("\r\n\r\n") if b.startswith("data: ")]
    assert events[-1]["usageMetadata"]["promptTokenCount"] == expected


def test_a_file_only_cache_is_big_enough_and_holds_the_server_s_count(client: httpx.Client) -> None:
    file = upload(client, samples.pdf(6), "application/pdf", "A17_FlightPlan")
    body = {
        "model": f"models/{MODEL}",
        "contents": [
            {"role": "user", "parts": [{"file_data": {"mime_type": "application/pdf", "file_uri": file["uri"]}}]}
        ],
        "system_instruction": {"parts": [{"text": "You are an expert at analyzing transcripts."}]},
        "ttl": "300s",
    }
    r = client.post("/v1beta/cachedContents", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    cached = r.json()["usageMetadata"]["totalTokenCount"]
    assert cached >= 6 * 258  # the PDF's pages, not the URI's text
    g = client.post(
        f"/v1beta/models/{MODEL}:generateContent",
        json={
            "contents": [{"role": "user", "parts": [{"text": "Please summarize this transcript"}]}],
            "cachedContent": r.json()["name"],
        },
        headers=AUTH,
    )
    assert g.json()["usageMetadata"]["cachedContentTokenCount"] == cached


def test_same_media_hits_the_implicit_cache_and_different_media_does_not(client: httpx.Client) -> None:
    big = samples.pdf(8)
    first = generate(client, [inline(big, "application/pdf"), {"text": "q1"}]).json()["usageMetadata"]
    again = generate(client, [inline(big, "application/pdf"), {"text": "q2"}]).json()["usageMetadata"]
    other = generate(client, [inline(samples.pdf(9), "application/pdf"), {"text": "q3"}]).json()["usageMetadata"]
    assert "cachedContentTokenCount" not in first
    assert again["cachedContentTokenCount"] >= 8 * 258
    assert other.get("cachedContentTokenCount", 0) < 258


# -- errors ----------------------------------------------------------------------------------------


def test_a_missing_file_in_generate_is_gemini_s_403(client: httpx.Client) -> None:
    r = generate(
        client,
        [
            {
                "fileData": {
                    "mimeType": "application/pdf",
                    "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/nope123",
                }
            }
        ],
    )
    assert r.status_code == 403 and r.json()["error"] == {
        "code": 403,
        "status": "PERMISSION_DENIED",
        "message": "You do not have permission to access the File nope123 or it may not exist.",
    }


def test_an_expired_file_in_a_cache_create_is_gemini_s_403(client: httpx.Client, clock: FakeClock) -> None:
    file = upload(client, samples.pdf(6), "application/pdf")
    clock.advance(48 * 3600 + 1)
    body = {
        "model": f"models/{MODEL}",
        "contents": [
            {"role": "user", "parts": [{"fileData": {"mimeType": "application/pdf", "fileUri": file["uri"]}}]}
        ],
    }
    r = client.post("/v1beta/cachedContents", json=body, headers=AUTH)
    assert r.status_code == 403 and "may not exist" in r.json()["error"]["message"]


def test_a_file_still_processing_is_gemini_s_failed_precondition(client: httpx.Client) -> None:
    file = upload(client, samples.mp4(1.0), "video/mp4")
    r = generate(client, [{"fileData": {"mimeType": "video/mp4", "fileUri": file["uri"]}}])
    file_id = file["name"].removeprefix("files/")
    assert r.status_code == 400 and r.json()["error"] == {
        "code": 400,
        "status": "FAILED_PRECONDITION",
        "message": f"The File {file_id} is not in an ACTIVE state and usage is not allowed.",
    }


def test_bad_inline_media(client: httpx.Client) -> None:
    r = generate(client, [{"inlineData": {"mimeType": "application/msword", "data": "AAAA"}}])
    assert r.status_code == 400 and r.json()["error"]["message"] == "Unsupported MIME type: application/msword"
    r = generate(client, [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}])
    assert r.status_code == 400 and "Base64 decoding failed" in r.json()["error"]["message"]


def test_an_oversized_request_is_refused_with_gemini_s_message(emu: Emulator, client: httpx.Client) -> None:
    emu.gemini_max_request_bytes = 1000
    r = generate(client, [inline(b"x" * 2000, "text/plain")])
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Request payload size exceeds the limit: 1000 bytes."


def test_the_request_log_keeps_no_upload_bytes_and_redacts_the_key(emu: Emulator, client: httpx.Client) -> None:
    upload(client, b"secret document body", "text/plain")
    start, chunk = emu.requests[-2:]
    assert start.headers["x-goog-api-key"] == "***" and chunk.body is None


def test_a_dropped_chunk_is_a_dropped_connection_and_the_session_keeps_what_arrived(
    emu: Emulator, client: httpx.Client
) -> None:
    start = client.post(
        UPLOAD,
        headers={
            **AUTH,
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "10",
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
    )
    url = start.headers["x-goog-upload-url"]
    emu.files.drop_next_chunk(keep_bytes=3)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(
            url,
            content=b"0123456789",
            headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        )
    query = client.post(url, headers={"X-Goog-Upload-Command": "query"})
    assert query.headers["x-goog-upload-size-received"] == "3"
