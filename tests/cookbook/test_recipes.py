"""Every cookbook recipe, run as its README says (`python cookbook/NAME.py`), offline on the emulator.

Each recipe runs in a subprocess with no provider key in its environment, so it serves itself an
emulator on 127.0.0.1. The checks parse the numbers the recipe prints (the handler's report table,
per-call lines) rather than grepping for words: a recipe that promises cache hits must show cached
tokens, and each recipe's own point (stable beats naive, the fix hits, the plot exists) must hold.
Two more tests set a key and point the provider's base URL at an emulator in this process, which
proves the offline/real switch sends a keyed run where the environment says.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from cache_integrations.testing import Emulator

ROOT = Path(__file__).resolve().parents[2]
COOKBOOK = ROOT / "cookbook"
PROVIDER_ENV = (
    "ZHIPUAI_API_KEY",
    "ZHIPUAI_BASE_URL",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_BASE_URL",
)
RECIPES = (
    "lcel_long_system_prompt",
    "gemini_pinned_document",
    "gemini_pdf_cache",
    "gemini_video_analysis",
    "llama_index_pdf_chat",
    "langchain_rag",
    "agent_loop",
    "batch_code_review",
    "cost_report",
    "why_did_my_cache_miss",
    "llama_index_rag_and_agent",
)
OFFLINE_GLM = "No ZHIPUAI_API_KEY set: running offline on the built-in GLM emulator"
OFFLINE_GEMINI = "No GEMINI_API_KEY or GOOGLE_API_KEY set: running offline on the built-in Gemini emulator"

pytestmark = pytest.mark.block_network(allowed_hosts=["127.0.0.1"])


@dataclass(frozen=True)
class ReportRow:
    """One row of `CacheUsageCallbackHandler.report()`."""

    model: str
    calls: int
    input: int
    cached: int
    hit_percent: float
    output: int
    cost: Decimal | None
    no_cache_cost: Decimal | None
    saved: Decimal | None


_REPORT_HEADER = re.compile(r"^model\s+calls\s+input\s+cached\s+hit %\s+output\s+cost\s+no-cache cost\s+saved$")
_REPORT_ROW = re.compile(
    r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+\.\d)\s+(\d+)\s+(\$[\d.]+|n/a)\s+(\$[\d.]+|n/a)\s+(-?\$[\d.]+|n/a)$"
)


def _money(text: str) -> Decimal | None:
    return None if text == "n/a" else Decimal(text.replace("$", ""))


def reports(out: str) -> list[list[ReportRow]]:
    """Every report table in the output, in order; each a list of rows (per model, then the total)."""
    lines = out.splitlines()
    tables = []
    for i, line in enumerate(lines):
        if not _REPORT_HEADER.match(line):
            continue
        assert set(lines[i + 1]) <= {"-", " "}, "a report's header is followed by its rule"
        rows = []
        for row in lines[i + 2 :]:
            m = _REPORT_ROW.match(row)
            if not m:
                break
            g = m.groups()
            rows.append(
                ReportRow(g[0], int(g[1]), int(g[2]), int(g[3]), float(g[4]), int(g[5]), *(_money(v) for v in g[6:]))
            )
        assert rows, f"report at line {i} has no rows"
        tables.append(rows)
    return tables


def only_report(out: str) -> ReportRow:
    (table,) = reports(out)
    (row,) = table
    return row


def assert_consistent(row: ReportRow) -> None:
    """The report's own arithmetic: the hit rate is cached over input, saved is the cost difference."""
    assert row.hit_percent == pytest.approx(100 * row.cached / row.input, abs=0.051)
    assert row.cost is not None and row.no_cache_cost is not None and row.saved is not None, "glm/gemini are priced"
    assert abs(row.saved - (row.no_cache_cost - row.cost)) <= Decimal("0.000001"), "each rounded to 6 places"


def recipe_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env["COOKBOOK_OUTPUT_DIR"] = str(tmp_path / "output")
    env["CACHE_INTEGRATIONS_HOME"] = str(tmp_path / "home")  # a keyed Gemini run's cache registry
    env.update(extra)
    return env


