"""`with_prompt_caching(model)`: prompt caching for a chat model you already have.

    from langchain_openai import ChatOpenAI
    from cache_integrations.langchain import with_prompt_caching

    llm = with_prompt_caching(ChatOpenAI(model="gpt-5-mini"))

The result is a `BaseChatModel` that wraps the original: `invoke`, `stream`, `batch`, async, `bind_tools`,
`with_structured_output` and callbacks work as before, and every call goes through the provider's caching
strategy (the cache-friendly layout, OpenAI's `prompt_cache_key` per conversation, Anthropic breakpoints, a
Gemini explicit cache) before the original model sends it. `batch` warms a cold shared prefix with one request
before fanning out the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig, RunnableSequence
from langchain_core.runnables.base import RunnableEach, RunnableParallel
from langchain_core.runnables.config import ensure_config, get_config_list
from langchain_core.runnables.fallbacks import RunnableWithFallbacks
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from ..errors import ConfigurationError
from ..messages import ChatRequest
from ..observe import CallObservation, aiterate_active, check_instrument, iterate_active
from ..strategies import MIN_CACHEABLE_TOKENS, CallContext, StrategyBook, WarmupPlan, plan_warmup
from . import _anthropic  # noqa: F401  (registers PROVIDER_APPLIERS["anthropic"])
from ._foreign import (
    CachingCoordinator,
    ForeignCall,
    PreparedCall,
    _model_name,
    _planning_messages,
    _planning_tool,
    detect_provider,
    session_from_metadata,
)
from ._gemini_foreign import cache_use_chunk, result_with_cache_use
from ._observe import annotate, finish_with_message, observe_foreign_call

__all__ = ["PromptCachingChatModel", "with_prompt_caching"]

# LangChain calls `_stream` without the run manager (`stream()` reports the tokens itself), so the run's
# metadata (its thread / session id) reaches `_stream` through this variable, set by every entry point that
# leads there and reset when it ends.
_SESSION: ContextVar[str | None] = ContextVar("cache_integrations_prompt_caching_session", default=None)

# Providers whose caches serve a prefix only once the request that wrote it has answered (implicit caches;
# Anthropic from the first streamed byte): concurrent cold requests miss, so a batch is warmed first.
_WARM_PROVIDERS = frozenset(("openai", "deepseek", "dashscope", "zhipuai", "openai_compatible", "anthropic"))


class PromptCachingChatModel(BaseChatModel):
    """A chat model that applies a caching strategy to every call of the model it wraps."""

    bound: BaseChatModel
    """The caller's model; it sends every request."""
    options: dict[str, Any] = Field(default_factory=dict, repr=False)  # a registry URL may hold a password
    """Strategy options (see `with_prompt_caching`)."""
    warmup: bool = True
    """Warm a cold prefix shared by a batch with one request before sending the others."""
    instrument: Any = Field(default=None, exclude=True)
    """OpenTelemetry spans and metrics per call: None follows `cache_integrations.otel.instrument()`, True /
    False turn them on / off, or a `cache_integrations.otel.Instrumentation`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @field_validator("instrument")
    @classmethod
    def _check_instrument(cls, value: Any) -> Any:
        return check_instrument(value)

    _coordinator: CachingCoordinator = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        super().model_post_init(context)
        self._coordinator = CachingCoordinator(**self.options)

    # -- LangChain plumbing: look like the wrapped model -------------------------------------------

    @property
    def _llm_type(self) -> str:
        return f"prompt-caching:{self.bound._llm_type}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**self.bound._identifying_params, "prompt_caching": True}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return self.bound._get_ls_params(stop=stop, **kwargs)

    @property
    def coordinator(self) -> CachingCoordinator:
        return self._coordinator

    @classmethod
    def sharing(cls, bound: BaseChatModel, coordinator: CachingCoordinator) -> PromptCachingChatModel:
        """`bound` wrapped with an existing coordinator (a middleware's: its strategies, caches and learning)."""
        wrapped = cls(bound=bound, warmup=False, profile=bound.profile)
        wrapped._coordinator = coordinator
        return wrapped

    def _call(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], metadata: dict[str, Any] | None
    ) -> ForeignCall:
        settings = dict(kwargs)
        tools = settings.pop("tools", None)
        session = session_from_metadata(metadata) if metadata is not None else _SESSION.get()
        return ForeignCall((), tuple(messages), tuple(tools or ()), settings, session)

    @staticmethod
    def _args(prepared: PreparedCall) -> tuple[list[BaseMessage], dict[str, Any]]:
        """The messages and keyword arguments to call the wrapped model with."""
        out = dict(prepared.call.settings)
        if prepared.call.tools:
            out["tools"] = list(prepared.call.tools)
        return list(prepared.call.messages), out

    def _prepare(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], metadata: dict[str, Any] | None
    ) -> tuple[PreparedCall, list[BaseMessage], dict[str, Any]]:
        prepared = self._coordinator.prepare(self.bound, self._call(messages, kwargs, metadata))
        return (prepared, *self._args(prepared))

    async def _aprepare(
        self, messages: list[BaseMessage], kwargs: dict[str, Any], metadata: dict[str, Any] | None
    ) -> tuple[PreparedCall, list[BaseMessage], dict[str, Any]]:
        prepared = await self._coordinator.aprepare(self.bound, self._call(messages, kwargs, metadata))
        return (prepared, *self._args(prepared))

    # -- the run's session reaches `_stream` ----------------------------------------------------------

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        token = _SESSION.set(session_from_metadata(ensure_config(config).get("metadata")))
        try:
            yield from super().stream(input, config, **kwargs)
        finally:
            _SESSION.reset(token)

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        token = _SESSION.set(session_from_metadata(ensure_config(config).get("metadata")))
        try:
            async for chunk in super().astream(input, config, **kwargs):
                yield chunk
        finally:
            _SESSION.reset(token)

    def _generate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        token = _SESSION.set(session_from_metadata(run_manager.metadata if run_manager else None))
        try:
            return super()._generate_with_cache(messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            _SESSION.reset(token)

    async def _agenerate_with_cache(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        token = _SESSION.set(session_from_metadata(run_manager.metadata if run_manager else None))
        try:
            return await super()._agenerate_with_cache(messages, stop=stop, run_manager=run_manager, **kwargs)
        finally:
            _SESSION.reset(token)

    # -- calls -------------------------------------------------------------------------------------

    def _observe(self, prepared: PreparedCall) -> CallObservation:
        call = prepared.call
        return observe_foreign_call(
            self.instrument,
            self.bound,
            provider=self._coordinator.price_label(prepared.context),
            messages=(*call.system, *call.messages),
            tools=call.tools,
            session=call.session,
            model_name=prepared.context.model,
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prepared, msgs, kw = self._prepare(messages, kwargs, run_manager.metadata if run_manager else None)
        obs = self._observe(prepared)
        try:
            with obs.active():
                try:
                    result = self.bound._generate_with_cache(msgs, stop=stop, run_manager=run_manager, **kw)
                except Exception as exc:  # a vanished explicit cache: recreated (or dropped), retried once, invisibly
                    retry = self._coordinator.recover(prepared, exc)
                    if retry is None:
                        raise
                    prepared, (msgs, kw) = retry, self._args(retry)
                    result = self.bound._generate_with_cache(msgs, stop=stop, run_manager=run_manager, **kw)
        except BaseException as exc:
            obs.fail(exc)
            raise
        result = result_with_cache_use(result, prepared.cache_use)
        message = result.generations[0].message if result.generations else None
        self._coordinator.observe(prepared, message)
        finish_with_message(obs, message, run_manager)
        return result

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prepared, msgs, kw = await self._aprepare(messages, kwargs, run_manager.metadata if run_manager else None)
        obs = self._observe(prepared)
        try:
            with obs.active():
                try:
                    result = await self.bound._agenerate_with_cache(msgs, stop=stop, run_manager=run_manager, **kw)
                except Exception as exc:
                    retry = await self._coordinator.arecover(prepared, exc)
                    if retry is None:
                        raise
                    prepared, (msgs, kw) = retry, self._args(retry)
                    result = await self.bound._agenerate_with_cache(msgs, stop=stop, run_manager=run_manager, **kw)
        except BaseException as exc:
            obs.fail(exc)
            raise
        result = result_with_cache_use(result, prepared.cache_use)
        message = result.generations[0].message if result.generations else None
        self._coordinator.observe(prepared, message)
        finish_with_message(obs, message, run_manager)
        return result

    def _stream_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # Cached tokens are reported in usage: ask models that stream usage only on request (ChatOpenAI and
        # its subclasses on a non-default base URL) to include it.
        if "stream_usage" in type(self.bound).model_fields and "stream_usage" not in kwargs:
            return {**kwargs, "stream_usage": True}
        return kwargs

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        kwargs = self._stream_kwargs(kwargs)
        prepared, msgs, kw = self._prepare(messages, kwargs, run_manager.metadata if run_manager else None)
        obs = self._observe(prepared)
        stream = _StreamFacts(obs)
        try:
            chunks = iterate_active(self.bound._stream(msgs, stop=stop, run_manager=run_manager, **kw))
            try:  # a vanished cache fails the stream when it opens, before any output: retried once, invisibly
                first = next(chunks, None)
            except Exception as exc:
                retry = self._coordinator.recover(prepared, exc)
                if retry is None:
                    raise
                prepared, (msgs, kw) = retry, self._args(retry)
                chunks = iterate_active(self.bound._stream(msgs, stop=stop, run_manager=run_manager, **kw))
                first = next(chunks, None)
            if first is not None:
                yield from stream.add(first)
            for chunk in chunks:
                yield from stream.add(chunk)
            if (use := prepared.cache_use) is not None:
                yield from stream.add(cache_use_chunk(use))
        except GeneratorExit:
            obs.finish(usage=None)
            raise
        except BaseException as exc:
            obs.fail(exc)
            raise
        self._coordinator.observe(prepared, stream.message())
        yield from stream.end(run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        kwargs = self._stream_kwargs(kwargs)
        prepared, msgs, kw = await self._aprepare(messages, kwargs, run_manager.metadata if run_manager else None)
        obs = self._observe(prepared)
        stream = _StreamFacts(obs)
        try:
            chunks = aiterate_active(self.bound._astream(msgs, stop=stop, run_manager=run_manager, **kw))
            try:
                first = await anext(chunks, None)
            except Exception as exc:
                retry = await self._coordinator.arecover(prepared, exc)
                if retry is None:
                    raise
                prepared, (msgs, kw) = retry, self._args(retry)
                chunks = aiterate_active(self.bound._astream(msgs, stop=stop, run_manager=run_manager, **kw))
                first = await anext(chunks, None)
            if first is not None:
                for out in stream.add(first):
                    yield out
            async for chunk in chunks:
                for out in stream.add(chunk):
                    yield out
            if (use := prepared.cache_use) is not None:
                for out in stream.add(cache_use_chunk(use)):
                    yield out
        except GeneratorExit:
            obs.finish(usage=None)
            raise
        except BaseException as exc:
            obs.fail(exc)
            raise
        self._coordinator.observe(prepared, stream.message())
        for out in stream.end(run_manager):
            yield out

    # -- batch warm-up -----------------------------------------------------------------------------

    def _warmup_plan(
        self, inputs: Sequence[LanguageModelInput], configs: Sequence[RunnableConfig], kwargs: dict[str, Any]
    ) -> WarmupPlan | None:
        provider = self._coordinator.provider or detect_provider(self.bound)
        if not self.warmup or provider not in _WARM_PROVIDERS or len(inputs) < 2:
            return None
        tools = tuple(_planning_tool(t) for t in kwargs.get("tools") or ())
        try:
            requests = [
                ChatRequest("model", _planning_messages(self._convert_input(i).to_messages()), tools) for i in inputs
            ]
        except Exception:  # inputs the model itself will reject: let it say so, unwarmed
            return None
        fixed = kwargs.get("prompt_cache_key")
        routes = [
            fixed
            if isinstance(fixed, str)
            else self._coordinator.book.cache_key(
                CallContext(provider, _model_name(self.bound), session_from_metadata(config.get("metadata")))
            )
            for config in configs
        ]
        plan = plan_warmup(
            requests, min_tokens=MIN_CACHEABLE_TOKENS[provider], estimator=self._coordinator.estimator, routes=routes
        )
        return plan if plan.warms else None

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        configs = get_config_list(config, len(inputs))
        plan = self._warmup_plan(inputs, configs, kwargs)
        if plan is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        out: list[Any] = [None] * len(inputs)
        for wave in (plan.first, plan.then):
            answers = super().batch(
                [inputs[i] for i in wave], [configs[i] for i in wave], return_exceptions=return_exceptions, **kwargs
            )
            for i, answer in zip(wave, answers, strict=True):
                out[i] = answer
        return out

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        configs = get_config_list(config, len(inputs))
        plan = self._warmup_plan(inputs, configs, kwargs)
        if plan is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        out: list[Any] = [None] * len(inputs)
        for wave in (plan.first, plan.then):
            answers = await super().abatch(
                [inputs[i] for i in wave], [configs[i] for i in wave], return_exceptions=return_exceptions, **kwargs
            )
            for i, answer in zip(wave, answers, strict=True):
                out[i] = answer
        return out

    # -- tools and structured output: the wrapped model formats them, this model sends them -----------

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        return cast(Runnable[LanguageModelInput, AIMessage], _rebind(self.bound.bind_tools(tools, **kwargs), self))

    def with_structured_output(self, schema: Any, **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        return cast(
            Runnable[LanguageModelInput, Any], _rebind(self.bound.with_structured_output(schema, **kwargs), self)
        )


class _StreamFacts:
    """A foreign stream's usage and metadata, summed as it passes; the call's facts go on the chunk that
    carried usage, held back until the next chunk or the end (OpenAI's final usage chunk: no text waits)."""

    def __init__(self, obs: CallObservation) -> None:
        self.obs = obs
        self.usage: UsageMetadata | None = None
        self.meta: dict[str, Any] = {}
        self.held: ChatGenerationChunk | None = None
        self.last: ChatGenerationChunk | None = None

    def add(self, chunk: ChatGenerationChunk) -> Iterator[ChatGenerationChunk]:
        self.usage = _add(self.usage, chunk.message)
        self.meta.update({k: v for k, v in chunk.message.response_metadata.items() if v is not None})
        self.last = chunk
        if self.held is not None:
            yield self.held
            self.held = None
        if getattr(chunk.message, "usage_metadata", None):
            self.held = chunk
        else:
            yield chunk

    def message(self) -> AIMessage | None:
        if self.usage is None:
            return None
        return AIMessage(content="", usage_metadata=self.usage, response_metadata=dict(self.meta))

    def end(
        self, run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None
    ) -> Iterator[ChatGenerationChunk]:
        summary = self.message()
        facts = finish_with_message(self.obs, summary, run_manager)
        target = self.held or self.last
        if target is not None:
            annotate(target.message, facts)  # the last chunk may be out already: LangChain merges chunks later
        if self.held is not None:
            yield self.held


def _add(total: UsageMetadata | None, message: BaseMessage) -> UsageMetadata | None:
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return total
    return usage if total is None else add_usage(total, usage)


def _rebind(runnable: Any, wrapper: PromptCachingChatModel) -> Any:
    """`runnable` (built by the wrapped model: a binding, a sequence with a parser, fallbacks) with every
    use of the wrapped model replaced by `wrapper`, so the calls go through the caching layer."""
    if runnable is wrapper.bound:
        return wrapper
    if isinstance(runnable, RunnableBinding):
        return runnable.model_copy(update={"bound": _rebind(runnable.bound, wrapper)})
    if isinstance(runnable, RunnableSequence):
        steps = [_rebind(step, wrapper) for step in runnable.steps]
        return RunnableSequence(*steps, name=runnable.name)
    if isinstance(runnable, RunnableParallel):
        return RunnableParallel({k: _rebind(v, wrapper) for k, v in runnable.steps__.items()})
    if isinstance(runnable, RunnableWithFallbacks):
        return runnable.model_copy(
            update={
                "runnable": _rebind(runnable.runnable, wrapper),
                "fallbacks": [_rebind(f, wrapper) for f in runnable.fallbacks],
            }
        )
    if isinstance(runnable, RunnableEach):
        return runnable.model_copy(update={"bound": _rebind(runnable.bound, wrapper)})
    return runnable


def with_prompt_caching(
    model: BaseChatModel, *, warmup: bool = True, instrument: Any = None, **options: Any
) -> PromptCachingChatModel:
    """Wrap `model` (ChatOpenAI, ChatAnthropic, ChatGoogleGenerativeAI, ChatDeepSeek, any `BaseChatModel`) so
    that its provider's cache serves repeated context.

    Options: `provider` (default: detected from the model's class and base URL; ``"openai"`` for an OpenAI
    proxy on another host; a server label such as ``"vllm"``, ``"sglang"``, ``"llamacpp"``, ``"deepseek"`` or
    ``"dashscope"`` for a `ChatOpenAI` pointed at that server: it gets the layout without OpenAI-only fields and
    its calls are priced under the label, n/a where nobody prices the model); `layout` (default True: system
    messages first, tools by name); `prompt_cache_key` (OpenAI: a fixed key, a callable of the `CallContext`, or
    None to hash the run's `thread_id` / `session_id`);
    `retention` (OpenAI: ``"in_memory"`` or ``"24h"``); `prompt_cache_options` (GPT-5.6 explicit mode);
    `ttl` (Anthropic: ``"auto"``, the default, picks 1 hour where calls sharing a prefix come more than 5
    minutes apart; ``"5m"`` or ``"1h"`` fix it) and `min_tokens` (Anthropic: model -> minimum cacheable tokens);
    `server_diagnostics` (default False; Anthropic: ask the API's own cache diagnostics on every call, naming the
    conversation's previous response, so the handler's miss diagnosis carries Anthropic's ``cache_miss_reason``).
    `warmup`: send one request of a cold shared prefix before the rest of a `batch`. `instrument`: OpenTelemetry
    spans and metrics per call (see `cache_integrations.otel`; None follows `instrument()`).
    """
    if not isinstance(model, BaseChatModel):
        raise ConfigurationError(f"with_prompt_caching: expected a LangChain BaseChatModel, got {type(model).__name__}")
    if isinstance(model, PromptCachingChatModel):
        return model
    StrategyBook(**options)  # a bad option raises ConfigurationError here, not inside pydantic's ValidationError
    return PromptCachingChatModel(bound=model, options=options, warmup=warmup, instrument=instrument)
