"""`PromptCachingMiddleware`: prompt caching for LangChain v1 agents, whatever their model.

    from langchain.agents import create_agent
    from cache_integrations.langchain import PromptCachingMiddleware

    agent = create_agent(model, tools, middleware=[PromptCachingMiddleware()])

Every model call of the agent goes through the caching strategy of the model's provider (detected from its
class, `_get_ls_params()` and base URL): OpenAI gets a `prompt_cache_key` per thread and tools in a fixed
order, Anthropic gets breakpoints, Gemini an explicit cache; unknown models keep their request apart from the
tool order, with one debug line. This package's own models (`ChatGLM`, `ChatGemini`) and models already
wrapped with `with_prompt_caching` are passed through: they cache by themselves.

A Gemini model (`ChatGoogleGenerativeAI`), and a model whose own provider is not the `provider` label the caller
gave (a `ChatOpenAI` on vLLM: priced under the label), is swapped for its `with_prompt_caching` wrapper (sharing this
middleware's strategies) rather than having its request rewritten: the explicit cache must hold exactly the tools
the agent binds (structured-output tools included, added after the middleware ran), a cache that vanished is
retried inside the model call (no error reaches the agent or the callbacks), and the answer the callbacks see
carries the cache's writes and storage, so the usage handler books them. The wrapper also makes the call's span.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from ..errors import ConfigurationError
from ..observe import CallObservation, check_instrument
from ._base import CachingChatModel
from ._foreign import CachingCoordinator, ForeignCall, PreparedCall, _model_name, detect_provider, session_from_metadata
from ._observe import finish_with_message, observe_foreign_call
from .caching import PromptCachingChatModel

try:
    from langchain.agents.middleware.types import AgentMiddleware, ModelRequest, ModelResponse
except ImportError as exc:  # pragma: no cover - the langchain extra is missing
    raise ImportError(
        "PromptCachingMiddleware needs the `langchain` package (LangChain v1 agents): pip install langchain"
    ) from exc

__all__ = ["PromptCachingMiddleware"]

# Providers whose strategy works inside the model call (see the module docstring): their models are wrapped.
_WRAPPED_PROVIDERS = frozenset(("google",))


def _thread_session() -> str | None:
    """The agent run's thread / session id, from the LangGraph config of the running node."""
    try:
        from langgraph.config import get_config

        config = get_config()
    except (ImportError, RuntimeError):
        return None
    configurable = config.get("configurable") or {}
    return session_from_metadata(configurable) or session_from_metadata(config.get("metadata"))


def _response_message(response: Any) -> BaseMessage | None:
    if isinstance(response, AIMessage):
        return response
    result = getattr(response, "result", None) or ()
    return next((m for m in reversed(result) if isinstance(m, AIMessage)), None)


class PromptCachingMiddleware(AgentMiddleware):
    """Applies the model provider's prompt-caching strategy to every model call of a LangChain v1 agent.

    Options are those of `with_prompt_caching` (`prompt_cache_key`, `retention`, `prompt_cache_options`,
    `layout`, `provider`, `server_diagnostics`, and the Anthropic / Gemini options). `instrument`: OpenTelemetry
    spans and metrics per model call (see `cache_integrations.otel`; None follows `instrument()`); the call's
    facts also go into the answer's ``response_metadata["cache_integrations"]``. A model whose own provider
    differs from the `provider` label given (a `ChatOpenAI` pointed at vLLM or DeepSeek) is swapped for its
    `with_prompt_caching` wrapper, as Gemini models are, so the usage handler prices its calls under the label.
    """

    def __init__(self, *, instrument: Any = None, **options: Any) -> None:
        super().__init__()
        if "warmup" in options:
            raise ConfigurationError("PromptCachingMiddleware: `warmup` applies to batches; use with_prompt_caching")
        self._coordinator = CachingCoordinator(**options)
        self._instrument = check_instrument(instrument)

    @property
    def coordinator(self) -> CachingCoordinator:
        return self._coordinator

    def _prepare(self, request: ModelRequest) -> tuple[PreparedCall | None, ModelRequest]:
        if isinstance(request.model, CachingChatModel | PromptCachingChatModel):
            return None, request  # caches by itself
        provider = self._coordinator.provider or detect_provider(request.model)
        if provider in _WRAPPED_PROVIDERS or self._relabels(request.model):
            wrapped = PromptCachingChatModel.sharing(request.model, self._coordinator)
            wrapped.instrument = self._instrument
            return None, request.override(model=wrapped)
        system = (request.system_message,) if request.system_message is not None else ()
        call = ForeignCall(
            system, tuple(request.messages), tuple(request.tools), dict(request.model_settings), _thread_session()
        )
        prepared = self._coordinator.prepare(request.model, call)
        out = prepared.call
        overrides: dict[str, Any] = {}
        if out.tools != call.tools:
            overrides["tools"] = list(out.tools)
        if out.settings != call.settings:
            overrides["model_settings"] = dict(out.settings)
        if out.system != call.system:
            overrides["system_message"] = out.system[0] if out.system else None
        if out.messages != call.messages:
            overrides["messages"] = list(out.messages)
        return prepared, request.override(**overrides) if overrides else request

    def _relabels(self, model: Any) -> bool:
        """Whether the caller's `provider` label differs from the provider the model reports (a `ChatOpenAI` on
        vLLM or DeepSeek says "openai"): then the model is wrapped, so the usage handler prices its calls under
        the label as the wrapper does."""
        label = self._coordinator.book.label
        if label is None:
            return False
        try:
            own = model._get_ls_params().get("ls_provider")
        except Exception:
            own = None
        return bool(label != own)

    def _observe(self, request: ModelRequest, prepared: PreparedCall | None) -> CallObservation:
        system = (request.system_message,) if request.system_message is not None else ()
        if prepared is not None:
            provider = self._coordinator.price_label(prepared.context)
            name, session = prepared.context.model, prepared.call.session
        else:
            provider, name, session = detect_provider(request.model), _model_name(request.model), _thread_session()
        return observe_foreign_call(
            self._instrument,
            request.model,
            provider=provider,
            messages=(*system, *request.messages),
            tools=request.tools,
            session=session,
            model_name=name,
        )

    def _swapped(self, request: ModelRequest) -> bool:
        model = request.model
        return isinstance(model, PromptCachingChatModel) and model.coordinator is self._coordinator

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage:
        prepared, request = self._prepare(request)
        if self._swapped(request):
            return handler(request)  # the wrapper plans, retries and makes the call's span
        obs = self._observe(request, prepared)
        try:
            with obs.active():
                response = handler(request)
        except BaseException as exc:
            obs.fail(exc)
            raise
        message = _response_message(response)
        if prepared is not None:
            self._coordinator.observe(prepared, message)
        finish_with_message(obs, message)
        return response

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse | AIMessage:
        prepared, request = self._prepare(request)
        if self._swapped(request):
            return await handler(request)
        obs = self._observe(request, prepared)
        try:
            with obs.active():
                response = await handler(request)
        except BaseException as exc:
            obs.fail(exc)
            raise
        message = _response_message(response)
        if prepared is not None:
            self._coordinator.observe(prepared, message)
        finish_with_message(obs, message)
        return response
