"""OpenTelemetry for every model call: a span under the GenAI semantic conventions, token metrics with
cache token types, and this package's cache facts. Needs the ``otel`` extra (opentelemetry-api).

    import cache_integrations.otel
    cache_integrations.otel.instrument()   # once per process, after your TracerProvider / MeterProvider

or per model: ``ChatGLM(..., instrument=True)``, ``with_prompt_caching(model, instrument=True)``,
``PromptCachingMiddleware(instrument=True)``, ``GLM(..., instrument=True)``.

A call's span is named ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (``chat glm-4.7``,
``generate_content gemini-2.5-flash``), kind CLIENT, child of the caller's current span, and carries
`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.response.id`, `gen_ai.response.finish_reasons`, `gen_ai.conversation.id`, `gen_ai.usage.input_tokens`
(cached tokens included), `gen_ai.usage.output_tokens`, `gen_ai.usage.cache_read.input_tokens`,
`gen_ai.usage.cache_creation.input_tokens`, `server.address` / `server.port`, and on failure `error.type` with
an ERROR status. This package's own attributes: `cache_integrations.cost.usd`,
`cache_integrations.cost_without_caching.usd`, `cache_integrations.saved.usd`, `cache_integrations.storage.usd`,
`cache_integrations.storage.token_hours`, `cache_integrations.cache.name`, `cache_integrations.cache.created`,
and for a diagnosed miss `cache_integrations.miss.cause`, `.miss.message_index`, `.miss.char_offset`,
`.miss.lost_tokens`, `.miss.lost.usd`, `.miss.fix`, and `.miss.provider_reason` when the provider's own cache
diagnostics answered (`cache_integrations.server_diagnostics`). No prompt or answer text unless ``capture_content=True``
(or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``): then `gen_ai.input.messages`,
`gen_ai.output.messages` and the miss's detail.

Metrics: `gen_ai.client.token.usage` (histogram, ``{token}``) with `gen_ai.token.type` ``input``, ``output``
and the cache types ``cache_read`` and ``cache_creation`` (subsets of ``input``: filter on the type, never
sum across types), and `gen_ai.client.operation.duration` (seconds).

Alongside other GenAI instrumentation (``mode="auto"``, the default), each call's tokens are counted once:

- the current span is already another instrumentation's model-call span (its `gen_ai.operation.name` is
  a model operation, or its `openinference.span.kind` is ``LLM``): no new span; the cache attributes above
  are added to that span, and only the cache token types are recorded;
- openllmetry's LangChain / LlamaIndex instrumentation owns the call (it sets the
  ``suppress_language_model_instrumentation`` context key and keeps its own span): our span is named
  ``cache_integrations {model}``, kind INTERNAL, with only the cache attributes and no `gen_ai.usage.*`
  (openllmetry's span has them), and only the cache token types are recorded;
- OpenTelemetry's ``suppress_instrumentation`` key: nothing at all;
- otherwise (OpenInference's LangChain tracer, whose spans use `llm.token_count.*` and are never made
  current, and no other GenAI instrumentation): our full GenAI span.

``mode="span"`` always emits the full span; ``mode="attributes"`` never emits one and adds the cache
attributes to whatever span is current.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, get_args

from .diagnostics import CacheDiagnostics
from .errors import ConfigurationError
from .messages import ChatRequest, Message, TextPart
from .observe import CallFacts, set_process_instrumentation
from .pricing import PriceBook, default_price_book

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the otel extra is missing
    raise ImportError('cache_integrations.otel needs OpenTelemetry: pip install "cache-integrations[otel]"') from exc

__all__ = [
    "CACHE_TOKEN_TYPES",
    "Instrumentation",
    "Mode",
    "ModelCall",
    "instrument",
    "operation_name",
    "provider_name",
    "uninstrument",
]

logger = logging.getLogger("cache_integrations.otel")

Mode = Literal["auto", "span", "attributes"]

CACHE_TOKEN_TYPES = ("cache_read", "cache_creation")
"""The `gen_ai.token.type` values this package adds to ``input`` and ``output`` (both subsets of input)."""

# The semantic conventions' advisory bucket boundaries.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

_MODEL_OPERATIONS = frozenset(("chat", "text_completion", "generate_content"))
_SUPPRESS_LANGUAGE_MODEL_KEY = "suppress_language_model_instrumentation"  # openllmetry's context key
_SUPPRESS_KEY: Any = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
_CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# Price provider ids (and the any-model layer's provider names) to `gen_ai.provider.name`: the conventions'
# well-known values where one applies, a value in their style otherwise.
_PROVIDER_NAMES = {
    "openai": "openai",
    "openai_compatible": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "google_genai": "gcp.gemini",
    "deepseek": "deepseek",
    "zhipuai": "zhipu_ai",
    "zai": "z_ai",
    "dashscope": "dashscope",
}


def provider_name(provider: str | None, server_address: str | None = None) -> str:
    """`gen_ai.provider.name` for a price provider id: ``gcp.gemini`` (``gcp.vertex_ai`` on
    aiplatform.googleapis.com), ``openai``, ``anthropic``, ``deepseek``, ``zhipu_ai``, ``z_ai`` ..."""
    name = _PROVIDER_NAMES.get(provider or "", provider or "unknown")
    if name == "gcp.gemini" and server_address and "aiplatform.googleapis.com" in server_address:
        return "gcp.vertex_ai"
    return name


def operation_name(provider: str | None) -> str:
    """`gen_ai.operation.name`: ``generate_content`` for Gemini's generateContent, ``chat`` otherwise."""
    return "generate_content" if provider in ("google", "google_genai") else "chat"


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.role == "tool":
        text = message.content if isinstance(message.content, str) else message.text
        return [{"type": "tool_call_response", "id": message.tool_call_id, "response": text}]
    content = message.content
    texts = [content] if isinstance(content, str) else [p.text for p in content if isinstance(p, TextPart)]
    parts.extend({"type": "text", "content": t} for t in texts if t)
    parts.extend(
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in message.tool_calls
    )
    return parts