def run_recipe(name: str, tmp_path: Path, **extra_env: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(COOKBOOK / f"{name}.py")],
        cwd=ROOT,
        env=recipe_env(tmp_path, **extra_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def ints(pattern: str, out: str) -> list[tuple[int, ...]]:
    return [tuple(int(g) for g in m.groups()) for m in re.finditer(pattern, out, re.M)]


def test_every_recipe_is_tested() -> None:
    on_disk = {p.stem for p in COOKBOOK.glob("*.py") if not p.name.startswith("_")}
    assert on_disk == set(RECIPES)
    index = (COOKBOOK / "README.md").read_text(encoding="utf-8")
    for name in RECIPES:
        assert f"python cookbook/{name}.py" in index, f"cookbook/README.md does not list {name}"


def test_lcel_long_system_prompt(tmp_path: Path) -> None:
    out = run_recipe("lcel_long_system_prompt", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    per_question = ints(r"^Q\d+\s+cached\s+(\d+) of\s+(\d+) input tokens", out)
    assert len(per_question) == 10
    assert per_question[0][0] == 0, "the first question finds a cold cache"
    for cached, total in per_question[1:]:
        assert cached > 0.9 * total, "from the second question on, the system prompt is served from the cache"
    row = only_report(out)
    assert_consistent(row)
    assert (row.calls, row.cached) == (10, sum(c for c, _ in per_question))
    assert row.hit_percent > 80 and row.saved > 0


def test_gemini_pinned_document(tmp_path: Path) -> None:
    out = run_recipe("gemini_pinned_document", tmp_path)

    assert out.startswith(OFFLINE_GEMINI)
    pinned = re.search(r"^Pinned (cachedContents/\S+): (\d+) tokens, expires (\d{4}-\d\d-\d\d [\d:]+) UTC$", out, re.M)
    assert pinned, out
    name, tokens = pinned.group(1), int(pinned.group(2))
    assert tokens > 1024, "the handbook is above Gemini's explicit-cache minimum"
    per_question = ints(r"^Q\d+\s+cached\s+(\d+) of\s+(\d+) input tokens \(written (\d+)\)", out)
    assert len(per_question) == 10
    assert all(cached == tokens for cached, _, _ in per_question), "every question reads the whole pinned cache"
    assert [w for _, _, w in per_question] == [tokens] + [0] * 9, "the creation is reported once, on the first call"
    assert f"Deleted {name}" in out
    net = re.search(r"Net savings after storage: saved ([\d.]+) USD of ([\d.]+) \(.*?\); storage ([\d.]+) USD", out)
    assert net, out
    saved, without, storage = (Decimal(g) for g in net.groups())
    assert storage > 0 and saved > 0
    row = only_report(out)
    assert_consistent(row)
    assert (row.model, row.calls, row.cached) == ("gemini-2.5-flash", 10, 10 * tokens)
    assert row.saved == saved and row.no_cache_cost == without


def _net_savings(out: str) -> tuple[Decimal, Decimal, Decimal]:
    net = re.search(r"Net savings after storage: saved ([\d.]+) USD of ([\d.]+) \(.*?\); storage ([\d.]+) USD", out)
    assert net, out
    saved, without, storage = (Decimal(g) for g in net.groups())
    return saved, without, storage


def test_gemini_pdf_cache(tmp_path: Path) -> None:
    out = run_recipe("gemini_pdf_cache", tmp_path)

    assert out.startswith(OFFLINE_GEMINI)
    uploaded = re.search(r"^Uploaded (files/[a-z0-9]+): (\d+) bytes, application/pdf, ACTIVE$", out, re.M)
    assert uploaded, out
    name = uploaded.group(1)
    assert int(uploaded.group(2)) == (tmp_path / "output" / "a17_flight_plan.pdf").stat().st_size
    assert f"Uploaded again: {name} (the same file, nothing sent)" in out
    cached = re.search(r"^Cached (cachedContents/\S+): (\d+) tokens \(Gemini's count\)", out, re.M)
    assert cached, out
    cache, tokens = cached.group(1), int(cached.group(2))
    assert tokens >= 12 * 258, "twelve pages at 258 tokens each, plus the instruction"
    per_question = ints(r"^Q\d+ cached\s+(\d+) of\s+(\d+) input tokens$", out)
    assert len(per_question) == 6 and all(c == tokens for c, _ in per_question)
    assert f"Deleted {cache}" in out and "Deleted 1 uploaded file(s)" in out
    saved, without, storage = _net_savings(out)
    assert storage > 0 and saved > 0
    row = only_report(out)
    assert_consistent(row)
    assert (row.model, row.calls, row.cached) == ("gemini-2.5-flash", 6, 6 * tokens)
    assert row.saved == saved and row.no_cache_cost == without


def test_gemini_video_analysis(tmp_path: Path) -> None:
    out = run_recipe("gemini_video_analysis", tmp_path)

    assert out.startswith(OFFLINE_GEMINI)
    assert re.search(r"^Uploaded files/[a-z0-9]+: \d+ bytes, video/avi, ACTIVE$", out, re.M), out
    cached = re.search(r"^Cached (cachedContents/\S+): (\d+) tokens", out, re.M)
    assert cached, out
    tokens = int(cached.group(2))
    assert tokens >= 60 * 263, "a minute of video at 263 tokens a second"
    per_question = ints(r"^Q\d+ cached\s+(\d+) of\s+(\d+) input tokens$", out)
    assert len(per_question) == 3 and all(c == tokens for c, _ in per_question)
    assert re.search(r"^Q4 \(streamed\): \S", out, re.M)
    assert f"Deleted {cached.group(1)}" in out and "Deleted 1 uploaded file(s)" in out
    saved, _, storage = _net_savings(out)
    row = only_report(out)
    assert_consistent(row)
    assert (row.calls, row.cached) == (4, 4 * tokens) and row.saved == saved > 0 and storage > 0


def test_llama_index_pdf_chat(tmp_path: Path) -> None:
    out = run_recipe("llama_index_pdf_chat", tmp_path)

    assert out.startswith(OFFLINE_GEMINI)
    cached = re.search(r"^Cached (cachedContents/\S+): (\d+) tokens", out, re.M)
    assert cached, out
    tokens = int(cached.group(2))
    turns = ints(r"^T\d+ cached\s+(\d+) of\s+(\d+) input tokens$", out)
    assert len(turns) == 4 and all(c == tokens for c, _ in turns)
    totals = [t for _, t in turns]
    assert totals[1:] == sorted(totals[1:]), "the conversation grows after the cached document"
    assert f"Deleted {cached.group(1)}" in out and "Deleted 1 uploaded file(s)" in out
    saved, _, storage = _net_savings(out)
    row = only_report(out)
    assert_consistent(row)
    assert (row.calls, row.cached) == (4, 4 * tokens) and row.saved == saved > 0 and storage > 0


def test_langchain_rag_stable_placement_beats_naive(tmp_path: Path) -> None:
    out = run_recipe("langchain_rag", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    stable_table, naive_table = reports(out)
    (stable,) = stable_table
    (naive,) = naive_table
    for row in (stable, naive):
        assert_consistent(row)
        assert row.calls == 10
    assert stable.input == naive.input, "both placements send the same tokens, in a different order"
    assert stable.cached > naive.cached > 0
    assert stable.hit_percent > naive.hit_percent
    side_by_side = re.finditer(r"^(stable|naive) \(.*?\)\s+10\s+\d+\s+\d+\s+([\d.]+)$", out, re.M)
    summary = {m.group(1): float(m.group(2)) for m in side_by_side}
    assert summary == {"stable": stable.hit_percent, "naive": naive.hit_percent}
    per_question = ints(r"^Q\d+\s+\S.*?\s(\d+)\s+(\d+)$", out)
    assert len(per_question) == 10
    assert sum(s for s, _ in per_question) == stable.cached and sum(n for _, n in per_question) == naive.cached


def test_agent_loop(tmp_path: Path) -> None:
    out = run_recipe("agent_loop", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    steps = re.findall(r"^  step (\d+): model (calls (\w+)\(.*?\)|answers: .*?)\s+cached\s+(\d+) of\s+(\d+)", out, re.M)
    assert len(steps) >= 6, "several model calls"
    assert [int(s[0]) for s in steps] == list(range(1, len(steps) + 1))
    tools_called = {s[2] for s in steps if s[2]}
    assert len(tools_called) >= 2, tools_called
    assert len(re.findall(r"^          tool \w+ -> ", out, re.M)) == sum(1 for s in steps if s[2])
    cached = [int(s[3]) for s in steps]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:]), "every step after the first is served from the cache"
    row = only_report(out)
    assert_consistent(row)
    assert (row.calls, row.cached) == (len(steps), sum(cached))
    assert row.hit_percent > 70


def test_batch_code_review(tmp_path: Path) -> None:
    out = run_recipe("batch_code_review", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    snippets = ints(r"^snippet\s+\d+ \(\w+\s*\) cached\s+(\d+) of\s+(\d+) input tokens$", out)
    assert len(snippets) == 10
    assert snippets[0][0] == 0, "the warm-up request is the cold one"
    assert all(cached > 0.8 * total for cached, total in snippets[1:]), "the batch reads the shared instruction"
    row = only_report(out)
    assert_consistent(row)
    assert (row.calls, row.cached) == (10, sum(c for c, _ in snippets))
    line = re.search(r"^Hit rate ([\d.]+) %: (\d+) of (\d+) input tokens from cache; saved ([\d.]+) USD", out, re.M)
    assert line, out
    assert (float(line.group(1)), int(line.group(2)), int(line.group(3))) == (row.hit_percent, row.cached, row.input)
    assert Decimal(line.group(4)) == row.saved > 0


def test_cost_report_writes_the_plot(tmp_path: Path) -> None:
    out = run_recipe("cost_report", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    plot = tmp_path / "output" / "cost_report.png"
    assert f"Wrote {plot}" in out
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and plot.stat().st_size > 10_000
    calls = re.findall(
        r"^\s*(\d+)  (chat|questions|one-off)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+(-?[\d.]+)$",
        out,
        re.M,
    )
    assert [int(c[0]) for c in calls] == list(range(1, 13))
    assert [c[1] for c in calls] == ["chat"] * 5 + ["questions"] * 4 + ["one-off"] * 3
    for c in calls:
        assert abs(Decimal(c[8]) - (Decimal(c[7]) - Decimal(c[6]))) <= Decimal("0.000001"), "saved, per call"
    row = only_report(out)
    assert_consistent(row)
    assert row.calls == 12
    assert row.input == sum(int(c[2]) for c in calls) and row.cached == sum(int(c[3]) for c in calls) > 0
    questions = [c for c in calls if c[1] == "questions"]
    assert all(int(c[3]) > 0.9 * int(c[2]) for c in questions), "the chat warmed the shared system prompt"


def test_why_did_my_cache_miss(tmp_path: Path) -> None:
    out = run_recipe("why_did_my_cache_miss", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    lint, _, run = out.partition("2. Six questions")
    assert "template variable (likely changes per call) '{now}' in the cached prefix" in lint
    assert re.search(r"timestamp '\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+' in the cached prefix", lint)
    assert "The fixed template: 0 findings." in lint
    warning = "WARNING cache_integrations.diagnostics: prompt cache miss (volatile_content) at messages[0]"
    assert out.count("prompt cache miss (") == 1 and out.count(warning) == 1, "one warning, for the one cause"
    broken_run, _, fixed_run = run.partition("3. The same questions")
    assert warning in broken_run and "prompt cache miss" not in fixed_run.split("hit rate before")[0]

    (broken,), (fixed,) = reports(out)
    for row in (broken, fixed):
        assert_consistent(row)
        assert row.calls == 6
    assert broken.hit_percent < 5, "the timestamp leaves only the words before it cacheable"
    assert fixed.cached > 0 and fixed.hit_percent > 75, "with the time moved to the user turn, calls 2-6 hit"
    before = re.search(r"hit rate before the fix\s+([\d.]+) %", out)
    after = re.search(r"hit rate after the fix\s+([\d.]+) %", out)
    assert before and after
    assert (float(before.group(1)), float(after.group(1))) == (broken.hit_percent, fixed.hit_percent)

    trace = tmp_path / "output" / "why_did_my_cache_miss.jsonl"
    assert len(trace.read_text(encoding="utf-8").splitlines()) == 6, "one trace line per call of the broken run"
    doctor = out.split("4. python -m cache_integrations doctor")[1]
    assert f"6 calls in 1 conversation(s); {broken.input} input tokens, {broken.cached} served from cache" in doctor
    causes = re.search(r"^volatile_content\s+(\d+)\s+(\d+)\s+\$([\d.]+)$", doctor, re.M)
    assert causes and int(causes.group(1)) == 5, "calls 2-6 each lost their prefix to the timestamp"


def test_llama_index_rag_and_agent(tmp_path: Path) -> None:
    out = run_recipe("llama_index_rag_and_agent", tmp_path)

    assert out.startswith(OFFLINE_GLM)
    query_part, _, rest = out.partition("\n2. ")
    chat_part, _, agent_part = rest.partition("\n3. ")
    query_table, stock_table, friendly_table, agent_table = reports(out)
    (query, stock, friendly, agent) = (t[0] for t in (query_table, stock_table, friendly_table, agent_table))
    for row in (query, stock, friendly, agent):
        assert_consistent(row)

    # 1. the query engine: LlamaIndex's Q&A prompt (and any shared leading section) cached from the second query
    queries = ints(r"^Q\d+\s+cached\s+(\d+) of\s+(\d+) input tokens \| \S", query_part)
    assert len(queries) == 4
    assert queries[0][0] == 0 and all(cached > 0 for cached, _ in queries[1:])
    assert (query.calls, query.cached, query.input) == (4, sum(c for c, _ in queries), sum(t for _, t in queries))

    # 2. the same conversation: the cache-friendly engine's hit rate is clearly higher
    summary = {
        m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4)), float(m.group(5)), m.group(6), m.group(7))
        for m in re.finditer(
            r"^(ContextChatEngine|CacheFriendlyContextChatEngine)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)"
            r"\s+\$([\d.]+)\s+\$([\d.]+)$",
            chat_part,
            re.M,
        )
    }
    for name, row in (("ContextChatEngine", stock), ("CacheFriendlyContextChatEngine", friendly)):
        assert summary[name] == (row.calls, row.input, row.cached, row.hit_percent, f"{row.cost}", f"{row.saved}")
        assert row.calls == 6
    assert friendly.hit_percent > 2 * stock.hit_percent and friendly.saved > stock.saved
    turns = ints(r"^T\d+\s+\S.*?\s(\d+)\s+(\d+)$", chat_part)
    assert len(turns) == 6
    assert sum(s for s, _ in turns) == stock.cached and sum(f for _, f in turns) == friendly.cached
    friendly_turns = [f for _, f in turns]
    assert friendly_turns[1:] == sorted(friendly_turns[1:]), "the cached history grows turn by turn"
    assert "Why: ContextChatEngine writes each turn's retrieved context at the top of the system message" in chat_part
    assert chat_part.count("prompt cache miss (system_prompt_changed) at messages[0]") == 1, "the stock engine's"
    assert "prompt cache miss" not in query_part + agent_part

    # 3. the agent: two tools, every model call after the first served from the cache
    steps = re.findall(
        r"^  step (\d+): model (calls (\w+)\(.*?\)|answers: .*?)\s+cached\s+(\d+) of\s+(\d+)", agent_part, re.M
    )
    assert [int(s[0]) for s in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 6
    assert {s[2] for s in steps if s[2]} == {"track_parcel", "handbook"}
    assert len(re.findall(r"^          tool \w+ -> ", agent_part, re.M)) == sum(1 for s in steps if s[2])
    cached = [int(s[3]) for s in steps]
    assert all(c > 0 for c in cached[1:]), "every step after the first is served from the cache"
    assert (agent.calls, agent.cached, agent.input) == (len(steps), sum(cached), sum(int(s[4]) for s in steps))
    assert agent.hit_percent > 70


def test_a_glm_key_sends_the_recipe_where_the_environment_says(tmp_path: Path) -> None:
    """With ZHIPUAI_API_KEY set the recipe leaves the emulator choice to ChatGLM's own env handling."""
    emulator = Emulator()
    with emulator.serve() as server:
        out = run_recipe(
            "lcel_long_system_prompt", tmp_path, ZHIPUAI_API_KEY="test-key", ZHIPUAI_BASE_URL=server.glm_base_url
        )
    assert out.splitlines()[0] == f"ZHIPUAI_API_KEY is set: running against the GLM API at {server.glm_base_url}"
    assert emulator.counters.requests_by_endpoint == {"glm": 10}
    assert only_report(out).cached == emulator.counters.cached_tokens > 0


def test_the_pdf_recipe_uploads_once_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """With a key the recipe talks to the API the environment names: here an emulator whose books we read."""
    emulator = Emulator()
    with emulator.serve() as server:
        out = run_recipe(
            "gemini_pdf_cache", tmp_path, GEMINI_API_KEY="test-key", GEMINI_BASE_URL=server.gemini_base_url
        )
    counters = emulator.counters
    assert (counters.files_uploaded, counters.files_alive) == (1, 0), "uploaded once, deleted at the end"
    assert (counters.caches_created, counters.caches_deleted, counters.caches_alive) == (1, 1, 0)
    assert only_report(out).cached == counters.cached_tokens_explicit > 0


def test_a_gemini_key_sends_the_recipe_where_the_environment_says(tmp_path: Path) -> None:
    emulator = Emulator()
    with emulator.serve() as server:
        out = run_recipe(
            "gemini_pinned_document", tmp_path, GOOGLE_API_KEY="test-key", GEMINI_BASE_URL=server.gemini_base_url
        )
    first = out.splitlines()[0]
    assert first == f"GOOGLE_API_KEY is set: running against the Gemini API at {server.gemini_base_url}"
    counters = emulator.counters
    assert (counters.caches_created, counters.caches_deleted, counters.caches_alive) == (1, 1, 0)
    assert only_report(out).cached == counters.cached_tokens_explicit > 0
