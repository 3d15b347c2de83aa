"""`OpenAICompatible`: this package's LlamaIndex LLM for any server that speaks OpenAI's chat completions.

For DeepSeek, Qwen on DashScope's compatible mode, and local vLLM / SGLang / llama.cpp servers, with any model
name (llama-index-llms-openai's `OpenAI` takes only OpenAI's model names as chat models; `OpenAILike` is a
separate package): the cache-friendly layout, usage with cached tokens on every response, priced under the
server's label. (For OpenAI itself, keep `OpenAI` and wrap it with `with_prompt_caching`.)
"""

from __future__ import annotations

from typing import ClassVar

from llama_index.core.bridge.pydantic import Field, SecretStr

from ..clients import openai_compatible_client
from ..messages import ChatRequest
from ..providers.openai_compatible import OPENAI_COMPATIBLE_LIMITS, OpenAICompatibleProvider, check_label
from ..validation import SamplingLimits
from .llms import CachingLLM

__all__ = ["OpenAICompatible"]


class OpenAICompatible(CachingLLM):
    """Any OpenAI-compatible server as a `FunctionCallingLLM` (chat, complete, stream, async, tools, agents).

    Responses carry the normalized usage (``prompt_tokens_details.cached_tokens``, ``cache_read_input_tokens``,
    ``cache_creation_input_tokens``) in ``raw["usage"]`` and ``additional_kwargs``, and ``raw["provider"]`` is the
    price label the handlers price under (a model nobody prices shows n/a).

    Example:
        ```python
        llm = OpenAICompatible(model="Qwen/Qwen3-8B", base_url="http://localhost:8000/v1", provider="vllm")
        reply = llm.chat([ChatMessage(role="system", content=LONG_RULES), ChatMessage(role="user", content="Hi")])
        print(reply.raw["usage"]["prompt_tokens_details"]["cached_tokens"])
        ```
    """

    model: str = Field(description="Model name the server serves.")
    base_url: str | None = Field(
        default=None, description="The server's OpenAI-compatible root, e.g. http://localhost:8000/v1 (required)."
    )
    provider: str | None = Field(
        default=None,
        description="Price label: deepseek, dashscope, vllm, sglang, llamacpp, openai, openai_compatible or a "
        "genai-prices provider id; None infers it from the host.",
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        description="API key; None reads DEEPSEEK_API_KEY / DASHSCOPE_API_KEY / OPENAI_API_KEY by label, else "
        "OPENAI_COMPATIBLE_API_KEY. Local servers may go without one.",
    )

    _limits: ClassVar[SamplingLimits] = OPENAI_COMPATIBLE_LIMITS

    @classmethod
    def class_name(cls) -> str:
        return "cache_integrations_openai_compatible"

    @property
    def label(self) -> str:
        """The price label calls are reported and priced under."""
        client = self._client
        return client.label if isinstance(client, OpenAICompatibleProvider) else str(self.provider)

    def _connect(self) -> None:
        if self.provider is not None:
            check_label(self.provider)
        self._client = openai_compatible_client(
            owner="OpenAICompatible",
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

    def _resolve(self, request: ChatRequest) -> ChatRequest:
        self._checked(request)  # what the server cannot take fails here, before a stream is opened
        return request

    async def _aresolve(self, request: ChatRequest) -> ChatRequest:
        self._checked(request)
        return request

    def _checked(self, request: ChatRequest) -> None:
        if isinstance(self._client, OpenAICompatibleProvider):
            self._client.check(request)
