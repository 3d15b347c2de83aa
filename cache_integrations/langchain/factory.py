"""`init_chat_model`: LangChain's model factory, with prompt caching.

    from cache_integrations.langchain import init_chat_model

    glm = init_chat_model("zhipuai:glm-4.7")                          # ChatGLM
    gemini = init_chat_model("google_genai:gemini-2.5-flash", cache="auto")  # ChatGemini, explicit caches
    claude = init_chat_model("anthropic:claude-sonnet-4-5")           # ChatAnthropic, with_prompt_caching
    local = init_chat_model("vllm:Qwen/Qwen3-8B", base_url="http://localhost:8000/v1")  # ChatOpenAICompatible

GLM and Gemini get this package's own chat models (they manage caching end to end), and so do OpenAI-compatible
servers LangChain has no class for: ``vllm:``, ``sglang:``, ``llamacpp:``, ``dashscope:`` and
``openai_compatible:`` give a `ChatOpenAICompatible` labelled so (a `base_url` is required). Every other provider
gets LangChain's own `init_chat_model` result wrapped with `with_prompt_caching`.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from ..errors import ConfigurationError
from .caching import with_prompt_caching

__all__ = ["init_chat_model"]

_OWN = {"zhipuai": "glm", "zai": "glm", "glm": "glm", "google_genai": "gemini", "google": "gemini", "gemini": "gemini"}
_COMPATIBLE = ("vllm", "sglang", "llamacpp", "dashscope", "openai_compatible")
_CACHE_MODES = ("auto", "always", "off")
# Options `with_prompt_caching` takes, taken out of the keyword arguments before they reach the model.
_CACHING_OPTIONS = (
    "prompt_cache_key",
    "retention",
    "prompt_cache_options",
    "ttl",
    "min_tokens",
    "layout",
    "warmup",
    "server_diagnostics",
)


def _split(model: str | None, model_provider: str | None) -> tuple[str | None, str | None]:
    if model_provider is None and model and ":" in model:
        head, tail = model.split(":", 1)
        if head and tail and " " not in head:
            return tail, head
    return model, model_provider


def init_chat_model(
    model: str | None = None,
    *,
    model_provider: str | None = None,
    cache: str | None = None,
    **kwargs: Any,
) -> BaseChatModel:
    """A chat model for ``"provider:model"`` (or `model` with `model_provider`), with prompt caching.

    `cache`: for Gemini, the `cache_mode` (``"auto"``, ``"always"``, ``"off"``); for other providers
    ``"off"`` returns LangChain's model unwrapped. Caching options (`prompt_cache_key`, `retention`, `ttl`,
    ...) go to `with_prompt_caching`; everything else to the model.
    """
    if cache is not None and cache not in _CACHE_MODES:
        raise ConfigurationError(f"cache: {cache!r} is not one of {list(_CACHE_MODES)}")
    name, provider = _split(model, model_provider)
    own = _OWN.get((provider or "").lower())
    if own == "glm":
        from .chat_models import ChatGLM

        return ChatGLM(model=name, **kwargs) if name else ChatGLM(**kwargs)
    label = (provider or "").lower().replace("-", "_").replace(".", "").replace("llama_cpp", "llamacpp")
    if label in _COMPATIBLE:
        from .openai_compatible import ChatOpenAICompatible

        if not name:
            raise ConfigurationError(f"init_chat_model: {label}: a model name is required ('{label}:<model>')")
        return ChatOpenAICompatible(model=name, provider=label, **kwargs)
    if own == "gemini":
        from .gemini import ChatGemini

        if cache is not None:
            kwargs["cache_mode"] = cache
        return ChatGemini(model=name, **kwargs) if name else ChatGemini(**kwargs)
    try:
        from langchain.chat_models import init_chat_model as lc_init_chat_model
    except ImportError as exc:
        raise ConfigurationError(
            f"init_chat_model: provider {provider!r} needs LangChain's factory: pip install langchain "
            "(and the provider's package, e.g. langchain-openai)"
        ) from exc
    options = {k: kwargs.pop(k) for k in _CACHING_OPTIONS if k in kwargs}
    base = lc_init_chat_model(name, model_provider=provider, **kwargs)
    if not isinstance(base, BaseChatModel):
        raise ConfigurationError("init_chat_model: configurable models are not supported; pass a model name")
    if cache == "off":
        return base
    return with_prompt_caching(base, **options)
