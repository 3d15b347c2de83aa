"""``python -m cache_integrations.demo``: pick the backend, run the scenario, print and save the results."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CacheIntegrationsError
from ..langchain import ChatGLM
from ..testing import Emulator
from ._plot import write_cost_plot
from ._report import call_table, calls_document, part_stats, totals_table
from ._scenario import LabelledCall, LabellingUsageHandler, run_scenario

__all__ = ["main"]

DEFAULT_MODEL = "glm-4.7"
DEFAULT_OUT = "demo-output"
_OFFLINE_KEY = "demo-offline-key"
_MAX_TOKENS = 800


@dataclass(frozen=True)
class Backend:
    """Where the calls go: ``mode`` is ``"provider"`` or ``"emulator"``; ``banner`` says which and why."""

    llm: ChatGLM
    mode: str
    banner: str


def _chat_model(model: str, **connection: Any) -> ChatGLM:
    """ChatGLM as the demo uses it; no ``connection`` means ChatGLM's defaults (key and URL from the env).

    The demo measures input caching: thinking would only add output tokens and minutes of latency on
    the real API, and the output cap bounds a real run's cost. Neither changes what the cache does.
    """
    # mypy sees pydantic's aliases only; ChatGLM populates by field name too.
    return ChatGLM(model=model, thinking="disabled", max_tokens=_MAX_TOKENS, **connection)


@contextmanager
def open_backend(model: str) -> Iterator[Backend]:
    """The real GLM API when ``ZHIPUAI_API_KEY`` is set, else the emulator on loopback HTTP."""
    if os.environ.get("ZHIPUAI_API_KEY"):
        llm = _chat_model(model)
        yield Backend(llm, "provider", f"ZHIPUAI_API_KEY is set: running against the real GLM API at {llm.base_url}")
        return
    with Emulator().serve() as server:
        llm = _chat_model(model, api_key=_OFFLINE_KEY, base_url=server.glm_base_url)
        banner = (
            "No ZHIPUAI_API_KEY set: running offline on the built-in emulator over loopback HTTP "
            "(token counts from its approximate tokenizer)"
        )
        yield Backend(llm, "emulator", banner)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cache_integrations.demo",
        description="Prompt caching with ChatGLM in three realistic workloads: cached tokens, cost and savings.",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, type=Path, help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--model",
        default=os.environ.get("CACHE_DEMO_MODEL") or DEFAULT_MODEL,
        help=f"GLM model (default: $CACHE_DEMO_MODEL or {DEFAULT_MODEL})",
    )
    return parser.parse_args(argv)


def _print_report(calls: Sequence[LabelledCall], handler: LabellingUsageHandler) -> None:
    print("\nPer call (prompt and cached are input tokens; cost and saved in USD)\n")
    print(call_table(calls))
    print("\nTotals\n")
    print(totals_table(part_stats(calls), handler.total))
    print("\nCacheUsageCallbackHandler.report()\n")
    print(handler.report())


def _subtitle(backend: Backend, model: str, handler: LabellingUsageHandler) -> str:
    where = "real Zhipu GLM API" if backend.mode == "provider" else "offline emulator, approximate token counts"
    total = handler.total
    hit = f"{100 * total.hit_rate:.1f} % of prompt tokens cached"
    return f"{model} ({where}), {total.calls} calls, {hit}"


def _write_outputs(out: Path, calls: Sequence[LabelledCall], backend: Backend, model: str, subtitle: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plot, table = out / "cost.png", out / "calls.json"
    write_cost_plot(calls, plot, subtitle=subtitle)
    document = calls_document(calls, mode=backend.mode, model=model)
    table.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return [plot, table]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 on success, 1 when the provider (or the output directory) fails."""
    args = _parse_args(argv)
    handler = LabellingUsageHandler()
    try:
        with open_backend(args.model) as backend:
            print(backend.banner)
            print(f"Model: {args.model}\n")
            calls = run_scenario(backend.llm, handler)
    except CacheIntegrationsError as exc:
        print(f"error: the model call failed: {exc}", file=sys.stderr)
        return 1
    _print_report(calls, handler)
    try:
        paths = _write_outputs(args.out, calls, backend, args.model, _subtitle(backend, args.model, handler))
    except OSError as exc:
        print(f"error: cannot write the outputs to {args.out}: {exc}", file=sys.stderr)
        return 1
    print()
    for path in paths:
        print(f"Wrote {path}")
    return 0
