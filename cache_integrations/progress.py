"""Progress bars for long work, shown only on a terminal (the ``progress`` extra: rich).

Used by ``python -m cache_integrations doctor`` on large traces and by ``make bench``; `upload_progress`
and `iter_upload` are the hooks for uploads and explicit-cache creation of large contexts:

    with upload_progress("Creating a cache of report.pdf", total_bytes=len(body)) as sent:
        for chunk in chunks:
            send(chunk)
            sent(len(chunk))

    # or let httpx stream the body through the bar (set Content-Length yourself to avoid chunked encoding):
    client.post(url, content=iter_upload(body, "Uploading report.pdf"), headers={"Content-Length": str(len(body))})

Nothing is drawn when stderr is not a terminal (CI, pipes, notebooks' captured output), when rich is not
installed, or when ``CACHE_INTEGRATIONS_PROGRESS=0``; ``CACHE_INTEGRATIONS_PROGRESS=1`` forces bars on. Bars are
transient: they vanish when the work ends, leaving the output as it would be without them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import IO, Any, TypeVar

__all__ = [
    "ENV_VAR",
    "MIN_UPLOAD_BYTES",
    "aiter_upload",
    "enabled",
    "iter_upload",
    "progress_bar",
    "read_lines",
    "track",
    "upload_progress",
]

ENV_VAR = "CACHE_INTEGRATIONS_PROGRESS"
MIN_UPLOAD_BYTES = 1_000_000
"""Uploads smaller than this finish too fast for a bar to help: none is shown."""

_T = TypeVar("_T")

# rich draws one live display at a time: a bar opened while another is shown becomes a row of it.
_live: Any = None
_live_lock = threading.Lock()


def _noop(amount: float = 1) -> None:
    return None


def enabled(stream: IO[str] | None = None) -> bool:
    """Whether a bar would be drawn on `stream` (default: stderr)."""
    setting = os.environ.get(ENV_VAR, "").strip()
    if setting == "0":
        return False
    target: Any = stream if stream is not None else sys.stderr
    if setting != "1":
        isatty = getattr(target, "isatty", None)
        if not callable(isatty) or not isatty():
            return False
    return importlib.util.find_spec("rich") is not None


@contextmanager
def progress_bar(
    description: str, total: float | None = None, *, stream: IO[str] | None = None
) -> Iterator[Callable[[float], None]]:
    """A bar for `total` units of work; yields ``advance(amount=1)``, a no-op when no bar is shown.

    A bar opened while another is shown (a section of ``make bench``) is drawn as one more row of it."""
    global _live
    if not enabled(stream):
        yield _noop
        return
    with _live_lock:
        outer = _live
    if outer is not None:
        row = outer.add_task(description, total=total)

        def advance_row(amount: float = 1) -> None:
            outer.advance(row, amount)

        try:
            yield advance_row
        finally:
            outer.remove_task(row)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    console = Console(file=stream if stream is not None else sys.stderr)
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(amount: float = 1) -> None:
            bar.advance(task, amount)

        with _live_lock:
            _live = bar
        try:
            yield advance
        finally:
            with _live_lock:
                _live = None


def track(items: Iterable[_T], description: str, total: int | None = None) -> Iterator[_T]:
    """`items`, one step of a bar each (`total` defaults to ``len(items)`` when it has one)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with progress_bar(description, total) as advance:
        for item in items:
            yield item
            advance(1)


def read_lines(fh: IO[str], description: str, *, min_bytes: int = 5_000_000) -> Iterator[str]:
    """The lines of an open text file, with a bar by bytes read when the file holds at least `min_bytes`."""
    try:
        size = os.fstat(fh.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        size = 0
    if size < min_bytes:
        yield from fh
        return
    with progress_bar(description, size) as advance:
        for line in fh:
            yield line
            advance(len(line.encode("utf-8", "replace")))


@contextmanager
def upload_progress(
    description: str, total_bytes: int, *, min_bytes: int = MIN_UPLOAD_BYTES
) -> Iterator[Callable[[float], None]]:
    """The hook for an upload or a cache creation: yields ``sent(n_bytes)``; a bar for `total_bytes` is
    shown on a terminal when the transfer is at least `min_bytes`."""
    if total_bytes < min_bytes:
        yield _noop
        return
    with progress_bar(description, total_bytes) as advance:
        yield advance


def iter_upload(data: bytes, description: str, *, chunk_size: int = 65_536) -> Iterator[bytes]:
    """`data` in chunks, advancing an upload bar as each is consumed (httpx ``content=`` for a sync client)."""
    with upload_progress(description, len(data)) as sent:
        view = memoryview(data)
        for start in range(0, len(data), chunk_size):
            chunk = bytes(view[start : start + chunk_size])
            yield chunk
            sent(len(chunk))


async def aiter_upload(data: bytes, description: str, *, chunk_size: int = 65_536) -> AsyncIterator[bytes]:
    """`iter_upload` for an async httpx client."""
    for chunk in iter_upload(data, description, chunk_size=chunk_size):
        yield chunk
