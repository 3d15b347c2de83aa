"""`python -m cache_integrations doctor` skips malformed trace lines, counts them, reports the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cache_integrations.__main__ import main
from cache_integrations.diagnostics import CacheDiagnostics
from cache_integrations.doctor import doctor_report, load_trace, read_trace
from cache_integrations.messages import Message
from cache_integrations.testing import FakeClock
from cache_integrations.usage import Usage

SYSTEM = "You are a careful reviewer. Follow the style guide to the letter. " * 10


def _valid_lines(tmp_path: Path) -> list[str]:
    """Three real records, written by the diagnostics themselves."""
    clock = FakeClock()
    path = tmp_path / "real.jsonl"
    diag = CacheDiagnostics(trace=path, clock=clock.time, warn=False)
    for i, system in enumerate([SYSTEM, SYSTEM, SYSTEM + " Changed."]):
        messages = [Message("system", system), Message("user", f"snippet {i}")]
        diag.observe(
            model="glm-4.7", messages=messages, usage=Usage(input_tokens=200, cache_read_tokens=0), provider="zhipuai"
        )
    return path.read_text(encoding="utf-8").splitlines()


MALFORMED = [
    "[1, 2, 3]",  # a list
    "42",  # a number
    '"just a string"',
    "null",
    '{"conversation": "c1", "input_tok',  # truncated by a crash mid-write
    '{"conversation": "c1", "input_tokens": "many"}',  # wrong type
    '{"conversation": ["c1"], "input_tokens": 3}',  # unhashable conversation
    '{"conversation": "c1", "lost_usd": "NaN"}',
]


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    valid = _valid_lines(tmp_path)
    lines = [valid[0], *MALFORMED[:4], "", valid[1], *MALFORMED[4:], valid[2]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_trace_keeps_the_records_and_counts_the_rest(mixed: Path) -> None:
    trace = read_trace(mixed)
    assert len(trace.records) == 3 and trace.skipped == len(MALFORMED)
    assert trace.examples[0] == (2, "a JSON list, not an object")
    assert [n for n, _ in trace.examples] == [2, 3, 4, 5, 8]
    assert load_trace(mixed) == trace.records


def test_the_cli_reports_valid_records_and_how_many_lines_were_skipped(
    mixed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Skipped 8 malformed line(s) of the trace (line 2: a JSON list, not an object; ")
    assert "3 calls in 1 conversation(s)" in out
    assert "system_prompt_changed" in out


def test_the_module_entry_point_does_not_crash(mixed: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cache_integrations", "doctor", str(mixed)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Skipped 8 malformed line(s)" in result.stdout and "Traceback" not in result.stderr


def test_a_trace_of_only_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("[]\n{\n", encoding="utf-8")
    report = doctor_report(read_trace(path))
    assert report.splitlines()[0].startswith("Skipped 2 malformed line(s)")
    assert report.endswith("The trace is empty: no calls were recorded.")


def test_bad_buckets_is_a_usage_error(mixed: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["doctor", str(mixed), "--buckets", "0"])
    assert info.value.code == 2


def test_records_written_by_the_diagnostics_are_all_valid(tmp_path: Path) -> None:
    for line in _valid_lines(tmp_path):
        assert isinstance(json.loads(line), dict)
    assert read_trace(tmp_path / "real.jsonl").skipped == 0
