"""Per-call overhead of OpenTelemetry instrumentation: the same calls with and without `instrument=`.

Same workload, same run, clients interleaved round by round against one emulator server (loopback HTTP),
so drift hits all alike. Each call is timed twice: wall time, and the calling thread's CPU time (the
client's own work, instrumentation included; the emulator's and the waiting excluded: the steadier measure
on a shared machine). Clients: `ChatGLM.invoke` with a 1,700-token shared system prompt, plain and instrumented
(the OpenTelemetry SDK with a span processor that exports synchronously to a discarding exporter, and a
metric reader: every span and data point is built), with and without the miss diagnosis; and
`with_prompt_caching(ChatOpenAI)`, plain and instrumented. Overhead = median minus the plain median;
ratio = median over the plain median, for both measures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from cache_integrations.langchain import ChatGLM, with_prompt_caching
from cache_integrations.otel import Instrumentation
from cache_integrations.progress import progress_bar
from cache_integrations.testing import Emulator

SYSTEM = "You are the support assistant of ACME. Answer from the policy below.\n" + " ".join(
    f"Policy {i}: refunds are issued within 14 days of a return, to the original payment method." for i in range(90)
)


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Timing:
    name: str
    baseline: str
    median_ms: float
    p90_ms: float
    overhead_ms: float | None
    ratio: float | None
    cpu_median_ms: float
    cpu_overhead_ms: float | None
    cpu_ratio: float | None


def _instrumentation(diagnostics: bool) -> Instrumentation:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_Discard()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Instrumentation(tracer_provider=tracer_provider, meter_provider=meter_provider, diagnostics=diagnostics)


def _clients(server: Any) -> dict[str, tuple[str, Callable[[], object]]]:
    """name -> (baseline name, call)."""
    messages = [("system", SYSTEM), ("human", "How long do refunds take?")]

    def glm(**kwargs: Any) -> ChatGLM:
        return ChatGLM(model="glm-4.7", api_key="bench", base_url=server.glm_base_url, **kwargs)

    plain = glm()
    traced = glm(instrument=_instrumentation(True))
    traced_no_diag = glm(instrument=_instrumentation(False))
    clients: dict[str, tuple[str, Callable[[], object]]] = {
        "ChatGLM.invoke": ("ChatGLM.invoke", lambda: plain.invoke(messages)),
        "ChatGLM.invoke, instrumented": ("ChatGLM.invoke", lambda: traced.invoke(messages)),
        "ChatGLM.invoke, instrumented, no diagnosis": ("ChatGLM.invoke", lambda: traced_no_diag.invoke(messages)),
    }
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:  # pragma: no cover - the bench extra installs it
        return clients

    def openai() -> ChatOpenAI:
        return ChatOpenAI(model="gpt-4o-mini", api_key="bench", base_url=server.openai_base_url)  # type: ignore[arg-type]

    wrapped = with_prompt_caching(openai(), provider="openai")
    wrapped_traced = with_prompt_caching(openai(), provider="openai", instrument=_instrumentation(True))
    base = "with_prompt_caching(ChatOpenAI).invoke"
    clients[base] = (base, lambda: wrapped.invoke(messages))
    clients[f"{base}, instrumented"] = (base, lambda: wrapped_traced.invoke(messages))
    return clients


def measure(rounds: int = 300, warmup: int = 30) -> list[Timing]:
    emu = Emulator()
    with emu.serve() as server:
        clients = _clients(server)
        samples: dict[str, list[float]] = {name: [] for name in clients}
        cpu: dict[str, list[float]] = {name: [] for name in clients}
        with progress_bar("instrumentation overhead", warmup + rounds) as advance:
            for i in range(warmup + rounds):
                for name, (_, call) in clients.items():
                    start, start_cpu = time.perf_counter(), time.thread_time()
                    call()
                    elapsed, elapsed_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
                    if i >= warmup:
                        samples[name].append(elapsed * 1000)
                        cpu[name].append(elapsed_cpu * 1000)
                advance(1)
    medians = {n: statistics.median(s) for n, s in samples.items()}
    cpu_medians = {n: statistics.median(s) for n, s in cpu.items()}
    out = []
    for name, (baseline, _) in clients.items():
        own = name == baseline
        out.append(
            Timing(
                name,
                baseline,
                medians[name],
                statistics.quantiles(samples[name], n=10)[-1],
                None if own else medians[name] - medians[baseline],
                None if own else medians[name] / medians[baseline],
                cpu_medians[name],
                None if own else cpu_medians[name] - cpu_medians[baseline],
                None if own else cpu_medians[name] / cpu_medians[baseline],
            )
        )
    return out
