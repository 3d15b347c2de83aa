"""Anthropic's cache diagnostics asked through `langchain_anthropic.ChatAnthropic` (``server_diagnostics=True``).

`with_prompt_caching(ChatAnthropic(...), server_diagnostics=True)` and `PromptCachingMiddleware(
server_diagnostics=True)` send every Anthropic call with ``diagnostics: {"previous_message_id": <id>}`` (the
previous response of the same conversation, or null on its first turn) and the ``cache-diagnosis-2026-04-07``
beta, which routes ChatAnthropic through the SDK's beta client; betas the caller set are kept. ChatAnthropic
puts the answer's ``id`` and ``diagnostics`` in ``response_metadata`` (non-streamed calls), where the handler
reads the provider's miss reason and the coordinator the id for the next call.

Streamed calls: langchain-anthropic 1.7 keeps neither the ``message_start`` id nor its ``diagnostics``, so a
conversation's call after a stream opts in afresh (``previous_message_id: null``) and a stream's own answer is
not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from ..messages import ChatRequest
from ..server_diagnostics import ANTHROPIC_DIAGNOSTICS_BETA, ResponseChain

if TYPE_CHECKING:
    from ._foreign import ForeignCall

__all__ = ["ask_for_diagnostics", "asked", "record_response"]


def _model_betas(model: BaseChatModel) -> list[str]:
    betas = getattr(model, "betas", None)
    if not betas:
        model_kwargs = getattr(model, "model_kwargs", None)
        betas = model_kwargs.get("betas") if isinstance(model_kwargs, Mapping) else None
    return [str(b) for b in betas or ()]


def asked(call: ForeignCall) -> bool:
    """Whether `call` asks Anthropic for its cache diagnostics."""
    return isinstance(call.settings.get("diagnostics"), Mapping)


def ask_for_diagnostics(
    call: ForeignCall, model: BaseChatModel, request: ChatRequest, chain: ResponseChain
) -> ForeignCall:
    """`call` with ``diagnostics`` naming its conversation's previous response, and the beta among its betas
    (a call-time ``betas`` replaces the model's in ChatAnthropic, so the model's are carried over). A call whose
    caller set ``diagnostics`` is left as it is."""
    settings = dict(call.settings)
    if "diagnostics" in settings:
        return call
    previous = chain.previous(request.model, request.messages, request.tools, call.session)
    betas = [str(b) for b in settings.get("betas") or ()] or _model_betas(model)
    if ANTHROPIC_DIAGNOSTICS_BETA not in betas:
        betas.append(ANTHROPIC_DIAGNOSTICS_BETA)
    settings["betas"] = betas
    settings["diagnostics"] = {"previous_message_id": previous}
    return replace(call, settings=settings)


def record_response(call: ForeignCall, request: ChatRequest, message: BaseMessage | None, chain: ResponseChain) -> None:
    """Remember the answer's id as its conversation's latest (None when the answer has none: a stream)."""
    meta: Any = getattr(message, "response_metadata", None) or {}
    response_id = meta.get("id") if isinstance(meta, Mapping) else None
    if not (isinstance(response_id, str) and response_id.startswith("msg_")):
        response_id = None
    chain.record(request.model, request.messages, request.tools, call.session, response_id)
