"""The emulator core: state, routing, counters, fault injection and the request log.

``Emulator.handle`` is framework-free (method, path, query, headers, body in; ``EmulatorResponse``
out). The ASGI app, the httpx transport and the uvicorn server are thin adapters around it, so all
three run modes behave identically.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Literal

from ._anthropic import handle_count_tokens as handle_anthropic_count_tokens
from ._anthropic import handle_messages as handle_anthropic_messages
from ._anthropic import handle_not_found as anthropic_not_found
from ._anthropic_cache import BreakpointCache, min_cacheable_tokens
from ._anthropic_diagnostics import DiagnosticsBook
from ._breakpoints import BreakpointStore
from ._chat import glm_error, handle_chat
from ._context import RequestContext
from ._files import PAYLOAD_TOO_LARGE, FileStore
from ._gate import AnswerGate
from ._gemini import handle_count_tokens, handle_generate, handle_models
from ._gemini_caches import CachedContent, handle_cache_create, handle_cache_item, handle_cache_list
from ._google import google_error
from ._http import EmulatorResponse, json_response
from ._interventions import ArmedFault, Interventions
from ._local_servers import OpenAIDialect
from ._openai import handle_openai_models, openai_error
from ._prefix import PrefixCache
from ._records import MAPPING_COUNTERS, EmulatorCounters, RecordedRequest
from ._strict import DASHSCOPE_MODELS, DEEPSEEK_MODELS, GEMINI_MODELS, GLM_MODELS, OPENAI_MODELS
from ._synth import digest, encode
from .clock import Clock, SystemClock
from .faults import Endpoint
from .physics import OpenAIPhysics, Router
from .rules import DASHSCOPE_RULES, DEEPSEEK_RULES, GEMINI_RULES, GLM_RULES, OPENAI_RULES, CacheRules
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from ._asgi import EmulatorASGIApp
    from ._server import RunningServer
    from ._transport import EmulatorTransport

__all__ = ["Emulator", "EmulatorCounters", "RecordedRequest"]

_GEMINI_MODEL_RE = re.compile(
    r"^/v1beta/(?:models|tunedModels)/([^/:]+):(generateContent|streamGenerateContent|countTokens)$"
)
_GEMINI_CACHE_RE = re.compile(r"^/v1beta/cachedContents/([^/:]+)$")
_GEMINI_MODEL_INFO_RE = re.compile(r"^/v1beta/models/([^/:]+)$")
_ANTHROPIC_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
_GLM_CHAT_PATHS = ("/api/paas/v4/chat/completions", "/api/coding/paas/v4/chat/completions")
# DeepSeek's base URL is https://api.deepseek.com (``/v1`` also accepted); DashScope's compatible mode is
# .../compatible-mode/v1. The emulator serves them under their own prefixes, beside OpenAI's /v1.
_DEEPSEEK_CHAT_PATHS = ("/deepseek/chat/completions", "/deepseek/v1/chat/completions")
_DASHSCOPE_CHAT_PATHS = ("/compatible-mode/v1/chat/completions",)
_REDACTED = "***"


def _endpoint_of(path: str) -> Endpoint | None:
    if path.startswith(("/api/paas/", "/api/coding/paas/")):
        return "glm"
    if path == "/deepseek" or path.startswith("/deepseek/"):
        return "deepseek"
    if path.startswith("/compatible-mode/"):
        return "dashscope"
    if path.startswith(("/v1beta/", "/upload/v1beta/")) or path == "/v1beta":
        return "gemini"
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    return None


class Emulator(Interventions):
    """A local fake of Zhipu GLM, OpenAI-compatible, Gemini and Anthropic HTTP APIs with their caching rules.

    Routes: ``POST /api/paas/v4/chat/completions`` (also ``/api/coding/paas/v4/...``),
    ``POST /v1/chat/completions``, ``GET /v1/models``, DeepSeek's ``POST /deepseek/chat/completions``
    (usage with ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens``, on the finish chunk of a
    stream), DashScope's ``POST /compatible-mode/v1/chat/completions`` (Qwen; ``cache_control`` markers
    switch to explicit mode with ``cache_creation_input_tokens``), Gemini's ``/v1beta/models/{m}:generateContent``,
    ``:streamGenerateContent``, ``:countTokens``, ``/v1beta/cachedContents[/{id}]`` and the Files API
    (``/upload/v1beta/files`` resumable uploads, ``/v1beta/files[/{id}]``; see ``files``, a `FileStore`),
    and Anthropic's ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

    Knobs are plain attributes and may be changed between requests: ``latency`` (seconds before each
    answer), ``stream_chunk_delay`` (seconds between stream chunks), ``stream_tokens_per_chunk``,
    ``glm_usage_chunk`` (``"finish"``: usage on the finish_reason chunk; ``"separate"``: an extra
    ``choices: []`` chunk), ``glm_stream_usage`` (``"requested"``: a GLM stream carries usage only when
    the request sends ``stream_options.include_usage``, like every OpenAI-compatible server, so a client
    that forgets to ask sees no usage; ``"always"``: usage whatever the request says, as in
    docs.z.ai's streaming example), ``glm_prompt_tokens_details`` (``False`` omits
    ``prompt_tokens_details`` as older GLM models did), ``deepseek_prompt_tokens_details`` (``False``:
    only the ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens`` pair, as older DeepSeek answers
    had), ``gemini_stream_usage`` (``"auto"``: a stream
    whose request declares a built-in tool such as ``googleSearch`` or ``codeExecution`` ends with
    ``usageMetadata`` without ``candidatesTokenCount``, as recorded from gemini-3-flash, after chunks
    with provisional counts; ``"without_candidates"``: always so; ``"complete"``: never),
    ``api_keys`` (``None`` accepts any non-empty key).

    Strict mode, to rehearse failures (off by default): ``strict=True`` answers model names the
    emulator does not know (``glm_models``, ``openai_models``, ``gemini_models``, or ``known_models``
    when given) with each provider's real "unknown model" error, and makes implicit caching write a
    prompt only when its answer has been delivered (``cache_write_on_completion``, also settable on
    its own), so concurrent cold requests all report 0 cached tokens as on the real services.
    ``known_models`` alone turns the model check on; ``api_keys`` turns the key check on (GLM: 401
    code 1000/1001, Gemini: 400 ``API_KEY_INVALID``, OpenAI: 401 ``invalid_api_key``).

    Caching: ``glm_rules`` / ``openai_rules`` / ``deepseek_rules`` / ``dashscope_rules`` / ``gemini_rules``
    per endpoint, ``model_rules`` per model name; ``openai_physics`` (an ``OpenAIPhysics``, off by default)
    turns on the model of OpenAI's cache routing: several machines each with its own cache, routing by the
    prefix start and ``prompt_cache_key``, overflow above ~15 requests per minute, writes on delivery,
    idle eviction (see ``cache_integrations.testing.physics``); GPT-5.6 ``prompt_cache_options`` explicit
    mode and ``cache_write_tokens`` are modelled with or without it (``_breakpoints``);
    ``max_implicit_entries`` bounds remembered prompts (oldest evicted first; Anthropic entries: 4x);
    ``gemini_cache_min_tokens`` is the explicit-cache minimum (an int, or model -> int with ``"*"`` as
    the fallback); explicit caches live ``gemini_default_cache_ttl`` seconds unless told otherwise.
    Models of Gemini 4 ("Argon") and later, and those in ``gemini_models_without_explicit_cache``, refuse
    explicit caches as Gemini refuses an unsupported method (see ``gemini_explicit_cache_supported``).
    Anthropic ``cache_control`` breakpoints follow Anthropic's rules (see ``_anthropic_cache``);
    ``anthropic_cache_min_tokens`` overrides the documented per-model minimum cacheable length (an int,
    or model -> int with ``"*"`` as the fallback; ``None``: the documented table). Anthropic's cache
    diagnostics (a request's ``diagnostics.previous_message_id`` with the ``cache-diagnosis-2026-04-07`` beta)
    are answered from hash-only fingerprints per response id (``_anthropic_diagnostics``);
    ``anthropic_diagnostics_pending = True`` answers ``{"cache_miss_reason": null}`` (comparison still running).
    ``openai_dialect = "vllm"`` / ``"llamacpp"`` makes ``/v1/chat/completions`` report usage as those servers do
    (vLLM: no ``prompt_tokens_details`` on a miss; llama.cpp: ``timings.cache_n``), with ``openai_rules=VLLM_RULES``
    / ``LLAMACPP_RULES`` for their caching (``_local_servers``).
    ``gemini_max_request_bytes`` is the largest Gemini JSON request (100 MB, the inline limit since
    January 2026). Media in Gemini requests counts by Google's published rules (see ``_media``).
    All expiry reads ``clock`` (pass a ``FakeClock`` to jump past TTLs).
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        glm_rules: CacheRules = GLM_RULES,
        openai_rules: CacheRules = OPENAI_RULES,
        gemini_rules: CacheRules = GEMINI_RULES,
        deepseek_rules: CacheRules = DEEPSEEK_RULES,
        dashscope_rules: CacheRules = DASHSCOPE_RULES,
        openai_physics: OpenAIPhysics | None = None,
        model_rules: Mapping[str, CacheRules] | None = None,
        gemini_cache_min_tokens: int | Mapping[str, int] = 1024,
        gemini_default_cache_ttl: float = 3600.0,
        anthropic_cache_min_tokens: int | Mapping[str, int] | None = None,
        glm_usage_chunk: Literal["finish", "separate"] = "finish",
        glm_stream_usage: Literal["requested", "always"] = "requested",
        glm_prompt_tokens_details: bool = True,
        deepseek_prompt_tokens_details: bool = True,
        gemini_stream_usage: Literal["auto", "without_candidates", "complete"] = "auto",
        latency: float = 0.0,
        stream_chunk_delay: float = 0.0,
        stream_tokens_per_chunk: int = 4,
        api_keys: Collection[str] | None = None,
        strict: bool = False,
        known_models: Collection[str] | None = None,
        cache_write_on_completion: bool | None = None,
        max_implicit_entries: int = 1000,
        request_log_size: int = 1000,
        seed: int = 0,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.glm_rules = glm_rules
        self.openai_rules = openai_rules
        self.gemini_rules = gemini_rules
        self.deepseek_rules = deepseek_rules
        self.dashscope_rules = dashscope_rules
        self.openai_physics = openai_physics
        self._router = Router(openai_physics or OpenAIPhysics())
        self.model_rules: dict[str, CacheRules] = dict(model_rules or {})
        self.gemini_cache_min_tokens = gemini_cache_min_tokens
        self.gemini_default_cache_ttl = gemini_default_cache_ttl
        self.anthropic_cache_min_tokens = anthropic_cache_min_tokens
        self.glm_usage_chunk: Literal["finish", "separate"] = glm_usage_chunk
        self.glm_stream_usage: Literal["requested", "always"] = glm_stream_usage
        self.glm_prompt_tokens_details = glm_prompt_tokens_details
        self.deepseek_prompt_tokens_details = deepseek_prompt_tokens_details
        self.gemini_stream_usage: Literal["auto", "without_candidates", "complete"] = gemini_stream_usage
        self.latency = latency
        self.stream_chunk_delay = stream_chunk_delay
        self.stream_tokens_per_chunk = max(1, stream_tokens_per_chunk)
        self.api_keys: frozenset[str] | None = frozenset(api_keys) if api_keys is not None else None
        self.strict = strict
        self.known_models: frozenset[str] | None = frozenset(known_models) if known_models is not None else None
        self.cache_write_on_completion = strict if cache_write_on_completion is None else cache_write_on_completion
        self.seed = seed
        self.glm_models: list[str] = list(GLM_MODELS)
        self.openai_models: list[str] = list(OPENAI_MODELS)
        self.gemini_models: list[str] = list(GEMINI_MODELS)
        self.deepseek_models: list[str] = list(DEEPSEEK_MODELS)
        self.dashscope_models: list[str] = list(DASHSCOPE_MODELS)
        self.gemini_models_without_explicit_cache: set[str] = set()
        self.tokenizer = Tokenizer()
        self._prefix_cache = PrefixCache(self.tokenizer, max_entries=max_implicit_entries)
        self._anthropic_cache = BreakpointCache(max_entries=4 * max_implicit_entries)  # up to 4 per request
        self._anthropic_diagnostics = DiagnosticsBook()  # Anthropic's cache-diagnostics fingerprints
        self.anthropic_diagnostics_pending = False
        self.openai_dialect: OpenAIDialect = "openai"  # "vllm" / "llamacpp": those servers' usage (_local_servers)
        self._breakpoints = BreakpointStore(max_entries=4 * max_implicit_entries)  # OpenAI / DashScope explicit
        self._gates: list[AnswerGate] = []
        self._lock = threading.RLock()
        self._seq = 0
        self._cache_seq = 0
        self._caches: dict[str, CachedContent] = {}
        self.gemini_max_request_bytes = 100 * 1024 * 1024
        self.files = FileStore(self)
        self._faults: list[ArmedFault] = []
        self._log: deque[RecordedRequest] = deque(maxlen=request_log_size)
        self._c: dict[str, Any] = {}
        self.reset_counters()

    # ------------------------------------------------------------------------------------- core entry

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        *,
        scheme: str = "http",
    ) -> EmulatorResponse:
        """Answer one HTTP request. Thread-safe; never sleeps (latency is left to the serving layer).

        `scheme` is how the request arrived; it builds the URLs the emulator hands back (upload sessions).
        """
        method = method.upper()
        path = path.rstrip("/") or "/"
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        with self._lock:
            self._seq += 1
            ctx = RequestContext(
                method=method,
                path=path,
                query=dict(query or {}),
                headers=lowered,
                body=body,
                seq=self._seq,
                now=self.clock.time(),
                mono=self.clock.monotonic(),
                endpoint=_endpoint_of(path),
                scheme=scheme,
            )
            self._c["requests_total"] += 1
            by_endpoint: dict[str, int] = self._c["requests_by_endpoint"]
            label = ctx.endpoint or "unknown"
            by_endpoint[label] = by_endpoint.get(label, 0) + 1
            response = self._take_fault(ctx)
            if response is None:
                response = self._route(ctx)
                response = self._maybe_cut(ctx, response)
            if response.status >= 400:
                self._c["error_responses"] += 1
            response.delay = self.latency
            response.chunk_delay = self.stream_chunk_delay
            response.on_complete = ctx.on_complete
            response.hold = self._take_gate(ctx)
            self._log.append(self._record(ctx, response.status))
            return response

    def _route(self, ctx: RequestContext) -> EmulatorResponse:
        path, method = ctx.path, ctx.method
        if path in _ANTHROPIC_PATHS and method == "POST":
            if path == "/v1/messages":
                return handle_anthropic_messages(self, ctx)
            return handle_anthropic_count_tokens(self, ctx)
        if path in _GLM_CHAT_PATHS:
            return handle_chat(self, ctx, "glm") if method == "POST" else self._not_found(ctx)
        if path == "/v1/chat/completions" or path in _DEEPSEEK_CHAT_PATHS or path in _DASHSCOPE_CHAT_PATHS:
            return handle_chat(self, ctx, "openai") if method == "POST" else self._not_found(ctx)
        if path == "/v1/models" and method == "GET":
            return handle_openai_models(self, ctx)
        if ctx.endpoint == "gemini":
            if len(ctx.body) > self.gemini_max_request_bytes and not path.startswith("/upload/"):
                return google_error(
                    400, PAYLOAD_TOO_LARGE.format(limit=self.gemini_max_request_bytes), "INVALID_ARGUMENT"
                )
            answered = self.files.route(ctx)
            if answered is not None:
                return answered
        m = _GEMINI_MODEL_RE.match(path)
        if m and method == "POST":
            model, action = m.group(1), m.group(2)
            if action == "countTokens":
                return handle_count_tokens(self, ctx, model)
            return handle_generate(self, ctx, model, action)
        if path == "/v1beta/cachedContents":
            if method == "POST":
                return handle_cache_create(self, ctx)
            if method == "GET":
                return handle_cache_list(self, ctx)
        m = _GEMINI_CACHE_RE.match(path)
        if m and method in ("GET", "PATCH", "DELETE"):
            return handle_cache_item(self, ctx, m.group(1))
        if path == "/v1beta/models" and method == "GET":
            return handle_models(self, ctx, None)
        m = _GEMINI_MODEL_INFO_RE.match(path)
        if m and method == "GET":
            return handle_models(self, ctx, m.group(1))
        return self._not_found(ctx)

    def _not_found(self, ctx: RequestContext) -> EmulatorResponse:
        if ctx.endpoint == "anthropic":
            return anthropic_not_found(self, ctx)
        message = f"No route for {ctx.method} {ctx.path} in the cache_integrations emulator."
        if ctx.endpoint == "gemini":
            return google_error(404, message, "NOT_FOUND")
        if ctx.endpoint in ("openai", "deepseek", "dashscope"):
            return openai_error(404, message, code="not_found")
        if ctx.endpoint == "glm":
            return glm_error(404, "404", message)
        return json_response(404, {"error": {"code": 404, "message": message}}, "application/json")

    def _record(self, ctx: RequestContext, status: int) -> RecordedRequest:
        headers = dict(ctx.headers)
        for secret in ("authorization", "x-goog-api-key", "api-key", "x-api-key"):
            if secret in headers:
                headers[secret] = _REDACTED
        query = dict(ctx.query)
        if "key" in query:
            query["key"] = _REDACTED
        return RecordedRequest(
            seq=ctx.seq,
            method=ctx.method,
            path=ctx.path,
            query=query,
            headers=headers,
            endpoint=ctx.endpoint,
            model=ctx.model,
            body=ctx.parsed,
            status=status,
            usage=ctx.usage,
            replica=ctx.replica,
        )

    # ------------------------------------------------------------------------------ helpers for handlers

    def rules_for(self, endpoint: Endpoint, model: str) -> CacheRules:
        """The implicit-cache rule set for ``model`` on ``endpoint`` (per-model overrides win)."""
        if model in self.model_rules:
            return self.model_rules[model]
        by_endpoint = {
            "glm": self.glm_rules,
            "openai": self.openai_rules,
            "deepseek": self.deepseek_rules,
            "dashscope": self.dashscope_rules,
            "gemini": self.gemini_rules,
        }
        return by_endpoint[endpoint]

    def is_known_model(self, endpoint: Endpoint, model: str) -> bool:
        """Whether ``model`` is served: always, unless ``strict`` or ``known_models`` restrict the names."""
        if self.known_models is not None:
            return model in self.known_models
        if not self.strict:
            return True
        by_endpoint = {
            "glm": self.glm_models,
            "openai": self.openai_models,
            "deepseek": self.deepseek_models,
            "dashscope": self.dashscope_models,
            "gemini": self.gemini_models,
        }
        return model in by_endpoint[endpoint]

    def _observe_prefix(
        self,
        ctx: RequestContext,
        scope: tuple[Any, ...],
        text: str,
        tokens: int,
        rules: CacheRules,
        *,
        on_delivery: bool = False,
    ) -> int:
        """Cached tokens to report for ``text``; the prompt is remembered now, or once the answer is
        delivered (``cache_write_on_completion``, or ``on_delivery`` for a model that always works so)."""
        if not (on_delivery or self.cache_write_on_completion):
            return self._prefix_cache.observe(scope, text, tokens, ctx.mono, rules).reported_tokens
        match, commit = self._prefix_cache.observe_deferred(scope, text, tokens, ctx.mono, rules)
        self._commit_on_delivery(ctx, commit, force=True)
        return match.reported_tokens

    def _commit_on_delivery(self, ctx: RequestContext, commit: Callable[[float], None], *, force: bool = False) -> None:
        """Run a cache write now, or (``cache_write_on_completion`` or ``force``) when the answer is delivered."""
        if not (force or self.cache_write_on_completion):
            commit(ctx.mono)
            return
        earlier = ctx.on_complete

        def delivered() -> None:
            if earlier is not None:
                earlier()
            with self._lock:
                commit(self.clock.monotonic())

        ctx.on_complete = delivered

    def gemini_explicit_cache_supported(self, model: str) -> bool:
        """Whether ``cachedContents.create`` accepts ``model``: not on Gemini 4 Argon and later (Google's
        caching page after 2026-10-13), nor on the models listed in ``gemini_models_without_explicit_cache``."""
        from ._gemini import model_version

        name = model.removeprefix("models/")
        version = model_version(name)
        return name not in self.gemini_models_without_explicit_cache and (version is None or version[0] < 4)

    def gemini_cache_min_tokens_for(self, model: str) -> int:
        """Minimum ``totalTokenCount`` for creating an explicit cache on ``model``."""
        if isinstance(self.gemini_cache_min_tokens, int):
            return self.gemini_cache_min_tokens
        return int(self.gemini_cache_min_tokens.get(model, self.gemini_cache_min_tokens.get("*", 1024)))

    def anthropic_cache_min_tokens_for(self, model: str) -> int:
        """Minimum prefix (tokens up to a breakpoint) Anthropic caches for ``model``."""
        override = self.anthropic_cache_min_tokens
        if isinstance(override, int):
            return override
        if override is not None and (model in override or "*" in override):
            return int(override.get(model, override.get("*", 0)))
        return min_cacheable_tokens(model)

    def _record_usage(self, endpoint: Endpoint, prompt: int, implicit: int, completion: int, *, explicit: int) -> None:
        self._c["prompt_tokens"] += prompt
        self._c["completion_tokens"] += completion
        self._c["cached_tokens_implicit"] += implicit
        self._c["cached_tokens_explicit"] += explicit
        if implicit:
            self._c["implicit_cache_hits"] += 1
        by_endpoint: dict[str, int] = self._c["cached_tokens_by_endpoint"]
        by_endpoint[endpoint] = by_endpoint.get(endpoint, 0) + implicit + explicit

    def _record_anthropic_usage(self, prompt: int, read: int, written: int, completion: int) -> None:
        self._record_usage("anthropic", prompt, 0, completion, explicit=read)
        self._record_writes("anthropic", written)

    def _record_writes(self, endpoint: Endpoint, written: int) -> None:
        self._c["cache_write_tokens"] += written
        writes: dict[str, int] = self._c["cache_write_tokens_by_endpoint"]
        writes[endpoint] = writes.get(endpoint, 0) + written

    def _count_generate_call(self) -> None:
        self._c["generate_calls"] += 1

    def _new_cache_id(self) -> str:
        self._cache_seq += 1
        return encode(digest("cached-content", self.seed, self._cache_seq), "abcdefghijklmnopqrstuvwxyz0123456789", 40)

    def _store_cached_content(self, cache: CachedContent) -> None:
        with self._lock:
            cache.order = self._cache_seq
            self._caches[cache.name] = cache
            self._c["caches_created"] += 1

    def _purge_expired(self) -> None:
        now_ns = int(self.clock.time() * 1_000_000_000)
        for name in [n for n, c in self._caches.items() if c.expire_ns <= now_ns]:
            self._remove_cached_content(name, reason="expired")

    def _lookup_cached_content(self, name: str) -> CachedContent | None:
        with self._lock:
            self._purge_expired()
            return self._caches.get(name)

    def _alive_cached_contents(self) -> list[CachedContent]:
        with self._lock:
            self._purge_expired()
            return sorted(self._caches.values(), key=lambda c: c.order)

    def _remove_cached_content(self, name: str, *, reason: Literal["deleted", "expired"]) -> bool:
        with self._lock:
            if self._caches.pop(name, None) is None:
                return False
            self._c["caches_deleted" if reason == "deleted" else "caches_expired"] += 1
            return True

    # ------------------------------------------------------------------------------- caches & counters

    def evict_all(self, *, explicit: bool = False) -> None:
        """Drop every implicit prefix cache, Anthropic / OpenAI / DashScope breakpoint entry and OpenAI
        routing window (and, with ``explicit=True``, every Gemini cachedContent)."""
        with self._lock:
            self._prefix_cache.clear()
            self._anthropic_cache.clear()
            self._breakpoints.clear()
            self._router.clear()
            if explicit:
                for name in list(self._caches):
                    self._remove_cached_content(name, reason="deleted")

    def delete_cached_content(self, name: str) -> bool:
        """Delete a Gemini cache server-side (as expiry or another process would); ``True`` if it existed.

        Later use of the name answers 403 ``CachedContent not found``, which recovery code must handle.
        ``name`` may be ``cachedContents/<id>`` or the bare id.
        """
        if not name.startswith("cachedContents/"):
            name = f"cachedContents/{name}"
        return self._remove_cached_content(name, reason="deleted")

    def cached_content_names(self) -> list[str]:
        """Names of the Gemini caches currently alive, oldest first."""
        return [c.name for c in self._alive_cached_contents()]

    @property
    def implicit_cache_entries(self) -> int:
        """Number of prompts currently remembered for implicit prefix caching."""
        with self._lock:
            return len(self._prefix_cache)

    @property
    def anthropic_cache_entries(self) -> int:
        """Number of live Anthropic prompt-cache entries (one per written breakpoint prefix)."""
        with self._lock:
            return self._anthropic_cache.alive(self.clock.monotonic())

    @property
    def counters(self) -> EmulatorCounters:
        """A snapshot of the counters."""
        with self._lock:
            self._purge_expired()
            values = dict(self._c)
            for name in MAPPING_COUNTERS:
                values[name] = dict(values[name])
            values["caches_alive"] = len(self._caches)
            values["files_alive"] = self.files.alive_count()
            return EmulatorCounters(**values)

    def reset_counters(self) -> None:
        """Zero every counter (caches and the request log are kept)."""
        with self._lock:
            self._c = {
                name: 0
                for name in EmulatorCounters.__dataclass_fields__
                if name not in MAPPING_COUNTERS and name not in ("caches_alive", "files_alive")
            }
            for name in MAPPING_COUNTERS:
                self._c[name] = {}

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests (up to ``request_log_size``), oldest first."""
        with self._lock:
            return list(self._log)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._lock:
            return self._log[-1] if self._log else None

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    # -------------------------------------------------------------------------------------- run modes

    @property
    def asgi_app(self) -> EmulatorASGIApp:
        """An ASGI 3 application serving this emulator (streams SSE with ``more_body``)."""
        from ._asgi import EmulatorASGIApp

        return EmulatorASGIApp(self)

    def transport(self) -> EmulatorTransport:
        """An httpx transport for both ``httpx.Client`` and ``httpx.AsyncClient``; no sockets involved."""
        from ._transport import EmulatorTransport

        return EmulatorTransport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> AbstractContextManager[RunningServer]:
        """Run the emulator with uvicorn in a background thread (``port=0`` picks a free port).

        ``with emu.serve() as server: ...`` yields a ``RunningServer`` with ``url`` and per-API base URLs;
        the server stops when the block exits. Needs the optional ``uvicorn`` dependency.
        """
        from ._server import serve

        return serve(self, host=host, port=port)
