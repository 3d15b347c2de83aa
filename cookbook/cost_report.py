"""A cost report: what caching saved, call by call, as a table and a plot.

A small mixed workload runs on ChatGLM under one usage handler:

* ``chat``: a five-turn support conversation over the handbook system prompt (history grows);
* ``questions``: four one-shot questions with the same system prompt (the chat already warmed it);
* ``one-off``: three short unrelated prompts with no shared prefix (nothing to cache).

Every finished call is a `CallRecord` in ``handler.calls`` (usage as the provider reported it, cost
priced with and without caching); the recipe prints them as a table and plots the cumulative cost
with and without caching to ``cost_report.png`` (matplotlib's Agg renderer: no display needed).

Run it:
    python cookbook/cost_report.py                        # offline, on the emulator
    ZHIPUAI_API_KEY=... python cookbook/cost_report.py    # the real GLM API
Writes ``cookbook/output/cost_report.png`` (``COOKBOOK_OUTPUT_DIR`` to change the directory).
"""

from __future__ import annotations

from itertools import accumulate
from pathlib import Path

from _common import OUTPUT_DIR, glm_connection, handbook
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from matplotlib.figure import Figure

from cache_integrations import CallRecord
from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

SYSTEM = SystemMessage("You are Kestrel's support assistant. Answer from this handbook.\n\n" + handbook())
CHAT = [
    "A merchant's parcel has had no scan for 9 days. What now?",
    "And when does it count as lost?",
    "Can they file a claim already?",
    "What documents will the claim need?",
    "Write a two-sentence reply to the merchant.",
]
QUESTIONS = [
    "What does the Growth plan cost?",
    "How long are request logs kept?",
    "When is the deploy freeze?",
    "How many webhook endpoints can a workspace have?",
]
ONE_OFF = ["Translate 'parcel' into German.", "What is 17 * 23?", "Suggest a name for a shipping cat."]


def run_workload(llm: ChatGLM) -> list[tuple[str, int]]:
    """Runs the three parts; returns (part, number of calls) in order."""
    # A session id per conversation tells the handler's miss diagnostics which calls belong together;
    # without it, it guesses from shared content and takes the first question for a rewritten chat.
    history: list[BaseMessage] = [SYSTEM]
    for turn in CHAT:
        history.append(HumanMessage(turn))
        history.append(llm.invoke(history, config={"metadata": {"session_id": "chat"}}))
    for n, question in enumerate(QUESTIONS):
        llm.invoke([SYSTEM, HumanMessage(question)], config={"metadata": {"session_id": f"question-{n}"}})
    for prompt in ONE_OFF:
        llm.invoke(prompt)
    return [("chat", len(CHAT)), ("questions", len(QUESTIONS)), ("one-off", len(ONE_OFF))]


def call_table(calls: list[CallRecord], parts: list[str]) -> str:
    header = "{:>2}  {:<9} {:>5} {:>6} {:>5} {:>6} {:>9} {:>9} {:>9}".format(
        "#", "part", "input", "cached", "hit %", "output", "cost", "no-cache", "saved"
    )
    lines = [header, "-" * len(header)]
    for n, (call, part) in enumerate(zip(calls, parts, strict=True), 1):
        u, c = call.usage, call.cost
        money = f"{c.total:9.6f} {c.without_caching:9.6f} {c.saved:9.6f}" if c else f"{'n/a':>9} {'n/a':>9} {'n/a':>9}"
        lines.append(
            f"{n:>2}  {part:<9} {u.input_tokens:>5} {u.cache_read_tokens:>6} {100 * u.hit_rate:>5.1f} "
            f"{u.output_tokens:>6} {money}"
        )
    return "\n".join(lines)


def write_plot(calls: list[CallRecord], parts: list[str], path: Path) -> None:
    with_caching = list(accumulate(float(c.cost.total) for c in calls if c.cost))
    without = list(accumulate(float(c.cost.without_caching) for c in calls if c.cost))
    x = range(1, len(with_caching) + 1)
    fig = Figure(figsize=(9, 5), layout="constrained")  # a bare Figure renders with Agg, headless
    ax = fig.subplots()
    ax.plot(x, without, "o--", color="grey", label="without caching")
    ax.plot(x, with_caching, "o-", color="tab:blue", label="with caching")
    ax.fill_between(x, with_caching, without, color="tab:green", alpha=0.15, label="saved")
    for n in range(1, len(parts)):  # a dotted line where the part changes
        if parts[n] != parts[n - 1]:
            ax.axvline(n + 0.5, color="grey", lw=0.8, ls=":")
            ax.text(n + 0.6, without[-1] * 0.95, parts[n], va="top")
    ax.text(1, without[-1] * 0.95, parts[0], va="top")
    ax.set(xlabel="call", ylabel="cumulative cost (USD)", title="Cumulative cost with and without prompt caching")
    ax.set_xticks(list(x))
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110)


def main() -> None:
    with glm_connection() as connection:
        llm = ChatGLM(model="glm-4.7", thinking="disabled", max_tokens=300, **connection)
        with get_cache_usage_callback() as handler:
            plan = run_workload(llm)

    calls = handler.calls  # in completion order, which is call order here (no concurrency)
    if any(call.cost is None for call in calls):
        raise SystemExit(f"no known price for {llm.model}: pass prices=PriceBook(...) to get_cache_usage_callback")
    parts = [part for part, count in plan for _ in range(count)]
    print()
    print(call_table(calls, parts))
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    plot = OUTPUT_DIR / "cost_report.png"
    write_plot(calls, parts, plot)
    print(f"\nWrote {plot}\n")
    print(handler.report())


if __name__ == "__main__":
    main()
