"""One model call's cache facts, where tracing tools look: LangSmith metadata and OpenTelemetry spans.

Every model call of this package's models and wrappers goes through a `CallObservation`:

    obs = observe_call(instrument, provider="zhipuai", model="glm-4.7", request=request, layout=True)
    with obs.active():                       # the call's span is current while the request runs
        response = client.chat(request)      # (exceptions: obs.fail(exc); raise)
    facts = obs.finish(usage=..., response_model=..., cache=..., finish_reasons=(...))

`finish` prices the call, adds the miss diagnosis when instrumentation with diagnostics is on, ends the
OpenTelemetry span (when instrumented) and returns the `CallFacts`, which adapters attach to the response:
``response_metadata["cache_integrations"]`` (LangChain, shown by LangSmith) via `CallFacts.as_metadata()`.

Nothing here imports OpenTelemetry: without instrumentation a call costs one price lookup (memoized).
`cache_integrations.otel` holds the spans and metrics; `instrument()` there turns them on process-wide.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .accounting import provider_price_ids
from .diagnostics import Diagnosis
from .layout import apply_layout
from .messages import ChatRequest, ChatResponse, Message, StreamChunk
from .pricing import Cost, PriceBook, default_price_book
from .usage import Usage, as_mapping, with_cache_booking

if TYPE_CHECKING:
    from .otel import Instrumentation, ModelCall
    from .providers import ChatProvider
    from .server_diagnostics import ProviderMissReason

__all__ = [
    "METADATA_KEY",
    "CallFacts",
    "CallObservation",
    "aiterate_active",
    "aobserved_stream",
    "call_facts",
    "check_instrument",
    "finish_response",
    "iterate_active",
    "observe_call",
    "observe_provider_call",
    "observed_stream",
    "resolve_instrumentation",
    "server_of",
]

logger = logging.getLogger("cache_integrations.otel")

METADATA_KEY = "cache_integrations"
"""The key of the per-call facts in LangChain's ``response_metadata`` (and the prefix of the LangSmith run
metadata keys: ``cache_integrations.saved_usd`` ...)."""

# Set while one of this package's model-call observations is active: a model called inside another
# observed call (with_prompt_caching or the agent middleware around ChatGLM) does not emit a second span.
_ACTIVE: ContextVar[bool] = ContextVar("cache_integrations_observed_call", default=False)

# The process-wide instrumentation (`cache_integrations.otel.instrument()`), and the one `instrument=True`
# creates when there is none.
_process: Instrumentation | None = None
_default: Instrumentation | None = None
_default_lock = threading.Lock()


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What one model call's cache did and cost.

    `provider` is the price provider id (``zhipuai``, ``google``, ``openai`` ...); `cost` is None when the
    model has no known price; `cache` is the explicit cache the call used (``CacheUse.as_dict()`` shape:
    name, created, storage_token_hours ...); `diagnosis` is present when instrumentation with diagnostics
    observed the call.
    """

    model: str
    provider: str | None
    usage: Usage
    cost: Cost | None
    cache: Mapping[str, Any] | None = None
    diagnosis: Diagnosis | None = None

    def as_metadata(self) -> dict[str, Any]:
        """The documented ``response_metadata["cache_integrations"]`` dict (JSON-safe; money in USD floats).

        Keys: ``provider`` (the price provider), ``input_tokens`` (cached tokens included), ``cached_tokens``,
        ``cache_creation_tokens``, ``hit_rate``, ``cost_usd``, ``cost_without_caching_usd``, ``saved_usd`` (net of
        cache writes and storage), ``storage_usd``, ``storage_token_hours``; with an explicit cache ``cache_name`` and
        ``cache_created``; with a diagnosed miss ``miss_cause``, ``miss_message_index``, ``miss_lost_tokens``,
        ``miss_lost_usd``; with the provider's own diagnosis ``miss_provider_reason``.
        """
        u, cost = self.usage, self.cost
        out: dict[str, Any] = {
            "provider": self.provider,
            "input_tokens": u.input_tokens,
            "cached_tokens": u.cache_read_tokens,
            "cache_creation_tokens": u.cache_write_tokens,
            "hit_rate": round(u.hit_rate, 4),
            "cost_usd": _usd(cost.total) if cost else None,
            "cost_without_caching_usd": _usd(cost.without_caching) if cost else None,
            "saved_usd": _usd(cost.saved) if cost else None,
            "storage_usd": _usd(cost.storage) if cost else None,
            "storage_token_hours": u.cache_storage_token_hours,
        }
        if self.cache:
            out["cache_name"] = self.cache.get("name")
            out["cache_created"] = bool(self.cache.get("created"))
        d = self.diagnosis
        if d is not None and d.cause:
            out["miss_cause"] = d.cause
            out["miss_message_index"] = d.message_index
            out["miss_lost_tokens"] = d.lost_tokens
            out["miss_lost_usd"] = _usd(d.lost_usd)
        if d is not None and d.provider_reason:
            out["miss_provider_reason"] = d.provider_reason
        return out

    def run_metadata(self) -> dict[str, Any]:
        """The same facts as flat LangSmith run metadata keys (``cache_integrations.saved_usd`` ...)."""
        return {f"{METADATA_KEY}.{k}": v for k, v in self.as_metadata().items()}


