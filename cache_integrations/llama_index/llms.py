"""`GLM` and `Gemini`: drop-in LlamaIndex LLMs that keep prompts cacheable and report cached tokens.

Both are `FunctionCallingLLM`s over the framework-agnostic core providers: the public methods are
the ones LlamaIndex instruments (exactly one LLM event per API call, `complete` included), tools
round-trip through `ToolCallBlock`s, and every response carries one normalized usage dict in
``raw["usage"]`` and ``additional_kwargs`` (on the final chunk when streaming).

Example:
    ```python
    from llama_index.core import Settings, VectorStoreIndex
    from cache_integrations.llama_index import GLM, get_cache_usage_handler

    Settings.llm = GLM(model="glm-4.7")  # key from ZHIPUAI_API_KEY
    with get_cache_usage_handler() as usage:
        engine = VectorStoreIndex.from_documents(docs).as_chat_engine()
        engine.chat("First question")
        engine.chat("Second question")
    print(usage.report())
    ```
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator
from llama_index.core.constants import DEFAULT_NUM_OUTPUTS
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from ..clients import glm_client
from ..diagnostics import credential_scope
from ..messages import ChatRequest, StreamChunk, ToolDefinition, tool_choice_from_spec
from ..observe import (
    CallObservation,
    aobserved_stream,
    check_instrument,
    finish_response,
    observe_provider_call,
    observed_stream,
)
from ..providers import ChatProvider
from ..providers.glm import GLM_BASE_URL, check_media, glm_options
from ..validation import GLM_LIMITS, SamplingLimits, check_arguments, validate_request, validate_settings
from ._convert import (
    StreamAccumulator,
    chat_response_from_core,
    messages_from_llama_index,
    parse_tool_kwargs,
    tool_from_llama_index,
)
from ._handoff import publish

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["GLM", "CachingLLM", "context_window_for"]

# (model-name prefix, context window in tokens); the first matching prefix wins, so specific
# names come before the families they belong to.
_CONTEXT_WINDOWS: tuple[tuple[str, int], ...] = (
    ("glm-5", 204_800),
    ("glm-4.7", 204_800),
    ("glm-4.6v", 131_072),
    ("glm-4.6", 204_800),
    ("glm-4.5v", 65_536),
    ("glm-4.5", 131_072),
    ("glm-4-long", 1_000_000),
    ("glm-4", 131_072),
    ("gemini-3", 1_048_576),
    ("gemini-2.5", 1_048_576),
    ("gemini-2.0", 1_048_576),
    ("gemini-1.5-pro", 2_097_152),
    ("gemini-1.5", 1_048_576),
)


def context_window_for(model: str, default: int) -> int:
    """The context window of a known model (by name prefix), else `default`."""
    name = str(model or "").lower().removeprefix("models/")
    for prefix, window in _CONTEXT_WINDOWS:
        if name.startswith(prefix):
            return window
    return default


def _secret_from_env(*names: str) -> SecretStr | None:
    for name in names:
        if value := os.environ.get(name):
            return SecretStr(value)
    return None


class CachingLLM(FunctionCallingLLM):
    """Base of the package's LlamaIndex LLMs over a core `ChatProvider`. Not used directly."""

    model: str = Field(description="Model name sent to the provider.")
    temperature: float | None = Field(default=None, description="Sampling temperature; None: the provider's.")
    top_p: float | None = Field(default=None, description="Nucleus sampling; None: the provider's.")
    max_tokens: int | None = Field(default=None, description="Maximum output tokens; None: the provider's.")
    timeout: float | None = Field(default=None, description="Seconds before a request times out.")
    max_retries: int = Field(default=2, description="Retries of rate limits, 5xx and connection errors.")
    deadline: float | None = Field(
        default=None,
        description="Seconds one call may take in all, across retries and the whole stream (None: only the "
        "per-attempt timeout); past it the call raises DeadlineExceededError.",
    )
    context_window: int | None = Field(
        default=None, description="Overrides the context window reported in `metadata` (unknown models)."
    )
    cache_friendly_layout: bool = Field(
        default=True,
        description="Hoist system messages and order tools canonically so request prefixes stay byte-identical.",
    )
    additional_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra provider body fields sent with every request."
    )
    default_headers: dict[str, str] | None = Field(default=None, description="Extra HTTP headers.")
    http_client: Any = Field(default=None, exclude=True, description="An httpx.Client to use.")
    http_async_client: Any = Field(default=None, exclude=True, description="An httpx.AsyncClient to use.")
    instrument: Any = Field(
        default=None,
        exclude=True,
        description="OpenTelemetry spans and metrics per call: None follows cache_integrations.otel.instrument(), "
        "True / False turn them on / off, or a cache_integrations.otel.Instrumentation.",
    )

    model_config = ConfigDict(extra="forbid")  # a misspelled argument (base_ur=) fails, never dropped

    _client: ChatProvider = PrivateAttr()
    _scope: str | None = PrivateAttr(default=None)
    _default_context_window: ClassVar[int] = 131_072

    @field_validator("instrument")
    @classmethod
    def _check_instrument(cls, value: Any) -> Any:
        return check_instrument(value)

    # What `tool_required=True` asks the provider for.
    _required_tool_choice: ClassVar[str] = "required"
    _limits: ClassVar[SamplingLimits]  # the provider's sampling ranges, checked here and on every call

    def __init__(self, **data: Any) -> None:
        check_arguments(type(self), data)  # unknown arguments: ConfigurationError with a did-you-mean
        super().__init__(**data)
        # After validation, so a missing key or a bad setting raises ConfigurationError itself.
        validate_settings(type(self).__name__, self._limits, self)
        self._connect()
        self._scope = credential_scope(self._client)

    @classmethod
    def class_name(cls) -> str:
        return "cache_integrations_llm"

    # -- provider hooks ---------------------------------------------------------------------------

    def _connect(self) -> None:
        """Build the provider client from the validated settings."""
        raise NotImplementedError

    def _extra_body(self) -> dict[str, Any]:
        """Provider-specific body fields derived from the model's settings."""
        return {}

    def _resolve(self, request: ChatRequest) -> ChatRequest:
        """Provider-specific preparation of a built request before it is sent (Gemini uploads large media)."""
        return request

    async def _aresolve(self, request: ChatRequest) -> ChatRequest:
        return request

    @property
    def client(self) -> ChatProvider:
        """The core provider client (shared by sync and async calls)."""
        return self._client

    @property
    def price_provider(self) -> str:
        """The genai-prices provider id this model's calls are priced under."""
        return self._client.price_provider

    # -- LlamaIndex plumbing ----------------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        """LlamaIndex's payload of every LLM event, plus whether requests go through the layout step."""
        extra = {"cache_friendly_layout": self.cache_friendly_layout, "credential_scope": self._scope}
        return {**super().to_payload(), **extra}  # credential_scope: diagnostics never merge two tenants

    @property
    def metadata(self) -> LLMMetadata:
        """Never raises (LlamaIndex calls it on every call): unknown models get the class default."""
        window = self.context_window or context_window_for(self.model, self._default_context_window)
        return LLMMetadata(
            context_window=window,
            num_output=self.max_tokens or DEFAULT_NUM_OUTPUTS,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=str(self.model),
            system_role=MessageRole.SYSTEM,
        )

    def _build_request(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> ChatRequest:
        kw = dict(kwargs)
        tools = tuple(tool_from_llama_index(t) for t in kw.pop("tools", None) or ())
        tool_choice = tool_choice_from_spec(kw.pop("tool_choice", None), [t.name for t in tools])
        stop = kw.pop("stop", None)
        request = ChatRequest(
            model=kw.pop("model", None) or self.model,
            messages=messages_from_llama_index(messages),
            tools=tools,
            tool_choice=tool_choice,
            temperature=kw.pop("temperature", self.temperature),
            top_p=kw.pop("top_p", self.top_p),
            max_tokens=kw.pop("max_tokens", self.max_tokens),
            stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            response_format=kw.pop("response_format", None),
            extra={**self._extra_body(), **self.additional_kwargs, **kw},
        )
        publish(request, layout=self.cache_friendly_layout)  # the call's cache usage handlers never convert again
        return request

    # -- the private, undecorated implementations -------------------------------------------------

    def _observe(self, request: ChatRequest) -> CallObservation:
        return observe_provider_call(
            self.instrument, self._client, request, layout=self.cache_friendly_layout, facts=False
        )

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = self._resolve(self._build_request(messages, kwargs))
        obs = self._observe(request)
        try:
            with obs.active():
                response = self._client.chat(request, layout=self.cache_friendly_layout)
        except BaseException as exc:
            obs.fail(exc)
            raise
        finish_response(obs, response)
        return chat_response_from_core(response, self._client.price_provider)

    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        request = await self._aresolve(self._build_request(messages, kwargs))
        obs = self._observe(request)
        try:
            with obs.active():
                response = await self._client.achat(request, layout=self.cache_friendly_layout)
        except BaseException as exc:
            obs.fail(exc)
            raise
        finish_response(obs, response)
        return chat_response_from_core(response, self._client.price_provider)

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        request = self._build_request(messages, kwargs)  # bad input raises here, not mid-iteration
        validate_request(request, self._limits)  # (the provider's encode step runs only once iterated)
        request = self._resolve(request)
        provider = self._client.price_provider
        chunks = self._client.stream(request, layout=self.cache_friendly_layout)

        def gen() -> ChatResponseGen:
            acc = StreamAccumulator()
            for chunk, _ in observed_stream(self._observe(request), chunks):
                if chunk.final:
                    yield chat_response_from_core(acc.response(chunk), provider, delta="")
                    return
                acc.add(chunk)
                yield _delta_response(acc, chunk)

        return gen()

    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        request = self._build_request(messages, kwargs)
        validate_request(request, self._limits)
        request = await self._aresolve(request)
        provider = self._client.price_provider
        chunks = self._client.astream(request, layout=self.cache_friendly_layout)

        async def gen() -> ChatResponseAsyncGen:
            acc = StreamAccumulator()
            async for chunk, _ in aobserved_stream(self._observe(request), chunks):
                if chunk.final:
                    yield chat_response_from_core(acc.response(chunk), provider, delta="")
                    return
                acc.add(chunk)
                yield _delta_response(acc, chunk)

        return gen()

    # -- the public, instrumented API (one event per API call) ------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return await self._astream_chat(messages, **kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self._chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await achat_to_completion_decorator(self._achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self._stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self._astream_chat)(prompt, **kwargs)

    # -- tools --------------------------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The `chat` arguments for a tool-calling turn: messages, tool definitions, tool_choice."""
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(
                ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str) else user_msg
            )
        definitions: list[ToolDefinition] = [tool_from_llama_index(t) for t in tools]
        tool_choice = kwargs.pop("tool_choice", None)
        if tool_choice is None and tool_required and definitions:
            tool_choice = self._required_tool_choice
        return {"messages": messages, "tools": definitions or None, "tool_choice": tool_choice, **kwargs}

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Without parallel tool calls, keep only the first call the model made."""
        calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        if allow_parallel_tool_calls or len(calls) <= 1:
            return response
        blocks = [b for b in response.message.blocks if not isinstance(b, ToolCallBlock) or b is calls[0]]
        extra = dict(response.message.additional_kwargs)
        if isinstance(extra.get("tool_calls"), list):
            extra["tool_calls"] = [tc for tc in extra["tool_calls"] if _call_id(tc) == calls[0].tool_call_id]
        message = response.message.model_copy(update={"blocks": blocks, "additional_kwargs": extra})
        return response.model_copy(update={"message": message})

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """`ToolSelection`s from the response's `ToolCallBlock`s."""
        calls = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected at least one tool call, got none: {response.message.content!r:.200}")
        return [
            ToolSelection(
                tool_id=b.tool_call_id or "", tool_name=b.tool_name, tool_kwargs=parse_tool_kwargs(b.tool_kwargs)
            )
            for b in calls
        ]


