"""``python -m cache_integrations.demo``: pick the backends, run the scenario, print and save the results."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import CacheIntegrationsError
from ..langchain import ChatGemini, ChatGLM
from ..testing import Emulator, FakeClock, RunningServer
from ._plot import write_cost_plot
from ._report import call_table, calls_document, part_stats, pinned_summary, totals_table
from ._scenario import LabellingUsageHandler, Models, Scenario, run_scenario

__all__ = ["main"]

DEFAULT_MODEL = "glm-4.7"
GEMINI_MODEL = "gemini-2.5-flash"
DEFAULT_OUT = "demo-output"
_OFFLINE_KEY = "demo-offline-key"
_GEMINI_KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
_MAX_TOKENS = 800


@dataclass(frozen=True)
class Backend:
    """Where the calls go, per model: a mode is ``"provider"`` or ``"emulator"``; ``banner`` says which and why."""

    models: Models
    mode: str
    gemini_mode: str
    banner: tuple[str, ...]

    @property
    def modes(self) -> dict[str, str]:
        return {"glm": self.mode, "gemini": self.gemini_mode}


def _chat_model(model: str, **connection: Any) -> ChatGLM:
    """ChatGLM as the demo uses it; no ``connection`` means ChatGLM's defaults (key and URL from the env).

    The demo measures input caching: thinking would only add output tokens and minutes of latency on
    the real API, and the output cap bounds a real run's cost. Neither changes what the cache does.
    """
    # mypy sees pydantic's aliases only; ChatGLM populates by field name too.
    return ChatGLM(model=model, thinking="disabled", max_tokens=_MAX_TOKENS, **connection)


def _gemini_model(**connection: Any) -> ChatGemini:
    """ChatGemini as the demo uses it (thinking off and the output capped, as for GLM)."""
    return ChatGemini(
        model=GEMINI_MODEL,
        cache_registry="memory",  # the demo's cache is known to this process only, never the user's cache dir
        thinking_budget=0,
        max_tokens=_MAX_TOKENS,
        **connection,
    )


def _glm_backend(model: str, server: RunningServer | None) -> tuple[ChatGLM, str, str]:
    if server is None:
        llm = _chat_model(model)
        return llm, "provider", f"ZHIPUAI_API_KEY is set: running against the real GLM API at {llm.base_url}"
    llm = _chat_model(model, api_key=_OFFLINE_KEY, base_url=server.glm_base_url)
    banner = (
        "No ZHIPUAI_API_KEY set: running offline on the built-in emulator over loopback HTTP "
        "(token counts from its approximate tokenizer)"
    )
    return llm, "emulator", banner


def _gemini_backend(
    key_var: str | None, emulator: Emulator, server: RunningServer | None, *, shared: bool
) -> tuple[ChatGemini, str, list[str]]:
    if server is None:
        llm = _gemini_model()  # key from GEMINI_API_KEY or GOOGLE_API_KEY, URL from GEMINI_BASE_URL
        return (
            llm,
            "provider",
            [f"{key_var} is set: the Gemini part runs against the real Gemini API at {llm.base_url}"],
        )
    llm = _gemini_model(api_key=_OFFLINE_KEY, base_url=server.gemini_base_url)
    # The emulator stamps the cache's expireTime from its own clock; judge expiry on the same clock.
    llm.cache_manager.clock = emulator.clock.time
    which = "the same" if shared else "the built-in"
    banner = [f"No {' or '.join(_GEMINI_KEY_VARS)} set: the Gemini part runs on {which} emulator"]
    if isinstance(emulator.clock, FakeClock):
        banner.append(f"(its clock stands at {_utc(emulator.clock.time())}, so every run prints the same cache expiry)")
    return llm, "emulator", banner


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


@contextmanager
def open_backend(model: str, emulator: Emulator | None = None) -> Iterator[Backend]:
    """Each provider whose key is set runs for real; the others share one emulator on loopback HTTP.

    GLM needs ``ZHIPUAI_API_KEY``, Gemini ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY``. ``emulator`` is the
    one to serve (tests pass theirs to inspect it); by default a fresh one on a fixed clock, so every
    offline run prints the same cache expiry.
    """
    glm_real = bool(os.environ.get("ZHIPUAI_API_KEY"))
    gemini_key = next((name for name in _GEMINI_KEY_VARS if os.environ.get(name)), None)
    emu = emulator if emulator is not None else Emulator(clock=FakeClock())
    with ExitStack() as stack:
        server = None if glm_real and gemini_key else stack.enter_context(emu.serve())
        glm, glm_mode, glm_banner = _glm_backend(model, None if glm_real else server)
        gemini_server = None if gemini_key else server
        gemini, gemini_mode, gemini_banner = _gemini_backend(gemini_key, emu, gemini_server, shared=not glm_real)
        yield Backend(Models(glm, gemini), glm_mode, gemini_mode, (glm_banner, *gemini_banner))


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cache_integrations.demo",
        description=(
            "Prompt caching with ChatGLM in three realistic workloads and an explicit Gemini cache with "
            "ChatGemini: cached tokens, cost and savings."
        ),
    )
    parser.add_argument("--out", default=DEFAULT_OUT, type=Path, help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--model",
        default=os.environ.get("CACHE_DEMO_MODEL") or DEFAULT_MODEL,
        help=f"GLM model (default: $CACHE_DEMO_MODEL or {DEFAULT_MODEL})",
    )
    return parser.parse_args(argv)


def _print_report(scenario: Scenario, handler: LabellingUsageHandler) -> None:
    print("\nPer call (prompt, cached and written are input tokens; cost and saved in USD)\n")
    print(call_table(scenario.calls))
    print("\nTotals (cost includes storage; saved is net of cache writes and storage)\n")
    stats = part_stats(scenario.calls)
    print(totals_table(stats, handler.total))
    gemini = next((s for s in stats if s.model == "gemini"), None)
    if scenario.pinned is not None and gemini is not None:
        print()
        print(pinned_summary(scenario.pinned, gemini))
    print("\nCacheUsageCallbackHandler.report()\n")
    print(handler.report())


_WHERE = {
    ("emulator", "emulator"): "offline emulator, approximate token counts",
    ("provider", "provider"): "real Zhipu GLM and Gemini APIs",
    ("provider", "emulator"): "real Zhipu GLM API; Gemini on the emulator",
    ("emulator", "provider"): "GLM on the emulator; real Gemini API",
}


def _subtitle(backend: Backend, model: str, handler: LabellingUsageHandler) -> str:
    where = _WHERE[backend.mode, backend.gemini_mode]
    total = handler.total
    hit = f"{100 * total.hit_rate:.1f} % of prompt tokens cached"
    return f"{model} and {GEMINI_MODEL} ({where}), {total.calls} calls, {hit}"


def _write_outputs(out: Path, scenario: Scenario, backend: Backend, model: str, subtitle: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    plot, table = out / "cost.png", out / "calls.json"
    write_cost_plot(scenario.calls, plot, subtitle=subtitle)
    models = {"glm": model, "gemini": GEMINI_MODEL}
    document = calls_document(scenario, modes=backend.modes, models=models)
    table.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return [plot, table]


# What the demo imports after its calls (the plot) or only to serve the emulator: checked up front, so a
# missing optional dependency stops the demo before it makes (and bills) any call.
_DEPENDENCIES = {"matplotlib": "the cost plot", "uvicorn": "the emulator's loopback server"}


def missing_dependencies() -> list[str]:
    """The demo's optional dependencies that are not installed, each with what needs it."""
    return [f"{name} ({why})" for name, why in _DEPENDENCIES.items() if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None, *, emulator: Emulator | None = None) -> int:
    """Run the demo; 0 on success, 1 when a provider (or the output directory) fails, 2 when an optional
    dependency is missing (checked before any call).

    ``emulator`` serves the providers that have no API key (default: a fresh `Emulator` on a fixed
    clock); pass one to inspect what the demo did to it.
    """
    args = _parse_args(argv)
    if missing := missing_dependencies():
        print(
            f"error: the demo needs {', '.join(missing)}. Install them with: "
            'pip install "cache-integrations[demo]" (or run `make demo`, which does)',
            file=sys.stderr,
        )
        return 2
    handler = LabellingUsageHandler()
    try:
        with open_backend(args.model, emulator) as backend:
            print("\n".join(backend.banner))
            print(f"Models: {args.model} (GLM parts), {GEMINI_MODEL} (Gemini part)\n")
            scenario = run_scenario(backend.models, handler)
    except CacheIntegrationsError as exc:
        print(f"error: the model call failed: {exc}", file=sys.stderr)
        return 1
    _print_report(scenario, handler)
    try:
        paths = _write_outputs(args.out, scenario, backend, args.model, _subtitle(backend, args.model, handler))
    except OSError as exc:
        print(f"error: cannot write the outputs to {args.out}: {exc}", file=sys.stderr)
        return 1
    print()
    for path in paths:
        print(f"Wrote {path}")
    return 0
