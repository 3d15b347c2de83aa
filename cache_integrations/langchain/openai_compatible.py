"""`ChatOpenAICompatible`: this package's chat model for any server that speaks OpenAI's chat completions.

For DeepSeek, Qwen on DashScope's compatible mode, and local vLLM / SGLang / llama.cpp servers: the same
cache-friendly layout, usage and errors as `ChatGLM`, priced under the server's label. (For OpenAI itself, keep
langchain-openai's `ChatOpenAI` and wrap it with `with_prompt_caching`: it adds the routing key OpenAI caches by.)
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

from langchain_core.language_models import LangSmithParams
from pydantic import AliasChoices, Field, SecretStr, model_validator

from ..clients import openai_compatible_client
from ..providers.openai_compatible import OPENAI_COMPATIBLE_LIMITS, OpenAICompatibleProvider, check_label
from ..validation import SamplingLimits
from ._base import CachingChatModel

__all__ = ["ChatOpenAICompatible"]


class ChatOpenAICompatible(CachingChatModel):
    """A chat model for any OpenAI-compatible server, with its prompt caching made visible and priced.

    Every response's ``usage_metadata.input_token_details.cache_read`` carries the server's cached tokens,
    wherever it reports them (``prompt_tokens_details.cached_tokens``, DeepSeek's ``prompt_cache_hit_tokens``,
    DashScope's ``cache_creation_input_tokens`` as ``cache_creation``, llama.cpp's ``timings.cache_n``), streams
    ask for usage (``stream_options.include_usage``), and requests are laid out so repeated system prompts, tools
    and history form a byte-identical prefix. ``response_metadata["model_provider"]`` is the price label.

    Example:
        ```python
        from cache_integrations.langchain import ChatOpenAICompatible, get_cache_usage_callback

        llm = ChatOpenAICompatible(model="Qwen/Qwen3-8B", base_url="http://localhost:8000/v1", provider="vllm")
        deepseek = ChatOpenAICompatible(model="deepseek-chat", base_url="https://api.deepseek.com")  # DEEPSEEK_API_KEY
        with get_cache_usage_callback() as usage:
            deepseek.invoke([("system", LONG_INSTRUCTIONS), ("human", "First question")])
        print(usage.report())  # cost under genai-prices' deepseek prices; n/a for a model nobody prices
        ```
    """

    model: str = Field(validation_alias=AliasChoices("model", "model_name"))
    base_url: str | None = Field(default=None, validation_alias=AliasChoices("base_url", "api_base", "openai_api_base"))
    """The server's OpenAI-compatible root, the URL ``/chat/completions`` is appended to (required)."""
    provider: str | None = None
    """The price label: ``deepseek``, ``dashscope``, ``vllm``, ``sglang``, ``llamacpp``, ``openai``,
    ``openai_compatible`` or a genai-prices provider id; None infers it from the host (unknown hosts:
    ``openai_compatible``, which nobody prices)."""
    api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("api_key", "openai_api_key"))
    """API key; None reads the label's variable (``DEEPSEEK_API_KEY``, ``DASHSCOPE_API_KEY``, ``OPENAI_API_KEY``,
    else ``OPENAI_COMPATIBLE_API_KEY``). Local servers (vllm, sglang, llamacpp) may go without one."""

    _limits: ClassVar[SamplingLimits] = OPENAI_COMPATIBLE_LIMITS

    @model_validator(mode="after")
    def _connect(self) -> Self:
        if self.provider is not None:
            check_label(self.provider)
        self._client = openai_compatible_client(
            owner="ChatOpenAICompatible",
            provider=self.provider,
            api_key=self.api_key,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=self.max_retries,
            deadline=self.deadline,
            http_client=self.http_client,
            async_http_client=self.http_async_client,
            default_headers=self.default_headers,
        )
        return self

    @property
    def label(self) -> str:
        """The price label calls are reported and priced under."""
        client = self._client
        return client.label if isinstance(client, OpenAICompatibleProvider) else str(self.provider)

    @property
    def _llm_type(self) -> str:
        return f"{self.label}-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "OPENAI_COMPATIBLE_API_KEY"}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.label
        return params
