"""One upload per content across processes: workers sharing SQLite (one host) or Redis (a fleet).

The emulator serves the Files API over real loopback HTTP with a little latency and a small chunk
granularity, so each upload takes several round trips and concurrent uploads would really overlap.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cache_integrations.testing import Emulator
from cache_integrations.testing.fleet import run_file_fleet
from tests.media import samples

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@pytest.mark.parametrize(("kind", "processes"), [("sqlite", 3), ("redis", 2)])
def test_the_same_pdf_asked_about_by_several_processes_is_uploaded_once(
    kind: str, processes: int, tmp_path: Path, redis_url: str
) -> None:
    registry = f"sqlite:///{tmp_path / 'files.sqlite3'}" if kind == "sqlite" else f"{redis_url.rsplit('/', 1)[0]}/2"
    pdf = samples.pdf(6, text_bytes=12_000)
    emu = Emulator(latency=0.02)
    emu.files.chunk_granularity = 2048  # ~7 chunks per upload
    with emu.serve() as server:
        answered = run_file_fleet(server.gemini_base_url, registry, pdf, "application/pdf", processes=processes)
    assert answered == processes * 4
    assert emu.counters.files_uploaded == 1
    starts = [r for r in emu.requests if r.path == "/upload/v1beta/files" and "upload_id" not in r.query]
    assert len(starts) == 1, "nobody else even started an upload"
    uris = {
        p["fileData"]["fileUri"]
        for r in emu.requests
        if r.path.endswith(":generateContent")
        for c in r.body["contents"]
        for p in c["parts"]
        if "fileData" in p
    }
    assert len(uris) == 1