def call_facts(
    usage: Usage,
    *,
    model: str,
    provider: str | None,
    cache: Any = None,
    prices: PriceBook | None = None,
    diagnosis: Diagnosis | None = None,
) -> CallFacts:
    """Price one call. `usage` excludes the explicit-cache booking; `cache` (a `CacheUse` or its dict) adds it."""
    cache_map = _cache_mapping(cache)
    booked = with_cache_booking(usage, cache_map) if cache_map else usage
    cost = (prices or default_price_book()).cost(booked, model, provider_price_ids(provider))
    return CallFacts(model, provider, booked, cost, cache_map, diagnosis)


def _cache_mapping(cache: Any) -> Mapping[str, Any] | None:
    if cache is None:
        return None
    as_dict = getattr(cache, "as_dict", None)
    if callable(as_dict):
        out = as_dict()
        return out if isinstance(out, Mapping) else None
    return as_mapping(cache)


def server_of(base_url: str | None) -> tuple[str, int] | None:
    """(host, port) of a base URL, for ``server.address`` / ``server.port``."""
    if not base_url:
        return None
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (host, port) if host else None


# -- which instrumentation applies --------------------------------------------------------------------


def set_process_instrumentation(instrumentation: Instrumentation | None) -> None:
    """Used by `cache_integrations.otel.instrument()` / `uninstrument()`."""
    global _process
    _process = instrumentation


def check_instrument(value: Any) -> Any:
    """`value` when it is a valid ``instrument=`` setting; else ConfigurationError naming the allowed values."""
    if value is None or isinstance(value, bool):
        return value
    otel = sys.modules.get("cache_integrations.otel")  # not loaded: the value cannot be one of its objects
    if otel is not None and isinstance(value, otel.Instrumentation):
        return value
    from .errors import ConfigurationError

    raise ConfigurationError(
        "instrument: expected True, False, None or a cache_integrations.otel.Instrumentation, "
        f"got {type(value).__name__}"
    )


def resolve_instrumentation(flag: Any) -> Instrumentation | None:
    """The instrumentation a model's ``instrument=`` setting asks for.

    ``None`` (the default) follows the process (`cache_integrations.otel.instrument()`); ``True`` uses the
    process's instrumentation, or a default one on the global OpenTelemetry providers; ``False`` never
    instruments; an `Instrumentation` is used as given.
    """
    if flag is None:
        return _process
    if flag is False:
        return None
    if flag is True:
        if _process is not None:
            return _process
        global _default
        with _default_lock:
            if _default is None:
                from .otel import Instrumentation

                _default = Instrumentation()
            return _default
    check_instrument(flag)
    instrumentation: Instrumentation = flag
    return instrumentation


