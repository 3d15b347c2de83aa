"""`make demo` end to end, in-process, on the emulator over loopback HTTP (no real provider, no network)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_integrations.demo import main
from cache_integrations.demo._spec import SPEC_SYSTEM_PROMPT
from cache_integrations.demo._support import SUPPORT_SYSTEM_PROMPT
from cache_integrations.testing import Emulator, FakeClock, count_tokens
from cache_integrations.testing.faults import glm_insufficient_balance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PARTS = ("assistant", "document", "review", "gemini")
GLM_PARTS = PARTS[:3]
GEMINI_SUMMARY = "gemini: cache "  # the one line on part 4's cache, printed after the totals


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ZHIPUAI_API_KEY",
        "ZHIPUAI_BASE_URL",
        "CACHE_DEMO_MODEL",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GEMINI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


def _run(
    out: Path, capsys: pytest.CaptureFixture[str], *args: str, emulator: Emulator | None = None
) -> tuple[int, str, str]:
    code = main(["--out", str(out), *args], emulator=emulator)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _calls_by_part(document: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    by_part: dict[str, list[dict[str, Any]]] = {}
    for row in document["calls"]:
        by_part.setdefault(row["part"], []).append(row)
    return by_part


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_offline_demo_writes_plot_and_calls_and_shows_caching(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(tmp_path, capsys)

    assert code == 0
    assert out.startswith("No ZHIPUAI_API_KEY set: running offline on the built-in emulator")
    assert (tmp_path / "cost.png").read_bytes().startswith(PNG_MAGIC)
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert document["mode"] == "emulator" and document["model"] == "glm-4.7"

    by_part = _calls_by_part(document)
    assert {p: len(rows) for p, rows in by_part.items()} == {"assistant": 6, "document": 8, "review": 12, "gemini": 10}
    assert by_part["assistant"][0]["cached_tokens"] == 0
    for part in PARTS:
        rows = by_part[part]
        assert [r["call"] for r in rows] == list(range(1, len(rows) + 1))
        assert all(r["cached_tokens"] > 0 for r in rows[1:]), part
        assert all(r["cost_usd"] < r["cost_without_caching_usd"] for r in rows[1:]), part
    turns = [r["cached_tokens"] for r in by_part["assistant"]]
    assert turns == sorted(turns) and len(set(turns)) == len(turns)  # the cached prefix grows every turn

    cost = sum(r["cost_usd"] for r in document["calls"])
    without = sum(r["cost_without_caching_usd"] for r in document["calls"])
    assert cost < without
    assert "all parts     36" in out  # the overall totals row
    assert "CacheUsageCallbackHandler.report()" in out
    assert re.search(r"^glm-4\.7 +26 ", out, re.M) and re.search(r"^gemini-2\.5-flash +10 ", out, re.M)
    assert f"Wrote {tmp_path / 'cost.png'}" in out and f"Wrote {tmp_path / 'calls.json'}" in out
    # the banner and the Gemini cache line (it names the cache in full) may wrap; the tables may not
    assert max(len(line) for line in out.splitlines()[1:] if not line.startswith(GEMINI_SUMMARY)) <= 100


def _money(text: str) -> float:
    return float(text.replace("$", ""))


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_offline_gemini_part_pins_one_cache_reads_it_ten_times_and_deletes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator = Emulator(clock=FakeClock())  # the one the demo serves, handed in so we can inspect it

    code, out, _ = _run(tmp_path, capsys, emulator=emulator)

    assert code == 0
    assert out.splitlines()[1] == "No GEMINI_API_KEY or GOOGLE_API_KEY set: the Gemini part runs on the same emulator"
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert document["backends"]["gemini"] == {"mode": "emulator", "model": "gemini-2.5-flash"}
    rows = _calls_by_part(document)["gemini"]
    assert [r["call"] for r in rows] == list(range(1, 11))
    assert {(r["provider"], r["model"]) for r in rows} == {("google", "gemini-2.5-flash")}
    pinned = document["pinned_cache"]

    # exactly one cache was created
    creates = [r for r in emulator.requests if r.method == "POST" and r.path == "/v1beta/cachedContents"]
    assert len(creates) == 1 and emulator.counters.caches_created == 1
    assert pinned["name"].startswith("cachedContents/") and pinned["tokens"] > 1024
    # every question was served from the whole pinned cache
    assert all(r["cached_tokens"] == pinned["tokens"] for r in rows)
    assert emulator.counters.cached_tokens_explicit == 10 * pinned["tokens"]
    # the first question reports the cache's creation and its storage, the others only read it
    assert [r["cache_write_tokens"] for r in rows] == [pinned["tokens"]] + [0] * 9
    assert rows[0]["cache_storage_token_hours"] == pytest.approx(pinned["tokens"])  # one hour
    assert rows[0]["storage_usd"] == pytest.approx(pinned["tokens"] / 1e6)  # $1.00 per MTok-hour
    assert all(r["storage_usd"] == 0 for r in rows[1:])
    storage = sum(r["storage_usd"] for r in rows)
    saved = sum(r["saved_usd"] for r in rows)
    assert storage > 0 and saved > 0  # net of storage, the ten reads still pay

    # the totals carry the storage, and the summary line states the net saving after it
    totals_row = re.search(r"^gemini +10 .*$", out, re.M)
    assert totals_row is not None and f"${storage:.6f}" in totals_row.group()
    summary = [line for line in out.splitlines() if line.startswith(GEMINI_SUMMARY)]
    assert len(summary) == 1
    assert f"{pinned['name']}, {pinned['tokens']} tokens, expiry 2026-01-01 01:00:00 UTC;" in summary[0]
    net = re.search(r"net saved (\$\S+) \((\d+\.\d) %\) after (\$\S+) of storage$", summary[0])
    assert net is not None
    assert _money(net.group(1)) == pytest.approx(saved, abs=1e-6) and _money(net.group(3)) == pytest.approx(storage)
    without = sum(r["cost_without_caching_usd"] for r in rows)
    assert float(net.group(2)) == pytest.approx(100 * saved / without, abs=0.05)

    # the cache was deleted after the last question, and the output says so
    deletes = [r for r in emulator.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"/v1beta/{pinned['name']}"]
    assert deletes[0].seq > max(r.seq for r in emulator.requests if r.path.endswith(":generateContent"))
    assert emulator.counters.caches_deleted == 1 and emulator.counters.caches_alive == 0
    assert f"deleted {pinned['name']}: its storage stops here" in out and pinned["deleted"] is True


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
@pytest.mark.parametrize("key_var", ["GEMINI_API_KEY", "GOOGLE_API_KEY"])
def test_a_gemini_key_alone_runs_gemini_for_real_and_glm_on_the_emulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key_var: str
) -> None:
    stand_in, demo_emulator = Emulator(), Emulator(clock=FakeClock())
    with stand_in.serve() as server:  # stands in for the real Gemini API
        monkeypatch.setenv(key_var, "gemini-test-not-a-real-key")
        monkeypatch.setenv("GEMINI_BASE_URL", server.gemini_base_url)
        code, out, _ = _run(tmp_path, capsys, emulator=demo_emulator)

    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("No ZHIPUAI_API_KEY set: running offline on the built-in emulator")
    assert lines[1] == f"{key_var} is set: the Gemini part runs against the real Gemini API at {server.gemini_base_url}"
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert document["backends"] == {
        "glm": {"mode": "emulator", "model": "glm-4.7"},
        "gemini": {"mode": "provider", "model": "gemini-2.5-flash"},
    }
    assert {r.endpoint for r in demo_emulator.requests} == {"glm"}
    assert {r.endpoint for r in stand_in.requests} == {"gemini"}
    assert stand_in.counters.caches_created == 1 and stand_in.counters.caches_deleted == 1


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_offline_output_is_deterministic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_run(tmp_path / name, capsys) for name in ("a", "b")]

    def report(out: str) -> list[str]:
        return [line for line in out.splitlines() if not line.startswith("Wrote ")]

    assert report(runs[0][1]) == report(runs[1][1])
    assert (tmp_path / "a" / "calls.json").read_bytes() == (tmp_path / "b" / "calls.json").read_bytes()


@pytest.fixture
def served_emulator() -> Iterator[str]:
    with Emulator().serve() as server:
        yield server.glm_base_url


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_api_key_selects_the_provider_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, served_emulator: str
) -> None:
    monkeypatch.setenv("ZHIPUAI_API_KEY", "sk-test-not-a-real-key")
    monkeypatch.setenv("ZHIPUAI_BASE_URL", served_emulator)  # stands in for the real API
    monkeypatch.setenv("CACHE_DEMO_MODEL", "glm-4.6")

    code, out, _ = _run(tmp_path, capsys)

    assert code == 0
    assert out.startswith(f"ZHIPUAI_API_KEY is set: running against the real GLM API at {served_emulator}")
    assert (
        out.splitlines()[1] == "No GEMINI_API_KEY or GOOGLE_API_KEY set: the Gemini part runs on the built-in emulator"
    )
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert document["mode"] == "provider" and {r["model"] for r in document["calls"] if r["part"] in GLM_PARTS} == {
        "glm-4.6"
    }
    assert document["backends"]["gemini"] == {"mode": "emulator", "model": "gemini-2.5-flash"}


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_provider_failure_exits_1_with_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = Emulator()
    failing.inject_fault(glm_insufficient_balance())

    code, _, err = _run(tmp_path, capsys, emulator=failing)

    assert code == 1
    assert err.startswith("error: the model call failed:") and "1113" in err
    assert not (tmp_path / "cost.png").exists()


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_unpriced_model_prints_na_instead_of_a_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(tmp_path, capsys, "--model", "glm-unreleased-test")

    assert code == 0
    # the GLM model has no price; the Gemini part (gemini-2.5-flash) keeps its own
    tables = out.split("CacheUsageCallbackHandler.report()")[0]
    assert "n/a" in tables and all("$" not in line for line in tables.splitlines() if "gemini" not in line.lower())
    assert re.search(r"^all parts .* n/a", tables, re.M)  # a partial sum is not passed off as the total
    assert (tmp_path / "cost.png").read_bytes().startswith(PNG_MAGIC)
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert {r["cost_usd"] for r in document["calls"] if r["part"] in GLM_PARTS} == {None}


def test_prompts_have_the_sizes_the_scenario_promises() -> None:
    assert 2_000 <= count_tokens(SUPPORT_SYSTEM_PROMPT) <= 4_000
    assert 6_000 <= count_tokens(SPEC_SYSTEM_PROMPT) <= 10_000


def test_missing_optional_dependency_stops_the_demo_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def without_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name == "matplotlib" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", without_matplotlib)
    emu = Emulator(clock=FakeClock())
    code, _, err = _run(tmp_path, capsys, emulator=emu)
    assert code == 2
    assert "matplotlib (the cost plot)" in err and "cache-integrations[demo]" in err
    assert emu.counters.requests_total == 0
    assert not (tmp_path / "cost.png").exists()
