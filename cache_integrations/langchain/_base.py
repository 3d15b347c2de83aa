"""What every cache-aware LangChain chat model of this package shares, whatever the provider.

Subclasses build a provider client (`_make_client`) and may add provider-specific body fields
(`_extra_body`); request building, invoke/stream/async, tools and structured output live here once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, ClassVar, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import JsonOutputKeyToolsParser, JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import PydanticToolsParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, PrivateAttr

from ..errors import InvalidRequestError
from ..messages import ChatRequest, tool_choice_from_spec
from ..providers import ChatProvider
from ._convert import (
    ai_message_from_response,
    message_chunk_from_stream,
    messages_from_langchain,
    tool_from_langchain,
)

__all__ = ["CachingChatModel"]

_StructuredMethod = Literal["function_calling", "json_mode", "json_schema"]


class CachingChatModel(BaseChatModel):
    """Base of the package's chat models. Not used directly."""

    model: str = Field(validation_alias=AliasChoices("model", "model_name"))
    """Model name sent to the provider."""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = Field(default=None, validation_alias=AliasChoices("max_tokens", "max_completion_tokens"))
    stop: list[str] | None = Field(default=None, validation_alias=AliasChoices("stop", "stop_sequences"))
    timeout: float | None = None
    """Seconds before a request times out (default: 600 s read, 10 s connect)."""
    max_retries: int = 2
    """Retries of rate limits, 5xx and connection errors, with exponential backoff and Retry-After."""
    streaming: bool = False
    cache_friendly_layout: bool = True
    """Hoist system messages and order tools canonically so request prefixes stay byte-identical."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra body fields sent with every request."""
    default_headers: dict[str, str] | None = None
    http_client: Any = Field(default=None, exclude=True)
    """An `httpx.Client` to use (proxies, custom transports, the emulator's transport)."""
    http_async_client: Any = Field(default=None, exclude=True)
    """An `httpx.AsyncClient` to use."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, protected_namespaces=())

    _ls_provider: ClassVar[str] = "provider"
    _structured_tool_choice_forced: ClassVar[bool] = True
    _client: ChatProvider = PrivateAttr()

    # -- provider hooks ---------------------------------------------------------------------------

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
        """The provider client (shared by sync and async calls; pooled connections)."""
        return self._client

    # -- LangChain plumbing -----------------------------------------------------------------------

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "cache_friendly_layout": self.cache_friendly_layout,
            **self._extra_body(),
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=self._ls_provider,
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
        )
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            params["ls_temperature"] = temperature
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            params["ls_max_tokens"] = max_tokens
        if stop := stop or kwargs.get("stop") or self.stop:
            params["ls_stop"] = list(stop)
        return params

    def _build_request(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> ChatRequest:
        kw = dict(kwargs)
        kw.pop("stream", None)
        raw_tools = kw.pop("tools", None) or ()
        tools = tuple(tool_from_langchain(t) for t in raw_tools)
        tool_choice = tool_choice_from_spec(kw.pop("tool_choice", None), [t.name for t in tools])
        stop_seq = stop if stop is not None else kw.pop("stop", None)
        if stop_seq is None:
            stop_seq = self.stop
        kw.pop("stop", None)
        return ChatRequest(
            model=kw.pop("model", None) or self.model,
            messages=messages_from_langchain(messages),
            tools=tools,
            tool_choice=tool_choice,
            temperature=kw.pop("temperature", self.temperature),
            top_p=kw.pop("top_p", self.top_p),
            max_tokens=kw.pop("max_tokens", self.max_tokens),
            stop=tuple(stop_seq or ()),
            response_format=kw.pop("response_format", None),
            extra={**self._extra_body(), **self.model_kwargs, **kw},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._resolve(self._build_request(messages, stop, kwargs))
        response = self._client.chat(request, layout=self.cache_friendly_layout)
        return self._result(ai_message_from_response(response, self._client.price_provider))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = await self._aresolve(self._build_request(messages, stop, kwargs))
        response = await self._client.achat(request, layout=self.cache_friendly_layout)
        return self._result(ai_message_from_response(response, self._client.price_provider))

    @staticmethod
    def _result(message: AIMessage) -> ChatResult:
        meta = message.response_metadata
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": meta.get("model_name"), "model_provider": meta.get("model_provider")},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._resolve(self._build_request(messages, stop, kwargs))
        provider = self._client.price_provider
        for chunk in self._client.stream(request, layout=self.cache_friendly_layout):
            gen = ChatGenerationChunk(message=message_chunk_from_stream(chunk, provider))
            if run_manager:
                run_manager.on_llm_new_token(gen.text, chunk=gen)
            yield gen

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = await self._aresolve(self._build_request(messages, stop, kwargs))
        provider = self._client.price_provider
        async for chunk in self._client.astream(request, layout=self.cache_friendly_layout):
            gen = ChatGenerationChunk(message=message_chunk_from_stream(chunk, provider))
            if run_manager:
                await run_manager.on_llm_new_token(gen.text, chunk=gen)
            yield gen

    # -- tools and structured output --------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[Mapping[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | Mapping[str, Any] | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; they are validated (JSON-serializable schemas, known tool_choice) right here."""
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        names = [tool_from_langchain(t).name for t in formatted]
        if tool_choice is not None:
            tool_choice_from_spec(tool_choice, names)
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        method: _StructuredMethod = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Structured output through a tool call (`function_calling`, `json_schema`) or JSON mode.

        `json_schema` uses a tool call too: it is the route every supported provider enforces.
        """
        if kwargs:
            raise InvalidRequestError(f"with_structured_output: unsupported arguments {sorted(kwargs)!r}")
        if method not in ("function_calling", "json_mode", "json_schema"):
            raise InvalidRequestError(
                f"with_structured_output: method {method!r} is not one of "
                "'function_calling', 'json_mode', 'json_schema'"
            )
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        llm: Runnable[LanguageModelInput, AIMessage]
        if method == "json_mode":
            llm = self.bind(response_format={"type": "json_object"}, ls_structured_output_format=ls_format)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            name = convert_to_openai_tool(schema)["function"]["name"]
            choice = name if self._structured_tool_choice_forced else "auto"
            llm = self.bind_tools([schema], tool_choice=choice, strict=strict, ls_structured_output_format=ls_format)
            if is_pydantic:
                parser = PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
            else:
                parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        if not include_raw:
            return llm | parser
        parse_assign = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        parse_none = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse_assign.with_fallbacks([parse_none], exception_key="parsing_error")
