"""Building a provider client from an integration's settings, once for every framework adapter.

Both `ChatGLM` (LangChain) and `GLM` (LlamaIndex) — and likewise the Gemini classes — take the
same settings; this is where they become a client, so key checks and wiring live in one place.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from ._secrets import check_api_key
from .errors import ConfigurationError
from .providers._body import DEFAULT_MAX_RESPONSE_BYTES
from .providers.glm import GLMProvider
from .providers.openai_compatible import LOCAL_LABELS, OpenAICompatibleProvider, api_key_env, label_for

if TYPE_CHECKING:  # the Gemini stack (explicit caches, registries, Files API) is imported by the Gemini clients
    from .explicit import CacheMode, ExplicitCacheManager
    from .gemini_chat import GeminiChat

__all__ = ["gemini_chat", "gemini_client", "glm_client", "openai_compatible_client"]


def _key(api_key: SecretStr | None, owner: str, env: str) -> SecretStr:
    """The key without surrounding whitespace (a key read from a file keeps its newline); a key with
    whitespace, control or non-ASCII characters inside is refused here, before any request, by a
    `ConfigurationError` that names the field and position but never prints the key."""
    if api_key is None or not api_key.get_secret_value().strip():
        raise ConfigurationError(f"{owner} needs an API key: pass api_key=... or set {env}")
    return SecretStr(check_api_key(api_key.get_secret_value(), f"{owner} api_key (or {env})"))


def glm_client(
    *,
    owner: str,
    api_key: SecretStr | None,
    base_url: str,
    timeout: float | None = None,
    max_retries: int = 2,
    http_client: httpx.Client | None = None,
    async_http_client: httpx.AsyncClient | None = None,
    default_headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> GLMProvider:
    """A GLM client; `owner` names the class in configuration errors. `deadline` (seconds) bounds a
    whole call across retries and the stream; `max_response_bytes` caps a decoded body or event."""
    return GLMProvider(
        api_key=_key(api_key, owner, "ZHIPUAI_API_KEY"),
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        http_client=http_client,
        async_http_client=async_http_client,
        default_headers=default_headers,
        deadline=deadline,
        max_response_bytes=max_response_bytes,
    )


def openai_compatible_client(
    *,
    owner: str,
    provider: str | None,
    api_key: SecretStr | None,
    base_url: str | None,
    timeout: float | None = None,
    max_retries: int = 2,
    http_client: httpx.Client | None = None,
    async_http_client: httpx.AsyncClient | None = None,
    default_headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> OpenAICompatibleProvider:
    """A client for any OpenAI-compatible server. `provider` is the price label (None: from the host); the key
    is `api_key`, else the label's environment variable (``DEEPSEEK_API_KEY``, ``DASHSCOPE_API_KEY``,
    ``OPENAI_API_KEY``, else ``OPENAI_COMPATIBLE_API_KEY``); local servers (vllm, sglang, llamacpp,
    openai_compatible) may go without one, and then no Authorization header is sent."""
    if not base_url:
        raise ConfigurationError(
            f"{owner} base_url: required, the server's OpenAI-compatible root (e.g. http://localhost:8000/v1)"
        )
    label = label_for(base_url, provider)
    env = api_key_env(label)
    if api_key is None or not api_key.get_secret_value().strip():
        found = os.environ.get(env, "").strip()
        api_key = SecretStr(found) if found else None
    key = None if api_key is None and label in LOCAL_LABELS else _key(api_key, owner, env)
    return OpenAICompatibleProvider(
        label=label,
        api_key=key,
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        http_client=http_client,
        async_http_client=async_http_client,
        default_headers=default_headers,
        deadline=deadline,
        max_response_bytes=max_response_bytes,
    )


def gemini_client(
    *,
    owner: str,
    api_key: SecretStr | None,
    base_url: str,
    timeout: float | None = None,
    max_retries: int = 2,
    http_client: httpx.Client | None = None,
    async_http_client: httpx.AsyncClient | None = None,
    default_headers: Mapping[str, str] | None = None,
    deadline: float | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    cache_mode: CacheMode = "auto",
    cache_ttl: float = 3600.0,
    cache_registry: Any = None,
) -> ExplicitCacheManager:
    """A Gemini client wrapped in the explicit-cache manager (which speaks the same chat interface)."""
    from .explicit import ExplicitCacheManager, registry_from_spec
    from .providers.gemini import GeminiProvider

    provider = GeminiProvider(
        api_key=_key(api_key, owner, "GEMINI_API_KEY"),
        base_url=base_url,
        timeout=timeout,
        max_retries=max_retries,
        http_client=http_client,
        async_http_client=async_http_client,
        default_headers=default_headers,
        deadline=deadline,
        max_response_bytes=max_response_bytes,
    )
    return ExplicitCacheManager(provider, registry=registry_from_spec(cache_registry), mode=cache_mode, ttl=cache_ttl)


def gemini_chat(*, owner: str, file_upload_threshold: int | None = None, **settings: Any) -> GeminiChat:
    """What `ChatGemini` and LlamaIndex `Gemini` send through: the explicit-cache manager of `gemini_client`
    (same settings), with large media uploaded once per content through the same registry (`ManagedFiles`)."""
    from .explicit.files import ManagedFiles
    from .gemini_chat import GeminiChat
    from .providers.gemini import GeminiProvider
    from .providers.gemini_media import DEFAULT_FILE_UPLOAD_THRESHOLD, GeminiMedia

    if file_upload_threshold is None:
        file_upload_threshold = DEFAULT_FILE_UPLOAD_THRESHOLD
    manager = gemini_client(owner=owner, **settings)
    provider = manager.client
    assert isinstance(provider, GeminiProvider)
    files = ManagedFiles(manager, provider.files)
    return GeminiChat(manager, GeminiMedia(provider.files, threshold=file_upload_threshold, uploader=files), files)
