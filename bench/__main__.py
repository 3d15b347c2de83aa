"""Run every benchmark and write bench/results.md and bench/results.json."""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from cache_integrations.progress import progress_bar
from cache_integrations.testing.rules import GLM_RULES, OPENAI_RULES

from . import (
    anthropic,
    efficiency,
    gemini,
    gemini_foreign,
    hotpath,
    instrumentation,
    llama_index_chat,
    overhead,
    registry,
)
from . import openai as openai_bench
from .workloads import WORKLOADS

HERE = Path(__file__).parent


def _money(v: Decimal | None) -> str:
    return "n/a" if v is None else f"${v:.5f}"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300, help="overhead: timed calls per client")
    parser.add_argument("--hotpath-scale", type=float, default=1.0, help="hot path: fraction of the default rounds")
    args = parser.parse_args(argv)

    started = time.time()
    rules_sets = (("GLM (no minimum, 1-token steps)", GLM_RULES), ("OpenAI-style (1024 min, 128 steps)", OPENAI_RULES))
    with progress_bar("make bench", len(rules_sets) * len(WORKLOADS) + 9) as advance:  # on a terminal only
        eff = []
        for rules_name, rules in rules_sets:
            for w in WORKLOADS:
                eff.append(efficiency.measure(w, rules_name, rules))
                advance(1)
        gem = gemini.measure()
        advance(1)
        foreign = gemini_foreign.measure()
        advance(1)
        claude = anthropic.measure()
        advance(1)
        oai = openai_bench.measure()
        advance(1)
        chat_engines = llama_index_chat.measure()
        advance(1)
        lookups, herd = registry.measure()
        advance(1)
        timings = overhead.measure(rounds=args.rounds)
        advance(1)
        traced = instrumentation.measure(rounds=args.rounds)
        advance(1)
        hot = hotpath.measure(scale=args.hotpath_scale)
        advance(1)

    lines = [
        "# Benchmark results",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} on Python {platform.python_version()}, "
        f"{platform.machine()}; emulator token counts (approximate tokenizer).",
        "",
        "## Cache efficiency",
        "",
        "Efficiency = cached tokens / theoretical maximum (stable tokens already sent earlier, under the rules). "
        "*Plugin* sends the app's messages through ChatGLM with its layout step (RAG: documents ordered with "
        "`stable_order`); *baseline* sends the same messages with the layout step off.",
        "",
        "| workload | rules | requests | input tokens | max cacheable | cached (plugin) | cached (baseline) "
        "| efficiency plugin | efficiency baseline | cost plugin | cost baseline | cost without cache |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in eff:
        lines.append(
            f"| {r.workload} | {r.rules} | {r.requests} | {r.input_tokens} | {r.max_cacheable} | {r.cached_plugin} "
            f"| {r.cached_baseline} | {r.efficiency_plugin:.4f} | {r.efficiency_baseline:.4f} "
            f"| {_money(r.cost_plugin)} | {_money(r.cost_baseline)} | {_money(r.cost_no_cache)} |"
        )
    lines += ["", "Baseline perturbations (what a typical app does in each workload):", ""]
    lines += [f"- **{w.name}**: {w.description}; baseline: {w.perturbation}." for w in WORKLOADS]
    lines += [
        "",
        "## Gemini: 20 questions over one long document (explicit vs implicit caching)",
        "",
        gemini.__doc__.strip().split("\n\n")[1].replace("\n", " ") if gemini.__doc__ else "",
        "",
        "| mode | implicit cache | requests | input tokens | cached | efficiency | caches created "
        "| cost (incl. storage) | of which storage | cost without caching | net saved |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in gem:
        saved = None if g.cost is None or g.cost_without_caching is None else g.cost_without_caching - g.cost
        lines.append(
            f"| {g.mode} | {g.implicit} | {g.requests} | {g.input_tokens} | {g.cached_tokens} | {g.efficiency:.4f} "
            f"| {g.caches_created} | {_money(g.cost)} | {_money(g.storage_cost)} | {_money(g.cost_without_caching)} "
            f"| {_money(saved)} |"
        )
    lines += [
        "",
        "## ChatGoogleGenerativeAI: plugin, plain model, hand-made cache (create_context_cache)",
        "",
        gemini_foreign.__doc__.strip().split("\n\n")[1].replace("\n", " ") if gemini_foreign.__doc__ else "",
        "",
        *gemini_foreign.table(foreign),
        "",
        "## ChatAnthropic: plugin, plain model, AnthropicPromptCachingMiddleware",
        "",
        anthropic.__doc__.strip().split("\n\n")[1].replace("\n", " ") if anthropic.__doc__ else "",
        "",
        *anthropic.table(claude),
        "",
        "## OpenAI and DeepSeek: the user's ChatOpenAI / ChatDeepSeek with and without the plugin",
        "",
        openai_bench.__doc__.strip().split("\n\n")[1].replace("\n", " ") if openai_bench.__doc__ else "",
        "",
        "| provider | workload | row | requests | hits | input tokens | cached tokens | billed cost "
        "| cost without caching | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r.provider} | {r.workload} | {r.row} | {r.requests} | {r.hits} | {r.input_tokens} "
            f"| {r.cached_tokens} | {_money(r.cost)} | {_money(r.cost_without_caching)} "
            f"| {'n/a' if r.ratio is None else f'{r.ratio:.3f}'} |"
            for r in oai
        ),
        "",
        f"No best-peer row: {openai_bench.PEER}.",
    ]
    lines += [
        "",
        "## LlamaIndex chat over a document index: stock vs cache-friendly chat engine",
        "",
        "The same 8-turn conversation over a VectorStoreIndex of 20 documents (top-2 retrieval), GLM on the "
        "emulator. The stock ContextChatEngine puts retrieved context in the system message ahead of the history; "
        "CacheFriendlyContextChatEngine keeps system prompt and history first and puts context with the question in "
        "the newest user turn. Efficiency = cached / tokens forming a prefix an earlier request sent.",
        "",
        "| engine | requests | input tokens | cached | hit rate | efficiency |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['engine']} | {r['requests']} | {r['input_tokens']} | {r['cached_tokens']} | {r['hit_rate']:.3f} "
            f"| {r['efficiency']:.3f} |"
            for r in chat_engines
        ),
    ]
    lines += [
        "",
        "## Registries (one explicit cache per prefix across processes)",
        "",
        registry.__doc__.strip().split("\n\n")[1].replace("\n", " ") if registry.__doc__ else "",
        "",
        "| registry | warm-path lookup (µs per hit) |",
        "|---|---:|",
        *(f"| {x.registry} | {x.microseconds_per_hit:.1f} |" for x in lookups),
        "",
        "| thundering herd | requests | caches created | requests served from a cache | wall time (s) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {h.registry} | {h.requests} | {h.caches_created} | {h.requests_served_from_cache} | {h.seconds:.2f} |"
            for h in herd
        ),
    ]
    lines += [
        "",
        "## Per-call overhead (loopback HTTP to the emulator)",
        "",
        f"{args.rounds} interleaved calls per client after warm-up; overhead = median minus raw httpx on the "
        "same endpoint. The handler's miss diagnosis runs after each call on its worker thread and is settled "
        "outside the timed window (its CPU is in the hot-path section).",
        "",
        "| client | median ms | p90 ms | overhead vs raw httpx (ms) |",
        "|---|---:|---:|---:|",
    ]
    for t in timings:
        over = "—" if t.overhead_ms is None else f"{t.overhead_ms:+.3f}"
        lines.append(f"| {t.name} | {t.median_ms:.3f} | {t.p90_ms:.3f} | {over} |")
    lines += [
        "",
        "## OpenTelemetry instrumentation overhead (loopback HTTP to the emulator)",
        "",
        instrumentation.__doc__.strip().split("\n\n")[1].replace("\n", " ") if instrumentation.__doc__ else "",
        "",
        f"{args.rounds} interleaved calls per client after warm-up.",
        "",
        "| client | wall median ms | wall p90 ms | wall overhead (ms) | wall ratio "
        "| client CPU median ms | CPU overhead (ms) | CPU ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in traced:

        def signed(v: float | None) -> str:
            return "—" if v is None else f"{v:+.3f}"

        def times(v: float | None) -> str:
            return "—" if v is None else f"{v:.3f}"

        lines.append(
            f"| {t.name} | {t.median_ms:.3f} | {t.p90_ms:.3f} | {signed(t.overhead_ms)} | {times(t.ratio)} "
            f"| {t.cpu_median_ms:.3f} | {signed(t.cpu_overhead_ms)} | {times(t.cpu_ratio)} |"
        )
    lines += ["", *hotpath.report(hot)]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    (HERE / "results.json").write_text(
        json.dumps(
            _jsonable(
                {
                    "efficiency": [asdict(r) for r in eff],
                    "gemini": [asdict(g) for g in gem],
                    "gemini_foreign": [asdict(f) for f in foreign],
                    "anthropic": [asdict(c) for c in claude],
                    "openai": [{**asdict(r), "ratio": r.ratio} for r in oai],
                    "llama_index_chat_engines": chat_engines,
                    "registry_lookup": [asdict(x) for x in lookups],
                    "thundering_herd": [asdict(h) for h in herd],
                    "overhead": [asdict(t) for t in timings],
                    "instrumentation_overhead": [asdict(t) for t in traced],
                    "hotpath": asdict(hot),
                }
            ),
            indent=2,
        )
        + "\n"
    )
    print("\n".join(lines))
    print(f"\nwrote {HERE / 'results.md'} and {HERE / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