class CallObservation:
    """One model call being observed: facts always, an OpenTelemetry span when instrumented."""

    __slots__ = ("_finished", "_layout", "_request", "_session", "facts_wanted", "model", "provider", "telemetry")

    def __init__(
        self,
        telemetry: ModelCall | None,
        *,
        provider: str | None,
        model: str,
        request: ChatRequest | Callable[[], ChatRequest] | None,
        layout: bool,
        session: str | None,
        facts_wanted: bool = True,
    ) -> None:
        self.telemetry = telemetry
        self.facts_wanted = facts_wanted
        self.provider = provider
        self.model = model
        self._request = request
        self._layout = layout
        self._session = session
        self._finished = False

    @property
    def wants_output(self) -> bool:
        """Whether the answer's text is recorded (instrumented with ``capture_content``)."""
        return self.telemetry is not None and self.telemetry.instrumentation.capture_content

    @contextmanager
    def active(self) -> Iterator[None]:
        """While the request runs: the span is current (HTTP spans nest under it) and nested observed
        calls stay quiet. Not for use across the yields of a stream."""
        token = _ACTIVE.set(True)
        try:
            with self.telemetry.current() if self.telemetry is not None else nullcontext():
                yield
        finally:
            _ACTIVE.reset(token)

    def finish(
        self,
        *,
        usage: Usage | None,
        response_model: str | None = None,
        cache: Any = None,
        finish_reasons: Sequence[str] = (),
        response_id: str | None = None,
        output: Message | Callable[[], Message] | None = None,
        provider_reason: ProviderMissReason | None = None,
    ) -> CallFacts | None:
        """End the call (once): its facts (None when it reported no usage); the span ends here.

        `output` (the answer, for ``capture_content``) may be a callable: it is only called when needed.
        `provider_reason` is the provider's own miss diagnosis (`server_diagnostics`), added to the call's."""
        if self._finished:
            return None
        self._finished = True
        if self.telemetry is None and not self.facts_wanted:
            return None
        model = response_model or self.model
        telemetry = self.telemetry
        facts: CallFacts | None = None
        if usage is not None:
            prices = telemetry.instrumentation.prices if telemetry is not None else None
            facts = call_facts(usage, model=model, provider=self.provider, cache=cache, prices=prices)
        if telemetry is None:
            return facts
        inst = telemetry.instrumentation
        sent: ChatRequest | None = None
        answer: Message | None = None
        try:
            if self._request is not None and (inst.diagnostics is not None or inst.capture_content):
                request = self._request() if callable(self._request) else self._request
                sent = apply_layout(request) if self._layout else request  # as the provider got it
            if facts is not None and inst.diagnostics is not None and sent is not None:
                diagnosis = inst.diagnostics.observe(
                    model=model,
                    messages=sent.messages,
                    tools=sent.tools,
                    usage=facts.usage,
                    provider=self.provider,
                    session=self._session,
                    provider_reason=provider_reason,
                )
                facts = CallFacts(facts.model, facts.provider, facts.usage, facts.cost, facts.cache, diagnosis)
            if inst.capture_content and output is not None:
                answer = output() if callable(output) else output
        except Exception:  # telemetry never fails the user's call: the span ends without these
            logger.warning("cache_integrations: could not diagnose a model call for its span", exc_info=True)
        telemetry.end(
            facts,
            response_model=response_model,
            finish_reasons=finish_reasons,
            response_id=response_id,
            request=sent if inst.capture_content else None,
            output=answer,
        )
        return facts

    def fail(self, error: BaseException) -> None:
        """End the call with an error (once)."""
        if self._finished:
            return
        self._finished = True
        if self.telemetry is not None:
            self.telemetry.fail(error)


def observe_call(
    instrument: Any,
    *,
    provider: str | None,
    model: str,
    request: ChatRequest | Callable[[], ChatRequest] | None = None,
    layout: bool = False,
    session: str | None = None,
    server: tuple[str, int] | None = None,
    facts: bool = True,
) -> CallObservation:
    """Start observing one model call.

    `instrument` is a model's ``instrument=`` setting (see `resolve_instrumentation`); `provider` the price
    provider id; `request` the neutral request (for the miss diagnosis and, with ``capture_content``, the
    span's input messages; `layout` applies the cache-friendly layout to it first, as the provider will);
    `session` the conversation id when the caller gave one; `server` its (host, port); `facts`: whether
    `finish` returns the facts when not instrumented (False skips pricing).
    """
    telemetry = None
    if not _ACTIVE.get():
        instrumentation = resolve_instrumentation(instrument)
        if instrumentation is not None:
            telemetry = instrumentation.start(provider=provider, model=model, session=session, server=server)
    return CallObservation(
        telemetry, provider=provider, model=model, request=request, layout=layout, session=session, facts_wanted=facts
    )