def _call_id(tool_call: Any) -> Any:
    return tool_call.get("id") if isinstance(tool_call, dict) else getattr(tool_call, "id", None)


def _delta_response(acc: StreamAccumulator, chunk: StreamChunk) -> ChatResponse:
    """A streamed delta: the text so far, no usage (that comes once, on the final chunk)."""
    blocks: list[Any] = []
    if acc.reasoning:
        blocks.append(ThinkingBlock(content="".join(acc.reasoning)))
    blocks.append(TextBlock(text="".join(acc.text)))
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks),
        delta=chunk.text,
        additional_kwargs={"thinking_delta": chunk.reasoning} if chunk.reasoning else {},
    )


class GLM(CachingLLM):
    """Zhipu GLM / Z.ai with implicit prompt caching made visible.

    Responses report GLM's ``cached_tokens`` as ``prompt_tokens_details.cached_tokens`` (and
    ``cache_read_input_tokens``) in ``raw["usage"]`` and ``additional_kwargs``; requests are laid out
    so repeated system prompts, tools and history form a byte-identical, cacheable prefix.
    `CachePoint` blocks and ``cache_control`` markers are accepted and ignored (GLM caches implicitly).

    Example:
        ```python
        llm = GLM(model="glm-4.7")  # key from ZHIPUAI_API_KEY
        reply = llm.chat([ChatMessage(role="system", content=LONG_RULES), ChatMessage(role="user", content="Hi")])
        print(reply.raw["usage"]["prompt_tokens_details"]["cached_tokens"])
        ```

    Use ``base_url=ZAI_BASE_URL`` for the international Z.ai endpoint.
    """

    model: str = Field(default="glm-4.7", description="GLM model name.")
    api_key: SecretStr | None = Field(
        default_factory=lambda: _secret_from_env("ZHIPUAI_API_KEY"),
        exclude=True,
        description="API key; read from ZHIPUAI_API_KEY when not given.",
    )
    base_url: str = Field(
        default_factory=lambda: os.environ.get("ZHIPUAI_BASE_URL") or GLM_BASE_URL,
        description="https://open.bigmodel.cn/api/paas/v4 (default) or https://api.z.ai/api/paas/v4.",
    )
    thinking: Literal["enabled", "disabled"] | None = Field(
        default=None, description="GLM-4.5+ thinking mode; None leaves the model's default."
    )
    reasoning_effort: str | None = Field(default=None, description="For glm-5.2+: low, high or max.")

    _default_context_window: ClassVar[int] = 131_072
    _limits: ClassVar[SamplingLimits] = GLM_LIMITS
    # GLM documents only tool_choice "auto": `tool_required` offers the tools without forcing them.
    _required_tool_choice: ClassVar[str] = "auto"

    @classmethod
    def class_name(cls) -> str:
        return "cache_integrations_glm"

    def _connect(self) -> None:
        self._client = glm_client(
            owner="GLM",
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            deadline=self.deadline,
            http_client=self.http_client,
            async_http_client=self.http_async_client,
            default_headers=self.default_headers,
        )

    def _resolve(self, request: ChatRequest) -> ChatRequest:
        check_media(request)  # media GLM cannot take fails here, before a stream is opened
        return request

    async def _aresolve(self, request: ChatRequest) -> ChatRequest:
        check_media(request)
        return request

    def _extra_body(self) -> dict[str, Any]:
        return glm_options(thinking=self.thinking, reasoning_effort=self.reasoning_effort)