def _messages_json(messages: Sequence[Message], finish_reason: str | None = None) -> str:
    out = []
    for m in messages:
        item: dict[str, Any] = {"role": m.role, "parts": _parts(m)}
        if finish_reason is not None:
            item["finish_reason"] = finish_reason
        out.append(item)
    return json.dumps(out, ensure_ascii=False, default=str)


class Instrumentation:
    """Spans and metrics for model calls. Thread-safe; one per process is usual (`instrument()`).

    `tracer_provider` / `meter_provider` default to OpenTelemetry's global ones. `prices` price the
    calls (default: genai-prices). `diagnostics` explains misses on the span (True: a `CacheDiagnostics`
    of its own that logs nothing; False: off; or yours). `mode`: see the module docs. `clock` measures
    the operation duration (monotonic seconds).
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        capture_content: bool | None = None,
        prices: PriceBook | None = None,
        diagnostics: CacheDiagnostics | bool = True,
        mode: Mode = "auto",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if mode not in get_args(Mode):
            raise ConfigurationError(f"Instrumentation: mode {mode!r} is not one of 'auto', 'span', 'attributes'")
        if capture_content is None:
            capture_content = os.environ.get(_CAPTURE_ENV, "").strip().lower() in ("1", "true", "yes")
        from . import __version__

        self.capture_content = capture_content
        self.mode = mode
        self.clock = clock
        self.prices = prices or default_price_book()
        if isinstance(diagnostics, CacheDiagnostics):
            self.diagnostics: CacheDiagnostics | None = diagnostics
        else:
            self.diagnostics = CacheDiagnostics(warn=False, prices=self.prices) if diagnostics else None
        self.tracer = trace.get_tracer("cache_integrations", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("cache_integrations", __version__, meter_provider=meter_provider)
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.operation_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )

    def __repr__(self) -> str:
        return f"Instrumentation(mode={self.mode!r}, capture_content={self.capture_content})"

    def start(
        self,
        *,
        provider: str | None,
        model: str,
        session: str | None = None,
        server: tuple[str, int] | None = None,
    ) -> ModelCall | None:
        """Begin one model call (None when instrumentation is suppressed in the current context)."""
        if _SUPPRESS_KEY is not None and otel_context.get_value(_SUPPRESS_KEY):
            return None
        operation = operation_name(provider)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider_name(provider, server[0] if server else None),
            "gen_ai.request.model": model,
        }
        if server is not None:
            attrs["server.address"], attrs["server.port"] = server
        current = trace.get_current_span()
        target: Span | None = None
        span: Span | None = None
        owns_usage = False
        if self.mode == "attributes":
            target = current if current.is_recording() else None
        elif self.mode == "auto" and _is_model_span(current):
            target = current
        elif self.mode == "auto" and otel_context.get_value(_SUPPRESS_LANGUAGE_MODEL_KEY):
            span = self.tracer.start_span(f"cache_integrations {model}", kind=SpanKind.INTERNAL, attributes=attrs)
        else:
            owns_usage = True
            span_attrs = dict(attrs)
            if session:
                span_attrs["gen_ai.conversation.id"] = session
            span = self.tracer.start_span(f"{operation} {model}", kind=SpanKind.CLIENT, attributes=span_attrs)
        return ModelCall(self, span, target, owns_usage, attrs, self.clock())


def _is_model_span(span: Span) -> bool:
    """Another instrumentation's span for this very model call (readable SDK spans only)."""
    if not span.is_recording():
        return False
    attrs = getattr(span, "attributes", None)
    if not isinstance(attrs, Mapping):
        return False
    return attrs.get("gen_ai.operation.name") in _MODEL_OPERATIONS or attrs.get("openinference.span.kind") == "LLM"


