"""Progress bars: drawn on a terminal, silent otherwise, forced on or off by CACHE_INTEGRATIONS_PROGRESS."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from cache_integrations import progress
from cache_integrations.progress import (
    ENV_VAR,
    aiter_upload,
    enabled,
    iter_upload,
    progress_bar,
    read_lines,
    track,
    upload_progress,
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def test_only_on_a_terminal_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not enabled(io.StringIO())
    assert enabled(Terminal())
    monkeypatch.setenv(ENV_VAR, "0")
    assert not enabled(Terminal())
    monkeypatch.setenv(ENV_VAR, "1")
    assert enabled(io.StringIO())


def test_a_bar_is_drawn_on_a_terminal_and_nothing_elsewhere() -> None:
    quiet = io.StringIO()
    with progress_bar("Reading trace.jsonl", 10, stream=quiet) as advance:
        advance(10)
    assert quiet.getvalue() == ""
    tty = Terminal()
    with progress_bar("Reading trace.jsonl", 10, stream=tty) as advance:
        advance(10)
    assert "Reading trace.jsonl" in tty.getvalue()


def test_track_and_read_lines_pass_everything_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Terminal()
    monkeypatch.setattr(progress.sys, "stderr", tty)
    assert list(track(range(5), "bench sections")) == [0, 1, 2, 3, 4]
    assert "bench sections" in tty.getvalue()
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(f'{{"n": {i}}}\n' for i in range(100)), encoding="utf-8")
    with open(path, encoding="utf-8") as fh:
        assert len(list(read_lines(fh, "small file"))) == 100  # under the size threshold: no bar
    assert "small file" not in tty.getvalue()
    with open(path, encoding="utf-8") as fh:
        assert len(list(read_lines(fh, "large file", min_bytes=0))) == 100
    assert "large file" in tty.getvalue()


def test_the_upload_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = Terminal()
    monkeypatch.setattr(progress.sys, "stderr", tty)
    with upload_progress("Uploading small.txt", 10) as sent:
        sent(10)
    assert tty.getvalue() == ""  # below the size worth a bar
    data = bytes(range(256)) * 8_000  # 2 MB
    assert b"".join(iter_upload(data, "Uploading report.pdf")) == data
    assert "Uploading report.pdf" in tty.getvalue()

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in aiter_upload(data, "Creating a cache")])

    assert asyncio.run(collect()) == data
    assert "Creating a cache" in tty.getvalue()


def test_a_bar_inside_a_bar_is_a_row_of_it() -> None:
    tty = Terminal()
    with progress_bar("make bench", 2, stream=tty) as outer:
        with progress_bar("instrumentation overhead", 3, stream=tty) as inner:  # rich allows one live display
            inner(3)
        outer(2)
    assert "make bench" in tty.getvalue() and "instrumentation overhead" in tty.getvalue()
