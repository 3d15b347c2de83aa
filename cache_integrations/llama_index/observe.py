"""Observing calls of any LlamaIndex LLM: the hook for wrappers of foreign LLMs (a LlamaIndex
`with_prompt_caching`), the same spans and facts `GLM` and `Gemini` produce by themselves.

    obs = observe_llama_index_call(self.instrument, llm, messages, tools=tools)
    try:
        with obs.active():
            response = llm.chat(messages, **kwargs)
    except BaseException as exc:
        obs.fail(exc)
        raise
    finish_llama_index_response(obs, response, llm)     # the span ends; returns the call's CallFacts

    # streams: the span ends when the stream does
    return observed_llama_index_stream(obs, llm.stream_chat(messages, **kwargs), llm)

`instrument` follows the models' convention (None: `cache_integrations.otel.instrument()` decides).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, TypeVar

from ..errors import InvalidRequestError
from ..messages import ChatRequest, Message, ToolDefinition
from ..observe import CallFacts, CallObservation, observe_call, server_of
from ..usage import Usage
from ._convert import messages_from_llama_index, tool_from_llama_index
from .handlers import _provider_of, model_and_provider, usage_from_llama_index

__all__ = [
    "aobserved_llama_index_stream",
    "finish_llama_index_response",
    "observe_llama_index_call",
    "observed_llama_index_stream",
]

_R = TypeVar("_R")


def _model_dict(llm: Any) -> dict[str, Any]:
    try:
        name = llm.metadata.model_name
    except Exception:  # an LLM whose metadata needs a connection: its fields will do
        name = None
    name = name or getattr(llm, "model", None) or getattr(llm, "model_name", None) or type(llm).__name__
    try:
        class_name = llm.class_name()
    except Exception:
        class_name = type(llm).__name__
    return {"model_name": str(name), "class_name": class_name}


def observe_llama_index_call(
    instrument: Any,
    llm: Any,
    messages: Sequence[Any],
    *,
    tools: Sequence[Any] = (),
    provider: str | None = None,
    session: str | None = None,
) -> CallObservation:
    """Start observing one call of `llm` (any LlamaIndex LLM) with `messages` (ChatMessages) and `tools`.

    `provider` is the price provider id (default: guessed from the LLM's class name, as the handlers do).
    """
    info = _model_dict(llm)
    model = info["model_name"]

    def request() -> ChatRequest:
        try:
            neutral: tuple[Message, ...] = messages_from_llama_index(messages)
            definitions: tuple[ToolDefinition, ...] = tuple(tool_from_llama_index(t) for t in tools)
        except (InvalidRequestError, TypeError, ValueError):
            neutral, definitions = (), ()
        return ChatRequest(model, neutral, definitions)

    base_url = next((v for a in ("api_base", "base_url") if isinstance(v := getattr(llm, a, None), str)), None)
    return observe_call(
        instrument,
        provider=provider or _provider_of(info["class_name"]),
        model=model,
        request=request,
        session=session,
        server=server_of(base_url),
    )


def finish_llama_index_response(obs: CallObservation, response: Any, llm: Any = None) -> CallFacts | None:
    """Finish `obs` with a LlamaIndex `ChatResponse` / `CompletionResponse` (whatever LLM produced it)."""
    usage: Usage | None = usage_from_llama_index(response) if response is not None else None
    model, _ = model_and_provider(response, _model_dict(llm) if llm is not None else None)
    raw = getattr(response, "raw", None)
    cache = raw.get("cache") if isinstance(raw, dict) else None
    text = getattr(getattr(response, "message", None), "content", None) or getattr(response, "text", None)
    return obs.finish(
        usage=_without_booking(usage, cache),
        response_model=None if model == "unknown" else model,
        cache=cache,
        output=lambda: Message("assistant", str(text or "")),
    )


def _without_booking(usage: Usage | None, cache: Any) -> Usage | None:
    """`usage_from_llama_index` books the explicit cache already; `obs.finish` books it from `cache`."""
    if usage is None or not cache:
        return usage
    return Usage(
        input_tokens=usage.input_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def observed_llama_index_stream(obs: CallObservation, responses: Iterator[_R], llm: Any = None) -> Iterator[_R]:
    """The responses of a LlamaIndex stream; the call finishes with the last one (which carries usage)."""
    last: Any = None
    try:
        for response in responses:
            last = response
            yield response
    except GeneratorExit:
        obs.finish(usage=None)
        raise
    except BaseException as exc:
        obs.fail(exc)
        raise
    finish_llama_index_response(obs, last, llm)


async def aobserved_llama_index_stream(
    obs: CallObservation, responses: AsyncIterator[_R], llm: Any = None
) -> AsyncIterator[_R]:
    """`observed_llama_index_stream` for an async stream."""
    last: Any = None
    try:
        async for response in responses:
            last = response
            yield response
    except GeneratorExit:
        obs.finish(usage=None)
        raise
    except BaseException as exc:
        obs.fail(exc)
        raise
    finish_llama_index_response(obs, last, llm)
