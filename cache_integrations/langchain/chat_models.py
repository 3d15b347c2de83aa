"""`ChatGLM`: a drop-in LangChain chat model for Zhipu GLM / Z.ai that keeps prefixes cacheable."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from langchain_core.utils import from_env, secret_from_env
from pydantic import AliasChoices, Field, SecretStr, model_validator

from ..providers._endpoints import GLM_BASE_URL
from ..validation import GLM_LIMITS, SamplingLimits
from ._base import CachingChatModel

__all__ = ["ChatGLM"]


class ChatGLM(CachingChatModel):
    """Zhipu GLM chat model with implicit prompt caching made visible.

    Every response's ``usage_metadata.input_token_details.cache_read`` carries GLM's
    ``cached_tokens`` (in invoke and, on the final chunk, in stream), and requests are laid out so
    that repeated system prompts, tools and history form a byte-identical, cacheable prefix.

    Example:
        ```python
        from cache_integrations.langchain import ChatGLM, get_cache_usage_callback

        llm = ChatGLM(model="glm-4.7")  # key from ZHIPUAI_API_KEY
        with get_cache_usage_callback() as usage:
            llm.invoke([("system", LONG_INSTRUCTIONS), ("human", "First question")])
            llm.invoke([("system", LONG_INSTRUCTIONS), ("human", "Second question")])
        print(usage.report())
        ```

    Use ``base_url=ZAI_BASE_URL`` for the international Z.ai endpoint.
    """

    model: str = Field(default="glm-4.7", validation_alias=AliasChoices("model", "model_name"))
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("ZHIPUAI_API_KEY", default=None),
        validation_alias=AliasChoices("api_key", "zhipuai_api_key"),
    )
    """API key; read from ``ZHIPUAI_API_KEY`` when not given."""
    base_url: str = Field(
        default_factory=from_env("ZHIPUAI_BASE_URL", default=GLM_BASE_URL),
        validation_alias=AliasChoices("base_url", "api_base"),
    )
    """``https://open.bigmodel.cn/api/paas/v4`` (default) or ``https://api.z.ai/api/paas/v4``."""
    thinking: Literal["enabled", "disabled"] | None = None
    """GLM-4.5+ thinking mode; None leaves the model's default."""
    reasoning_effort: str | None = None
    """For glm-5.2+: ``low``, ``high`` or ``max``."""

    _ls_provider: ClassVar[str] = "zhipuai"
    _limits: ClassVar[SamplingLimits] = GLM_LIMITS
    # GLM documents only tool_choice "auto": structured output offers the single tool instead of forcing it.
    _structured_tool_choice_forced: ClassVar[bool] = False

    @model_validator(mode="after")
    def _connect(self) -> Self:
        from ..clients import glm_client  # the HTTP stack (httpx) is imported when a model is built

        self._client = glm_client(
            owner="ChatGLM",
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
    def _llm_type(self) -> str:
        return "zhipuai-chat"

    @property
    def lc_secrets(self) -> dict[str, str]:
        return {"api_key": "ZHIPUAI_API_KEY"}

    def _extra_body(self) -> dict[str, Any]:
        from ..providers.glm import glm_options

        return glm_options(thinking=self.thinking, reasoning_effort=self.reasoning_effort)
