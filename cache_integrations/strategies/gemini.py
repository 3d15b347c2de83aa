"""Gemini explicit context caches behind any Gemini client (langchain-google-genai, llama-index-llms-google-genai).

Gemini serves a long prefix cheaply from an explicit ``cachedContents`` resource: create it once with the system
instruction, tools, tool config and leading turns, then name it in ``cachedContent`` and send only the rest.
Foreign clients take a ``cached_content`` name but never create, reuse, extend or recover one, and they send the
system instruction and tools next to it, which Gemini rejects with a 400 (langchain-google-genai issues #978,
#1528, #1618). This strategy does the cache's work through our own `ExplicitCacheManager` (one per credential and
endpoint, keyed by a fingerprint, never by the key) and returns a plan the adapters apply to the caller's model:

- ``options={"cached_content": name}``, ``drop_system_and_tools=True`` and ``cached_messages=k``: send no system
  message, no tools and no tool config, and leave out the first `k` non-system messages (after the layout);
- ``cache``: the manager's `CacheDecision` (its ``use`` goes in the response's metadata, so handlers book the
  cache's writes and storage); `observe` settles it, `recover` replaces a cache the client reported gone.

The manager's policy applies unchanged (``cache_mode``: ``"auto"`` creates a cache once the prefix is sent often
enough within one TTL to pay for itself and not while the implicit cache serves it; ``"always"``; ``"off"``).
Models without explicit caching (Gemini 4 Argon and later, see `gemini_models`), Vertex AI clients, OAuth
clients, and calls the adapter could not convert exactly get the cache-friendly layout only; Gemini's implicit
cache still serves those.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from ..errors import CachedContentNotFoundError, ConfigurationError
from ..gemini_models import explicit_caching_supported, normalize_gemini_model
from ..layout import layout_order, tool_order
from ..messages import ChatRequest, ForcedTool, ToolChoice, ToolDefinition, tool_choice_from_spec
from ..usage import Usage
from .base import CachePlan, CallContext

if TYPE_CHECKING:  # the explicit-cache stack is imported when a Gemini call is first planned, not with every model
    from ..explicit import CacheDecision, CacheRegistry, ExplicitCacheManager


def _is_decision(value: Any) -> bool:
    from ..explicit import CacheDecision

    return isinstance(value, CacheDecision)


__all__ = [
    "GEMINI_OPTIONS",
    "GeminiEndpoint",
    "GeminiExplicitStrategy",
    "cached_content_gone",
    "gemini_endpoint",
    "gemini_options",
    "tool_choice_from_gemini_config",
    "tools_from_gemini",
]

GEMINI_OPTIONS: tuple[str, ...] = ("cache_mode", "cache_ttl", "cache_registry")
"""Strategy options for Gemini explicit caches (the names `ChatGemini` uses for the same settings)."""
_MODES = ("auto", "always", "off")

# Headers google-genai sets itself (the key travels in x-goog-api-key; ours sets its own client headers).
_SDK_HEADERS = frozenset(("content-type", "x-goog-api-key", "user-agent", "x-goog-api-client"))


@dataclass(frozen=True)
class GeminiEndpoint:
    """Where and as whom a Gemini client sends requests: the versioned base URL (``.../v1beta``), the API key
    (a `SecretStr`: hidden in reprs) and any extra headers (a gateway's; not shown either)."""

    base_url: str
    api_key: SecretStr
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def fingerprint(self) -> str:
        """Identifies the credential and endpoint (a hash: the key cannot be read back from it)."""
        digest = hashlib.sha256(b"cache-integrations/gemini-endpoint/v1\0")
        for part in (self.base_url, self.api_key.get_secret_value(), *(f"{k}:{v}" for k, v in self.headers)):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()


def gemini_endpoint(model: Any) -> GeminiEndpoint | None:
    """The endpoint of a Gemini client object (`ChatGoogleGenerativeAI`, LlamaIndex `GoogleGenAI`, ...), read from
    the google-genai ``Client`` it holds (``client`` or ``_client``), so environment variables and
    ``base_url`` / ``api_version`` / ``http_options`` resolve exactly as that client resolved them.

    None when there is no such client, or it talks to Vertex AI or authenticates with OAuth or ephemeral
    tokens instead of an API key: our client speaks the Gemini Developer API with a key only.
    """
    api = None
    for attr in ("client", "_client"):
        api = getattr(getattr(model, attr, None), "_api_client", None)
        if api is not None:
            break
    if api is None or getattr(api, "vertexai", False):
        return None
    key = getattr(api, "api_key", None)
    if not isinstance(key, str) or not key.strip() or key.startswith("auth_tokens/"):
        return None
    options = getattr(api, "_http_options", None)
    base = getattr(options, "base_url", None)
    if not isinstance(base, str) or not base:
        return None
    version = getattr(options, "api_version", None)
    url = base.rstrip("/") + (f"/{version.strip('/')}" if isinstance(version, str) and version else "")
    raw_headers = getattr(options, "headers", None)
    headers = raw_headers if isinstance(raw_headers, Mapping) else {}
    extra = tuple(sorted((str(k), str(v)) for k, v in headers.items() if str(k).lower() not in _SDK_HEADERS))
    return GeminiEndpoint(url, SecretStr(key.strip()), extra)


def cached_content_gone(exc: BaseException | None) -> bool:
    """Whether a Gemini client's error says the cache named in the request is gone (expired or deleted).

    Gemini answers 403 PERMISSION_DENIED "CachedContent not found (or permission denied)" (Vertex AI: 404
    naming the cached content). google-genai raises it as ``errors.ClientError`` (``code`` 403), which
    langchain-google-genai re-raises as ``GooglePermissionDeniedError`` with the ClientError as its cause; our
    own client raises `CachedContentNotFoundError`. The cause chain is followed.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CachedContentNotFoundError):
            return True
        code = getattr(exc, "code", None)
        message = str(getattr(exc, "message", None) or exc)
        if code == 403 and "CachedContent not found" in message:
            return True
        if code == 404 and re.search(r"cached ?content", message, re.IGNORECASE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _get(mapping: Mapping[str, Any], snake: str) -> Any:
    head, *rest = snake.split("_")
    return mapping.get(snake, mapping.get(head + "".join(w.title() for w in rest)))


def tool_choice_from_gemini_config(config: Any, tool_names: list[str]) -> ToolChoice | None:
    """A Gemini ``tool_config`` (a dict in snake or camel case, or google-genai's ``ToolConfig``) as the neutral
    tool choice, so a cache can hold it. Raises `ValueError` for what the neutral form cannot say
    (``retrieval_config``, several allowed functions)."""
    if config is None:
        return None
    if hasattr(config, "model_dump"):
        config = config.model_dump(exclude_none=True)
    if not isinstance(config, Mapping):
        raise ValueError(f"tool_config: unsupported {type(config).__name__}")
    if set(config) - {"function_calling_config", "functionCallingConfig"}:
        raise ValueError("tool_config: only function_calling_config can be cached")
    calling = _get(config, "function_calling_config") or {}
    mode = str(_get(calling, "mode") or "AUTO").upper().rsplit(".", 1)[-1]
    allowed = list(_get(calling, "allowed_function_names") or [])
    if mode == "ANY" and len(allowed) == 1 and allowed[0] in tool_names:
        return ForcedTool(allowed[0])
    if allowed and sorted(allowed) != sorted(tool_names):
        raise ValueError("tool_config: a subset of allowed functions cannot be cached")
    if mode not in ("AUTO", "ANY", "NONE"):
        raise ValueError(f"tool_config: mode {mode!r} cannot be cached")
    return tool_choice_from_spec({"AUTO": "auto", "ANY": "required", "NONE": "none"}[mode], tool_names)


def _plain(value: Any) -> Any:
    return value.model_dump(exclude_none=True, mode="json") if hasattr(value, "model_dump") else value


def tools_from_gemini(tools: Any) -> tuple[ToolDefinition, ...]:
    """Gemini tools (google-genai ``types.Tool`` objects or dicts, snake or camel case) as neutral definitions, so
    a cache can hold them. Function declarations only; raises `ValueError` for a built-in tool (Google Search,
    code execution) or a declaration without a JSON schema."""
    out: list[ToolDefinition] = []
    for tool in tools or ():
        declarations = getattr(tool, "function_declarations", None)
        if declarations is None and isinstance(tool, Mapping):
            declarations = _get(tool, "function_declarations")
        other = _plain(tool)
        if not declarations or (isinstance(other, Mapping) and len([v for v in other.values() if v]) > 1):
            raise ValueError("tools: only function declarations can be cached")
        for declaration in declarations:
            plain = _plain(declaration)
            if not isinstance(plain, Mapping) or not plain.get("name"):
                raise ValueError("tools: a function declaration without a name")
            schema = _get(plain, "parameters_json_schema")
            params = getattr(declaration, "parameters", None)
            if schema is None and params is not None and hasattr(params, "json_schema"):
                schema = params.json_schema.model_dump(exclude_none=True, mode="json")
            elif schema is None and _get(plain, "parameters") is not None:
                raise ValueError(f"tools: {plain['name']!r} has an OpenAPI schema this client cannot cache")
            out.append(
                ToolDefinition(
                    str(plain["name"]),
                    str(plain.get("description") or ""),
                    schema or {"type": "object", "properties": {}},
                )
            )
    return tuple(out)


def gemini_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The Gemini options in `options`, checked: ``cache_mode`` one of auto / always / off, ``cache_ttl``
    positive finite seconds, ``cache_registry`` a registry spec (checked when first used)."""
    out = {k: options[k] for k in GEMINI_OPTIONS if k in options}
    mode = out.get("cache_mode", "auto")
    if mode not in _MODES:
        raise ConfigurationError(f"cache_mode: {mode!r} is not one of {list(_MODES)}")
    ttl = out.get("cache_ttl", 3600.0)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ConfigurationError(f"cache_ttl: expected positive finite seconds, got {ttl!r}")
    return out


class GeminiExplicitStrategy:
    """Plans calls of foreign Gemini clients around explicit caches managed by `ExplicitCacheManager`.

    Options: `cache_mode` (``"auto"``, default; ``"always"``; ``"off"``), `cache_ttl` (seconds a new cache lives,
    default 3600; caches in use are extended), `cache_registry` (where caches are remembered across processes:
    ``"sqlite"`` (default), ``"sqlite:///path"``, ``"redis://..."``, ``"memory"`` or a `CacheRegistry`).
    Thread-safe; one manager per credential and endpoint, sharing one registry.
    """

    def __init__(
        self, *, cache_mode: str = "auto", cache_ttl: float = 3600.0, cache_registry: CacheRegistry | str | None = None
    ) -> None:
        checked = gemini_options({"cache_mode": cache_mode, "cache_ttl": cache_ttl})
        self.mode = checked["cache_mode"]
        self.ttl = float(checked["cache_ttl"])
        self._registry_spec = cache_registry
        self._registry: CacheRegistry | None = None
        self._managers: dict[str, ExplicitCacheManager] = {}
        self._lock = threading.Lock()
        from ..explicit import _forksafe

        _forksafe.register(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def manager(self, endpoint: GeminiEndpoint) -> ExplicitCacheManager:
        """The cache manager of `endpoint`'s credential (created on first use)."""
        fingerprint = endpoint.fingerprint
        with self._lock:
            manager = self._managers.get(fingerprint)
            if manager is None:
                from ..explicit import ExplicitCacheManager, registry_from_spec
                from ..providers.gemini import GeminiProvider

                if self._registry is None:
                    self._registry = registry_from_spec(self._registry_spec)
                provider = GeminiProvider(
                    api_key=endpoint.api_key, base_url=endpoint.base_url, default_headers=dict(endpoint.headers)
                )
                manager = ExplicitCacheManager(provider, registry=self._registry, mode=self.mode, ttl=self.ttl)
                self._managers[fingerprint] = manager
            return manager

    # -- planning ----------------------------------------------------------------------------------

    def _layout(self, request: ChatRequest) -> CachePlan:
        return CachePlan(order=layout_order(request.messages), tool_order=tool_order(request.tools))

    def _manager_for(self, request: ChatRequest, context: CallContext) -> ExplicitCacheManager | None:
        endpoint = context.endpoint
        if self.mode == "off" or not isinstance(endpoint, GeminiEndpoint) or not context.exact:
            return None
        if not explicit_caching_supported(request.model):
            return None
        return self.manager(endpoint)

    @staticmethod
    def _request(request: ChatRequest) -> ChatRequest:
        return replace(request, model=normalize_gemini_model(request.model))

    @staticmethod
    def _with(base: CachePlan, decision: CacheDecision | None) -> CachePlan:
        if decision is None:
            return base
        if decision.name is None:
            return replace(base, cache=decision, notes=("prefix sent inline this time",))
        return replace(
            base,
            options={"cached_content": decision.name},
            cached_messages=decision.cached_messages,
            drop_system_and_tools=True,
            cache=decision,
            notes=(
                f"explicit cache {decision.name} holds the system prompt, tools and {decision.cached_messages} turns",
            ),
        )

    def plan(self, request: ChatRequest, context: CallContext) -> CachePlan:
        base = self._layout(request)
        manager = self._manager_for(request, context)
        if manager is None:
            return base
        return self._with(base, manager.acquire(self._request(request)))

    async def aplan(self, request: ChatRequest, context: CallContext) -> CachePlan:
        base = self._layout(request)
        manager = self._manager_for(request, context)
        if manager is None:
            return base
        return self._with(base, await manager.aacquire(self._request(request)))

    def recover(self, request: ChatRequest, context: CallContext, plan: CachePlan) -> CachePlan | None:
        """After the client reported `plan`'s cache gone: a plan with a new cache (or inline); None when `plan`
        used no cache of ours (the error is not ours to handle)."""
        decision = plan.cache
        if not _is_decision(decision) or decision is None or decision.name is None:
            return None
        manager = self._manager_for(request, context)
        if manager is None:
            return None
        return self._with(self._layout(request), manager.recover(decision, self._request(request)))

    async def arecover(self, request: ChatRequest, context: CallContext, plan: CachePlan) -> CachePlan | None:
        decision = plan.cache
        if not _is_decision(decision) or decision is None or decision.name is None:
            return None
        manager = self._manager_for(request, context)
        if manager is None:
            return None
        return self._with(self._layout(request), await manager.arecover(decision, self._request(request)))

    def observe(self, request: ChatRequest, context: CallContext, plan: CachePlan, usage: Usage | None) -> None:
        if _is_decision(plan.cache) and isinstance(context.endpoint, GeminiEndpoint):
            self.manager(context.endpoint).settle(plan.cache, usage)
