"""`make demo` end to end, in-process, on the emulator over loopback HTTP (no real provider, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_integrations.demo import _cli as demo_cli
from cache_integrations.demo import main
from cache_integrations.demo._spec import SPEC_SYSTEM_PROMPT
from cache_integrations.demo._support import SUPPORT_SYSTEM_PROMPT
from cache_integrations.testing import Emulator, count_tokens
from cache_integrations.testing.faults import glm_insufficient_balance

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PARTS = ("assistant", "document", "review")


@pytest.fixture(autouse=True)
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZHIPUAI_API_KEY", "ZHIPUAI_BASE_URL", "CACHE_DEMO_MODEL"):
        monkeypatch.delenv(name, raising=False)


def _run(out: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--out", str(out), *args])
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
    assert {p: len(rows) for p, rows in by_part.items()} == {"assistant": 6, "document": 8, "review": 12}
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
    assert "all parts     26" in out  # the overall totals row
    assert "CacheUsageCallbackHandler.report()" in out and "glm-4.7     26" in out
    assert f"Wrote {tmp_path / 'cost.png'}" in out and f"Wrote {tmp_path / 'calls.json'}" in out
    assert max(len(line) for line in out.splitlines()[1:]) <= 100  # the banner may wrap; the tables may not


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
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert document["mode"] == "provider" and {r["model"] for r in document["calls"]} == {"glm-4.6"}


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_provider_failure_exits_1_with_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = Emulator()
    failing.inject_fault(glm_insufficient_balance())
    monkeypatch.setattr(demo_cli, "Emulator", lambda: failing)

    code, _, err = _run(tmp_path, capsys)

    assert code == 1
    assert err.startswith("error: the model call failed:") and "1113" in err
    assert not (tmp_path / "cost.png").exists()


@pytest.mark.block_network(allowed_hosts=["127.0.0.1"])
def test_unpriced_model_prints_na_instead_of_a_price(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(tmp_path, capsys, "--model", "glm-unreleased-test")

    assert code == 0
    assert "n/a" in out and "$" not in out
    assert (tmp_path / "cost.png").read_bytes().startswith(PNG_MAGIC)
    document = json.loads((tmp_path / "calls.json").read_text(encoding="utf-8"))
    assert {r["cost_usd"] for r in document["calls"]} == {None}


def test_prompts_have_the_sizes_the_scenario_promises() -> None:
    assert 2_000 <= count_tokens(SUPPORT_SYSTEM_PROMPT) <= 4_000
    assert 6_000 <= count_tokens(SPEC_SYSTEM_PROMPT) <= 10_000
