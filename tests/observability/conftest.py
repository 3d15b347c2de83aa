"""OpenTelemetry SDK in memory: every test gets its own tracer and meter providers (never the global ones)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cache_integrations.langchain import ChatGLM
from cache_integrations.otel import Instrumentation, uninstrument
from cache_integrations.testing import Emulator

SECRET = "sk-emulated-secret-0123456789"


@dataclass
class Telemetry:
    """An in-memory OpenTelemetry setup and the instrumentation over it."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    clock: list[float] = field(default_factory=lambda: [100.0])

    def instrumentation(self, **kwargs: Any) -> Instrumentation:
        return Instrumentation(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            clock=lambda: self.clock[0],
            **kwargs,
        )

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def token_points(self) -> list[tuple[str, int, dict[str, Any]]]:
        """(token type, sum, attributes) of every `gen_ai.client.token.usage` data point."""
        out = []
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == "gen_ai.client.token.usage":
                        for p in metric.data.data_points:
                            attrs = dict(p.attributes or {})
                            out.append((str(attrs["gen_ai.token.type"]), int(p.sum), attrs))
        return out

    def token_sum(self, token_type: str) -> int:
        return sum(total for t, total, _ in self.token_points() if t == token_type)


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Telemetry(exporter, reader, tracer_provider, meter_provider)
    uninstrument()
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def emu() -> Emulator:
    return Emulator()


def chat_glm(emu: Emulator, **kwargs: Any) -> ChatGLM:
    transport = emu.transport()
    return ChatGLM(
        api_key=SECRET,
        base_url="http://emulator/api/paas/v4",
        http_client=httpx.Client(transport=transport),
        http_async_client=httpx.AsyncClient(transport=transport),
        **kwargs,
    )
