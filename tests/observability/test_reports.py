"""Handlers' calls as data and pictures: records, JSON, a DataFrame whose sums equal report(), the plot."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.callbacks import CallbackManager

from cache_integrations.accounting import CacheLedger, CallRecord
from cache_integrations.langchain import CacheUsageCallbackHandler, ChatGemini
from cache_integrations.llama_index import CachedTokenCountingHandler, get_cache_usage_handler
from cache_integrations.plots import plot_calls
from cache_integrations.pricing import Cost
from cache_integrations.reports import COLUMNS
from cache_integrations.testing import Emulator, FakeClock
from cache_integrations.usage import Usage

from ..langchain.long_prompt import LONG_SYSTEM_PROMPT
from ..llama_index.conftest import make_glm
from .conftest import chat_glm

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _chat(question: str, stamp: str = "") -> list[tuple[str, str]]:
    return [("system", stamp + LONG_SYSTEM_PROMPT), ("human", question)]


@pytest.fixture
def handler(emu: Emulator) -> CacheUsageCallbackHandler:
    """Six GLM calls (one with a volatile timestamp) and two Gemini calls that create and reuse a cache."""
    usage = CacheUsageCallbackHandler()
    glm = chat_glm(emu, model="glm-4.7")
    for i in range(6):
        stamp = f"Now: 2026-11-22T04:3{i}:01. " if i in (3, 4) else ""
        glm.invoke(_chat(f"q{i}", stamp), config={"callbacks": [usage]})
    clock = FakeClock()
    gemini_emu = Emulator(clock=clock)
    transport = gemini_emu.transport()
    gemini = ChatGemini(
        model="gemini-2.5-flash",
        api_key="gemini-test-key",
        base_url="http://emulator/v1beta",
        http_client=httpx.Client(transport=transport),
        cache_mode="always",
        cache_registry="memory",
    )
    gemini.cache_manager.clock = clock.time
    for q in ("g1", "g2"):
        gemini.invoke(_chat(q), config={"callbacks": [usage]})
    return usage


def test_dataframe_sums_equal_the_report(handler: CacheUsageCallbackHandler) -> None:
    df = handler.to_dataframe()
    total = handler.total
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == total.calls == 8
    assert df.input_tokens.sum() == total.input_tokens
    assert df.cached_tokens.sum() == total.cache_read_tokens
    assert df.cache_write_tokens.sum() == total.cache_write_tokens > 0
    assert df.output_tokens.sum() == total.output_tokens
    assert df.storage_token_hours.sum() == pytest.approx(total.cache_storage_token_hours)
    assert total.cost is not None and total.saved is not None and total.storage_cost is not None
    assert df.cost_usd.sum() == pytest.approx(float(total.cost))
    assert df.cost_without_caching_usd.sum() == pytest.approx(float(total.cost_without_caching or 0))
    assert df.saved_usd.sum() == pytest.approx(float(total.saved))
    assert df.storage_usd.sum() == pytest.approx(float(total.storage_cost)) and total.storage_cost > 0
    report = handler.report()
    for column, value in (("cost_usd", total.cost), ("saved_usd", total.saved)):
        assert f"${Decimal(str(df[column].sum())).quantize(Decimal('0.000001'))}" in report
        assert f"${value:.6f}" in report
    assert str(df.cached_tokens.sum()) in report
    assert "volatile_content" in set(df.miss_cause.dropna())


def test_records_and_json(handler: CacheUsageCallbackHandler, tmp_path: Path) -> None:
    records = handler.to_records()
    assert [r["call"] for r in records] == list(range(1, 9))
    assert all(set(r) == set(COLUMNS) for r in records)
    written = tmp_path / "calls.json"
    text = handler.to_json(written)
    assert json.loads(text) == records == json.loads(written.read_text(encoding="utf-8"))
    creation = records[6]
    assert creation["model"] == "gemini-2.5-flash" and creation["cache_write_tokens"] > 0
    assert creation["storage_usd"] > 0 and creation["storage_token_hours"] > 0


def test_plot_writes_a_png_and_returns_the_figure(handler: CacheUsageCallbackHandler, tmp_path: Path) -> None:
    path = tmp_path / "cost.png"
    figure = handler.plot(path)
    assert path.stat().st_size > 30_000
    assert _png_size(path) == (1320, 825)
    top, bottom = figure.axes
    without, with_ = top.lines[:2]
    total = handler.total
    assert with_.get_ydata()[-1] == pytest.approx(float(total.cost or 0))
    assert without.get_ydata()[-1] == pytest.approx(float(total.cost_without_caching or 0))
    labels = top.get_legend_handles_labels()[1]
    assert "cache written / created" in labels  # the Gemini cache creation is marked
    assert any("cache created" in t.get_text() for t in top.texts)
    assert len(bottom.patches) >= 2 * 8  # cached and uncached bars per call (plus the written one)


def test_plot_leaves_pyplot_alone(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from cache_integrations.accounting import CacheLedger\n"
        "from cache_integrations.usage import Usage\n"
        "from cache_integrations.reports import CallReports\n"
        "class H(CallReports):\n"
        "    ledger = CacheLedger()\n"
        "h = H()\n"
        "h.ledger.record(Usage(input_tokens=100, cache_read_tokens=50, output_tokens=5), model='glm-4.7',"
        " provider='zhipuai')\n"
        f"h.plot({str(tmp_path / 'p.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert (tmp_path / "p.png").read_bytes().startswith(PNG_MAGIC)


def test_many_calls_are_drawn_in_groups_with_the_same_totals() -> None:
    cost = Cost(Decimal("0.001"), Decimal("0.0001"), Decimal("0.002"), Decimal(0), Decimal("0.004"))
    calls = [CallRecord("m", None, Usage(input_tokens=100, cache_read_tokens=60, output_tokens=10), cost)] * 1000
    figure = plot_calls(calls)
    top, bottom = figure.axes
    assert len(top.lines[1].get_ydata()) == 334  # groups of 3 calls, at most 400 bars
    assert top.lines[1].get_ydata()[-1] == pytest.approx(1000 * float(cost.total))
    assert "in groups of 3 calls" in bottom.get_xlabel()


def test_no_calls_and_no_pandas_say_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = CacheUsageCallbackHandler()
    with pytest.raises(ValueError, match="no calls to plot"):
        empty.plot()
    assert empty.to_records() == [] and list(empty.to_dataframe().columns) == list(COLUMNS)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r'pip install "cache-integrations\[pandas\]"'):
        empty.to_dataframe()


def test_both_llama_index_handlers(emu: Emulator, tmp_path: Path) -> None:
    counter = CachedTokenCountingHandler()
    llm = make_glm(emu, model="glm-4.6", callback_manager=CallbackManager([counter]))
    messages = [
        ChatMessage(role=MessageRole.SYSTEM, content=LONG_SYSTEM_PROMPT),
        ChatMessage(role=MessageRole.USER, content="q"),
    ]
    with get_cache_usage_handler() as usage:
        for _ in range(3):
            llm.chat(messages)
    for handler in (usage, counter):
        df = handler.to_dataframe()
        total = handler.total
        assert len(df) == total.calls == 3
        assert df.input_tokens.sum() == total.input_tokens
        assert df.cached_tokens.sum() == total.cache_read_tokens == emu.counters.cached_tokens > 0
        assert df.saved_usd.sum() == pytest.approx(float(total.saved or 0))
        assert handler.to_records()[0]["model"] == "glm-4.6"
        path = tmp_path / f"{type(handler).__name__}.png"
        handler.plot(path)
        assert path.stat().st_size > 20_000


def test_records_of_a_ledger_without_prices() -> None:
    ledger = CacheLedger()
    ledger.record(Usage(input_tokens=10, cache_read_tokens=5), model="nobody-prices-this")

    class Handler(CacheUsageCallbackHandler):
        pass

    handler = Handler()
    handler.ledger = ledger
    (record,) = handler.to_records()
    assert record["cost_usd"] is None and record["saved_usd"] is None and record["hit_rate"] == 0.5