class ModelCall:
    """The OpenTelemetry side of one model call (created by `Instrumentation.start`)."""

    __slots__ = ("attrs", "instrumentation", "owns_usage", "span", "started", "target")

    def __init__(
        self,
        instrumentation: Instrumentation,
        span: Span | None,
        target: Span | None,
        owns_usage: bool,
        attrs: dict[str, Any],
        started: float,
    ) -> None:
        self.instrumentation = instrumentation
        self.span = span
        self.target = target
        self.owns_usage = owns_usage
        self.attrs = attrs
        self.started = started

    @contextmanager
    def current(self) -> Iterator[None]:
        """Make the call's own span current (nothing when it enriches another span)."""
        if self.span is None:
            yield
            return
        with trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield

    def end(
        self,
        facts: CallFacts | None,
        *,
        response_model: str | None = None,
        finish_reasons: Sequence[str] = (),
        response_id: str | None = None,
        request: ChatRequest | None = None,
        output: Message | None = None,
    ) -> None:
        try:
            self._end(facts, response_model, finish_reasons, response_id, request, output)
        except Exception:  # telemetry never fails the user's call
            logger.warning("cache_integrations: could not record a model call's telemetry", exc_info=True)
            if self.span is not None:
                self.span.end()

    def _end(
        self,
        facts: CallFacts | None,
        response_model: str | None,
        finish_reasons: Sequence[str],
        response_id: str | None,
        request: ChatRequest | None,
        output: Message | None,
    ) -> None:
        inst = self.instrumentation
        metric_attrs = dict(self.attrs)
        if response_model:
            metric_attrs["gen_ai.response.model"] = response_model
        ours = _fact_attributes(facts, inst.capture_content) if facts is not None else {}
        usage = facts.usage if facts is not None else None
        if usage is not None:
            ours["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
            ours["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        if self.span is not None:
            attrs: dict[str, Any] = dict(ours)
            if response_model:
                attrs["gen_ai.response.model"] = response_model
            if self.owns_usage:
                if response_id:
                    attrs["gen_ai.response.id"] = response_id
                if finish_reasons:
                    attrs["gen_ai.response.finish_reasons"] = list(finish_reasons)
                if usage is not None:
                    attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
                    attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
                    if usage.reasoning_tokens:
                        attrs["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
                if inst.capture_content and request is not None:
                    attrs["gen_ai.input.messages"] = _messages_json(request.messages)
                if inst.capture_content and output is not None:
                    reason = finish_reasons[0] if finish_reasons else None
                    attrs["gen_ai.output.messages"] = _messages_json([output], reason)
            else:  # another instrumentation's span has the GenAI usage: no gen_ai.usage.* here
                attrs = {k: v for k, v in attrs.items() if not k.startswith("gen_ai.usage.")}
            self.span.set_attributes(attrs)
            self.span.end()
        elif self.target is not None and self.target.is_recording():
            self.target.set_attributes(ours)
        if usage is not None:
            types = [("cache_read", usage.cache_read_tokens), ("cache_creation", usage.cache_write_tokens)]
            if self.owns_usage:
                types = [("input", usage.input_tokens), ("output", usage.output_tokens), *types]
            for token_type, count in types:
                inst.token_usage.record(count, {**metric_attrs, "gen_ai.token.type": token_type})
        if self.owns_usage:
            inst.operation_duration.record(max(inst.clock() - self.started, 0.0), metric_attrs)

    def fail(self, error: BaseException) -> None:
        error_type = type(error).__qualname__
        try:
            if self.span is not None:
                self.span.set_attribute("error.type", error_type)
                self.span.set_status(Status(StatusCode.ERROR, error_type))
                self.span.end()
            if self.owns_usage:
                inst = self.instrumentation
                attrs = {**self.attrs, "error.type": error_type}
                inst.operation_duration.record(max(inst.clock() - self.started, 0.0), attrs)
        except Exception:  # pragma: no cover - telemetry never fails the user's call
            logger.warning("cache_integrations: could not record a failed model call", exc_info=True)


def _fact_attributes(facts: CallFacts, capture_content: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"cache_integrations.storage.token_hours": facts.usage.cache_storage_token_hours}
    cost = facts.cost
    if cost is not None:
        out["cache_integrations.cost.usd"] = float(cost.total)
        out["cache_integrations.cost_without_caching.usd"] = float(cost.without_caching)
        out["cache_integrations.saved.usd"] = float(cost.saved)
        out["cache_integrations.storage.usd"] = float(cost.storage)
    if facts.cache:
        out["cache_integrations.cache.name"] = str(facts.cache.get("name") or "")
        out["cache_integrations.cache.created"] = bool(facts.cache.get("created"))
    d = facts.diagnosis
    if d is not None and d.cause:
        out["cache_integrations.miss.cause"] = d.cause
        out["cache_integrations.miss.lost_tokens"] = d.lost_tokens
        out["cache_integrations.miss.fix"] = d.fix
        if d.message_index is not None:
            out["cache_integrations.miss.message_index"] = d.message_index
        if d.char_offset is not None:
            out["cache_integrations.miss.char_offset"] = d.char_offset
        if d.lost_usd is not None:
            out["cache_integrations.miss.lost.usd"] = float(d.lost_usd)
        if capture_content:  # the detail may quote the prompt (the timestamp that broke it)
            out["cache_integrations.miss.detail"] = d.detail
    if d is not None and d.provider_reason:
        out["cache_integrations.miss.provider_reason"] = d.provider_reason
    return out


def instrument(
    *,
    tracer_provider: Any = None,
    meter_provider: Any = None,
    capture_content: bool | None = None,
    prices: PriceBook | None = None,
    diagnostics: CacheDiagnostics | bool = True,
    mode: Mode = "auto",
) -> Instrumentation:
    """Instrument every model call of this package's models and wrappers in this process (those created
    with ``instrument=False`` excepted). Call it once, after configuring OpenTelemetry; calling it again
    replaces the settings. Returns the `Instrumentation`."""
    instrumentation = Instrumentation(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_content=capture_content,
        prices=prices,
        diagnostics=diagnostics,
        mode=mode,
    )
    set_process_instrumentation(instrumentation)
    return instrumentation


def uninstrument() -> None:
    """Stop the process-wide instrumentation (models created with ``instrument=True`` keep theirs)."""
    set_process_instrumentation(None)