# -- models over a core provider (ChatGLM, ChatGemini, LlamaIndex GLM / Gemini) ---------------------------


def observe_provider_call(
    instrument: Any,
    client: ChatProvider,
    request: ChatRequest,
    *,
    layout: bool,
    session: str | None = None,
    facts: bool = True,
) -> CallObservation:
    """`observe_call` for a request a core `ChatProvider` is about to send."""
    base_url = getattr(client, "base_url", None) or getattr(getattr(client, "client", None), "base_url", None)
    return observe_call(
        instrument,
        provider=client.price_provider,
        model=request.model,
        request=request,
        layout=layout,
        session=session,
        server=server_of(base_url if isinstance(base_url, str) else None),
        facts=facts,
    )


def finish_response(
    obs: CallObservation, response: ChatResponse | StreamChunk, output: Message | None = None
) -> CallFacts | None:
    """Finish `obs` with a core response, or a stream's final chunk (`output`: the streamed answer)."""
    if isinstance(response, ChatResponse):
        return obs.finish(
            usage=response.usage,
            response_model=response.model,
            cache=response.cache,
            finish_reasons=(response.finish_reason,) if response.finish_reason else (),
            response_id=response.id,
            output=response.message,
        )
    return obs.finish(
        usage=response.usage,
        response_model=response.model,
        cache=response.cache,
        finish_reasons=(response.finish_reason,) if response.finish_reason else (),
        response_id=response.id,
        output=output,
    )


def observed_stream(
    obs: CallObservation, chunks: Iterator[StreamChunk]
) -> Iterator[tuple[StreamChunk, CallFacts | None]]:
    """The chunks of a core stream, the final one with the call's facts; the span ends with the stream
    (an error ends it failed; a consumer that stops early ends it without usage)."""
    text: list[str] | None = [] if obs.wants_output else None
    try:
        for chunk in chunks:
            if text is not None and chunk.text:
                text.append(chunk.text)
            facts = finish_response(obs, chunk, _answer(text)) if chunk.final else None
            yield chunk, facts
    except GeneratorExit:
        obs.finish(usage=None)
        raise
    except BaseException as exc:
        obs.fail(exc)
        raise
    obs.finish(usage=None)  # no final chunk (a no-op after one)


async def aobserved_stream(
    obs: CallObservation, chunks: AsyncIterator[StreamChunk]
) -> AsyncIterator[tuple[StreamChunk, CallFacts | None]]:
    """`observed_stream` for an async stream."""
    text: list[str] | None = [] if obs.wants_output else None
    try:
        async for chunk in chunks:
            if text is not None and chunk.text:
                text.append(chunk.text)
            facts = finish_response(obs, chunk, _answer(text)) if chunk.final else None
            yield chunk, facts
    except GeneratorExit:
        obs.finish(usage=None)
        raise
    except BaseException as exc:
        obs.fail(exc)
        raise
    obs.finish(usage=None)


def _answer(text: list[str] | None) -> Message | None:
    return None if text is None else Message("assistant", "".join(text))


_T = TypeVar("_T")


def iterate_active(items: Iterator[_T]) -> Iterator[_T]:
    """`items`, with nested observed calls kept quiet while each item is produced (not between items,
    when the consumer runs)."""
    while True:
        token = _ACTIVE.set(True)
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            _ACTIVE.reset(token)
        yield item


async def aiterate_active(items: AsyncIterator[_T]) -> AsyncIterator[_T]:
    """`iterate_active` for an async iterator."""
    while True:
        token = _ACTIVE.set(True)
        try:
            item = await items.__anext__()
        except StopAsyncIteration:
            return
        finally:
            _ACTIVE.reset(token)
        yield item
