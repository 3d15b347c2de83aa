"""LangChain's side of call observation: facts into ``response_metadata`` and the LangSmith run's metadata.

``response_metadata["cache_integrations"]`` (see `CallFacts.as_metadata`) travels with the message, so
LangSmith shows it in the run's outputs and every callback sees it. When the call has a run manager
(invoke, batch, async, and streams called through invoke), the same facts are added to the run of every
tracer that records it (LangSmith's `LangChainTracer`, any `BaseTracer`: OpenInference exports run
metadata too) as flat ``cache_integrations.<key>`` metadata, which LangSmith can filter on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.tracers.base import BaseTracer

from ..messages import ChatRequest, Message
from ..observe import METADATA_KEY, CallFacts, CallObservation, observe_call, server_of
from ..server_diagnostics import provider_miss_reason
from ._convert import usage_from_langchain
from ._foreign import _BASE_URL_ATTRS, _model_name, _planning_message, _planning_messages, _planning_tool

__all__ = ["annotate", "finish_with_message", "observe_foreign_call"]

RunManager = CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun


def annotate(message: BaseMessage, facts: CallFacts | None, run_manager: RunManager | None = None) -> None:
    """Put `facts` on the message and on the run's tracers (nothing when the call reported no usage)."""
    if facts is None:
        return
    message.response_metadata[METADATA_KEY] = facts.as_metadata()
    if run_manager is not None:
        add_run_metadata(run_manager, facts)


def add_run_metadata(run_manager: RunManager, facts: CallFacts) -> None:
    """Add the facts to this run's record in every tracer handling it, before the run ends."""
    run_id = str(run_manager.run_id)
    seen: set[int] = set()
    for handler in (*run_manager.handlers, *run_manager.inheritable_handlers):
        if id(handler) in seen or not isinstance(handler, BaseTracer):
            continue
        seen.add(id(handler))
        run = handler.run_map.get(run_id)
        if run is not None:
            run.add_metadata(facts.run_metadata())


def _finish_reasons(meta: Mapping[str, Any]) -> tuple[str, ...]:
    reason = meta.get("finish_reason") or meta.get("stop_reason")
    return (str(reason),) if reason else ()


def finish_with_message(
    obs: CallObservation, message: BaseMessage | None, run_manager: RunManager | None = None
) -> CallFacts | None:
    """Finish a foreign model's call from the message it answered (its `usage_metadata` and
    `response_metadata`), and annotate the message."""
    if message is None:
        obs.finish(usage=None)
        return None
    meta = message.response_metadata or {}
    usage_meta = getattr(message, "usage_metadata", None)
    facts = obs.finish(
        usage=usage_from_langchain(usage_meta) if usage_meta else None,  # the cache booking comes with `cache`
        response_model=str(meta.get("model_name") or meta.get("model") or "") or None,
        cache=meta.get("cache"),
        finish_reasons=_finish_reasons(meta),
        response_id=str(meta["id"]) if meta.get("id") else None,
        output=lambda: _planning_message(message),
        provider_reason=provider_miss_reason(meta),
    )
    annotate(message, facts, run_manager)
    return facts


def observe_foreign_call(
    instrument: Any,
    model: BaseChatModel,
    *,
    provider: str,
    messages: Sequence[BaseMessage],
    tools: Sequence[Any] = (),
    session: str | None = None,
    model_name: str | None = None,
) -> CallObservation:
    """`observe_call` for a foreign LangChain model's call (the messages and tools as it will send them)."""
    name = model_name or _model_name(model)

    def request() -> ChatRequest:
        neutral: tuple[Message, ...] = _planning_messages(messages) if messages else ()
        return ChatRequest(name, neutral, tuple(_planning_tool(t) for t in tools))

    base_url = next((str(v) for a in _BASE_URL_ATTRS if (v := getattr(model, a, None))), None)
    return observe_call(
        instrument,
        provider=provider,
        model=name,
        request=request,
        session=session,
        server=server_of(base_url),
    )
