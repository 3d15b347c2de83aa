"""`python -m cache_integrations doctor trace.jsonl --html report.html`, checked in a real headless browser
(Debian's chromium through Playwright): the DOM, not a screenshot."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_integrations.__main__ import main
from cache_integrations.doctor import load_trace
from cache_integrations.doctor_html import doctor_html
from cache_integrations.langchain import get_cache_usage_callback
from cache_integrations.testing import Emulator

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from .conftest import chat_glm

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def trace(tmp_path: Path, emu: Emulator) -> Path:
    """Ten calls of one conversation; calls 4 and 8 put a new timestamp in the system prompt."""
    path = tmp_path / "trace.jsonl"
    llm = chat_glm(emu, model="glm-4.7")
    with get_cache_usage_callback(trace=path):
        for i in range(10):
            stamp = f"Now: 2026-11-22T04:{30 + i}:01. " if i in (3, 7, 8) else ""
            llm.invoke([("system", stamp + LONG_SYSTEM_PROMPT), ("human", f"question {i}")])
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            "chromium is not installed: run `make test` (it installs it with apt-get) or `apt-get install chromium`"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def test_the_cli_writes_a_self_contained_page(trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    assert main(["doctor", str(trace), "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Causes of misses" in printed and f"Wrote {out}" in printed
    page = out.read_text(encoding="utf-8")
    assert len(page) > 30_000  # the inline PNG
    assert 'src="data:image/png;base64,' in page and "<style>" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)  # nothing fetched from elsewhere
    assert "<script" not in page


def test_the_page_in_a_headless_browser(trace: Path, tmp_path: Path, browser: Any) -> None:
    out = tmp_path / "report.html"
    assert main(["doctor", str(trace), "--html", str(out)]) == 0
    records = load_trace(trace)
    misses = [r for r in records if r.get("cause")]
    assert misses

    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")

    assert page.title() == "Prompt cache doctor"
    assert page.locator("h1").inner_text() == "Prompt cache doctor"
    headings = page.locator("h2").all_inner_texts()
    assert headings == [
        "Cost with and without caching",
        "Hit rate over time",
        "Causes of misses",
        f"Misses ({len(misses)})",
    ]
    image = page.evaluate(
        "() => { const i = document.querySelector('img#cost-plot');"
        " return {complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}; }"
    )
    assert image["complete"] and image["width"] > 0 and image["height"] > 0
    assert (image["width"], image["height"]) == (1320, 825)

    rows = page.locator("#misses tbody tr")
    assert rows.count() == len(misses)
    first = rows.nth(0).locator("td").all_inner_texts()
    assert first[4] == misses[0]["cause"] == "volatile_content"
    assert int(first[9]) == misses[0]["lost_tokens"] > 0
    causes = page.locator("#causes tbody tr td.cause").all_inner_texts()
    assert causes == sorted({r["cause"] for r in misses}, key=causes.index)
    assert page.locator("#hit-rate tbody tr").count() == 5  # 10 calls in the default 8 buckets: pairs
    summary = page.locator("#summary").inner_text()
    conversations = len({r["conversation"] for r in records})
    assert summary.startswith(f"{len(records)} calls in {conversations} conversation(s)")
    assert all(url.startswith(("file://", "data:")) for url in requests)


def test_an_empty_trace_and_a_trace_without_misses(tmp_path: Path, browser: Any) -> None:
    assert "The trace is empty" in doctor_html([])
    records = [
        {"conversation": "c1", "call_index": i, "model": "glm-4.7", "cause": None, "input_tokens": 1000,
         "reported_cached_tokens": 900 if i else 0, "expected_cacheable_tokens": 900 if i else 0}
        for i in range(3)
    ]  # fmt: skip
    out = tmp_path / "clean.html"
    out.write_text(doctor_html(records), encoding="utf-8")
    page = browser.new_page()
    page.goto(out.as_uri())
    assert page.locator("#no-misses").is_visible()
    assert page.locator("#misses").count() == 0
    assert page.locator("h2").last.inner_text() == "Misses (0)"
    assert page.evaluate("() => document.querySelector('img#cost-plot').naturalWidth") > 0


def test_html_escapes_what_the_trace_says(tmp_path: Path) -> None:
    record = {
        "conversation": "<script>alert(1)</script>",
        "call_index": 1,
        "model": "glm-4.7",
        "cause": "volatile_content",
        "detail": "a <b>timestamp</b>",
        "input_tokens": 10,
        "reported_cached_tokens": 0,
        "lost_tokens": 5,
        "lost_usd": "0.000001",
    }
    page = doctor_html([record])
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;timestamp&lt;/b&gt;" in page
    json.dumps(record)
