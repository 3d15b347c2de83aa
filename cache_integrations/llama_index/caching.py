"""`with_prompt_caching(llm)`: prompt caching for a LlamaIndex LLM you already have.

    from llama_index.llms.openai import OpenAI
    from cache_integrations.llama_index import prompt_cache_session, with_prompt_caching

    llm = with_prompt_caching(OpenAI(model="gpt-4o-mini"))
    with prompt_cache_session("user-42"):
        llm.chat(messages)

The result is the same kind of LLM as the one given: a copy of it (same settings, same clients) whose class
is a subclass of the LLM's own class. Everything the class does keeps working as it did (`FunctionAgent`,
`chat_with_tools`, `predict_and_call`, `structured_predict`, `as_structured_llm`, query and chat engines,
`Settings.llm`, the callback manager), and every request it sends goes through its provider's caching strategy
first: messages in the cache-friendly order (system first), tools in a fixed order, and the provider's options
through the class's own mechanism (OpenAI: ``prompt_cache_key`` / ``prompt_cache_retention`` as request
fields; Anthropic breakpoints and a GoogleGenAI explicit cache are plugged in through
`cache_integrations.llama_index._foreign.PROVIDER_APPLIERS`).

Instrumentation is unchanged: the LLM's own decorated methods emit exactly one start and one end event per
call, with the messages as sent, so `CacheUsageHandler` and `CachedTokenCountingHandler` count each call once.

Sessions. OpenAI routes requests to a cache machine by ``prompt_cache_key``; the key is a hash of the call's
session id (never of its content). A session is the ``session_id`` (or ``thread_id`` / ``conversation_id``)
of LlamaIndex's instrument tags, the same tags the handlers use to compare a call with the previous one of
its conversation:

- ``with prompt_cache_session("user-42"):`` around the calls (an agent run, a chat engine turn), or
  LlamaIndex's own ``instrument_tags({"session_id": "user-42"})``;
- otherwise the wrapper's default, ``with_prompt_caching(llm, session_id="tenant-a")``, which is also put in
  the tags of the call's events, so the handlers see it too.

Without a session no key is derived (unless a fixed ``prompt_cache_key`` is given). The tags live in a context
variable, so sessions are per thread and per asyncio task, and reach the tasks an agent starts inside the block.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    MessageRole,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation.dispatcher import (  # type: ignore[attr-defined]
    active_instrument_tags,
    instrument_tags,
)
from llama_index.core.llms.llm import LLM

from ..errors import ConfigurationError
from ..observe import CallObservation, check_instrument
from ..strategies import GEMINI_OPTIONS, session_from_metadata
from ._foreign import LlamaCachingCoordinator, LlamaCall, PreparedCall
from .llms import CachingLLM
from .observe import (
    aobserved_llama_index_stream,
    finish_llama_index_response,
    observe_llama_index_call,
    observed_llama_index_stream,
)

__all__ = ["PromptCachingLLM", "prompt_cache_session", "with_prompt_caching"]

logger = logging.getLogger("cache_integrations.llama_index")

LLMT = TypeVar("LLMT", bound=LLM)

# The wrapped LLM currently applying a plan (by id): a method the class implements on top of another public
# one (Anthropic's `complete` calls `self.chat`) sends what the outer call already prepared.
_PREPARING: ContextVar[int | None] = ContextVar("cache_integrations_llama_index_preparing", default=None)

_SECRET_FIELDS = ("api_key", "password", "secret", "_token", "credentials")


def _is_secret(name: str) -> bool:
    return name.endswith(_SECRET_FIELDS) and not name.endswith("_tokens")


@contextlib.contextmanager
def prompt_cache_session(session_id: str) -> Iterator[None]:
    """Calls inside the block belong to conversation (or tenant) `session_id`.

    Wrapped LLMs derive OpenAI's ``prompt_cache_key`` from it (hashed), and the handlers compare each call with
    the previous one of the same session. It sets LlamaIndex's instrument tag ``session_id`` (keeping the other
    tags), so it nests, and an inner block wins.
    """
    if not isinstance(session_id, str) or not session_id:
        raise ConfigurationError(f"session_id: expected a non-empty string, got {session_id!r:.80}")
    with instrument_tags({**active_instrument_tags.get(), "session_id": session_id}):
        yield


@dataclass(frozen=True)
class _State:
    coordinator: LlamaCachingCoordinator
    session_id: str | None
    options: dict[str, Any]
    instrument: Any = None

    @classmethod
    def create(cls, session_id: str | None, options: dict[str, Any], instrument: Any = None) -> _State:
        return cls(LlamaCachingCoordinator(**options), session_id, options, check_instrument(instrument))

    def __reduce__(self) -> Any:
        # a new coordinator on the other side (its locks do not pickle; what it learned is rebuilt from usage)
        return (_State.create, (self.session_id, self.options, self.instrument))


if TYPE_CHECKING:
    _Base = LLM
else:
    _Base = object


class PromptCachingLLM(_Base):
    """What `with_prompt_caching` adds to an LLM class: every public call applies the provider's plan, then
    runs the class's own method. ``isinstance(llm, PromptCachingLLM)`` tells a wrapped LLM."""

    _prompt_caching_state: _State

    @property
    def prompt_caching(self) -> LlamaCachingCoordinator:
        """The coordinator: the forced provider, the strategies and the token estimator of this LLM."""
        return self._prompt_caching_state.coordinator

    # -- plan, scope, observe ----------------------------------------------------------------------------

    def _pc_class(self) -> LLM:
        """The wrapped class's own methods (the next class after this mixin in the MRO)."""
        return cast(LLM, super())

    def _pc_prepare(
        self, messages: Sequence[ChatMessage], kwargs: dict[str, Any], *, stream: bool, completion: bool = False
    ) -> tuple[PreparedCall | None, dict[str, Any] | None]:
        """The prepared call (None inside a call this LLM already prepared) and the instrument tags to set."""
        if _PREPARING.get() == id(self):
            return None, None
        state = self._prompt_caching_state
        tags = active_instrument_tags.get()
        session = session_from_metadata(tags)
        scoped: dict[str, Any] | None = None
        if session is None and state.session_id is not None:
            session = state.session_id
            scoped = {**tags, "session_id": session}
        call = LlamaCall.of(self, messages, kwargs, session=session, stream=stream, completion=completion)
        return state.coordinator.prepare(call), scoped

    @contextlib.contextmanager
    def _pc_scope(self, tags: dict[str, Any] | None) -> Iterator[None]:
        token = _PREPARING.set(id(self))
        try:
            if tags is None:
                yield
            else:
                with instrument_tags(tags):
                    yield
        finally:
            _PREPARING.reset(token)

    def _pc_span(self, prepared: PreparedCall) -> CallObservation:
        """The OpenTelemetry observation of one call (a no-op unless instrumented)."""
        provider = prepared.context.provider
        return observe_llama_index_call(
            self._prompt_caching_state.instrument,
            self,
            list(prepared.call.messages),
            provider=None if provider in ("openai_compatible", "unknown") else provider,
            session=prepared.context.session,
        )

    def _pc_observe(self, prepared: PreparedCall, response: Any) -> None:
        try:
            self._prompt_caching_state.coordinator.observe(prepared, response)
        except Exception:  # learning from usage must never fail the caller's call
            logger.debug("prompt caching: could not read the usage of a response", exc_info=True)

    def _pc_watch(self, prepared: PreparedCall, chunks: Iterator[Any]) -> Generator[Any, None, None]:
        last = None
        for last in chunks:
            yield last
        self._pc_observe(prepared, last)

    async def _pc_awatch(self, prepared: PreparedCall, chunks: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
        last = None
        async for last in chunks:
            yield last
        self._pc_observe(prepared, last)

    # -- chat --------------------------------------------------------------------------------------------

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        prepared, tags = self._pc_prepare(messages, kwargs, stream=False)
        if prepared is None:
            return self._pc_class().chat(messages, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                with obs.active():
                    response = self._pc_class().chat(list(prepared.call.messages), **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        self._pc_observe(prepared, response)
        finish_llama_index_response(obs, response, self)
        return response

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        prepared, tags = self._pc_prepare(messages, kwargs, stream=False)
        if prepared is None:
            return await self._pc_class().achat(messages, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                with obs.active():
                    response = await self._pc_class().achat(list(prepared.call.messages), **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        self._pc_observe(prepared, response)
        finish_llama_index_response(obs, response, self)
        return response

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        prepared, tags = self._pc_prepare(messages, kwargs, stream=True)
        if prepared is None:
            return self._pc_class().stream_chat(messages, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                chunks = self._pc_class().stream_chat(list(prepared.call.messages), **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        return self._pc_watch(prepared, observed_llama_index_stream(obs, chunks, self))

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        prepared, tags = self._pc_prepare(messages, kwargs, stream=True)
        if prepared is None:
            return await self._pc_class().astream_chat(messages, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                chunks = await self._pc_class().astream_chat(list(prepared.call.messages), **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        return self._pc_awatch(prepared, aobserved_llama_index_stream(obs, chunks, self))

    # -- complete: a prompt is one user message; only the plan's options apply -----------------------------

    def _prompt(self, prompt: str) -> list[ChatMessage]:
        return [ChatMessage(role=MessageRole.USER, content=prompt)]

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        prepared, tags = self._pc_prepare(self._prompt(prompt), kwargs, stream=False, completion=True)
        if prepared is None:
            return self._pc_class().complete(prompt, formatted=formatted, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                with obs.active():
                    response = self._pc_class().complete(prompt, formatted=formatted, **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        self._pc_observe(prepared, response)
        finish_llama_index_response(obs, response, self)
        return response

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        prepared, tags = self._pc_prepare(self._prompt(prompt), kwargs, stream=False, completion=True)
        if prepared is None:
            return await self._pc_class().acomplete(prompt, formatted=formatted, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                with obs.active():
                    response = await self._pc_class().acomplete(prompt, formatted=formatted, **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        self._pc_observe(prepared, response)
        finish_llama_index_response(obs, response, self)
        return response

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        prepared, tags = self._pc_prepare(self._prompt(prompt), kwargs, stream=True, completion=True)
        if prepared is None:
            return self._pc_class().stream_complete(prompt, formatted=formatted, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                chunks = self._pc_class().stream_complete(prompt, formatted=formatted, **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        return self._pc_watch(prepared, observed_llama_index_stream(obs, chunks, self))

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        prepared, tags = self._pc_prepare(self._prompt(prompt), kwargs, stream=True, completion=True)
        if prepared is None:
            return await self._pc_class().astream_complete(prompt, formatted=formatted, **kwargs)
        obs = self._pc_span(prepared)
        with self._pc_scope(tags):
            try:
                chunks = await self._pc_class().astream_complete(prompt, formatted=formatted, **prepared.call.kwargs())
            except BaseException as exc:
                obs.fail(exc)
                raise
        return self._pc_awatch(prepared, aobserved_llama_index_stream(obs, chunks, self))

    # -- pickling (multiprocess ingestion pipelines pickle their LLMs) -------------------------------------

    def __reduce__(self) -> Any:
        """Pickled as the caller's own class plus the caching options, and wrapped again when loaded: the
        `PromptCaching<Class>` classes are created at run time, so they cannot be found by name."""
        mro = type(self).__mro__
        plain = self.model_copy()
        (plain.__pydantic_private__ or {}).pop("_prompt_caching_state", None)
        object.__setattr__(plain, "__class__", mro[mro.index(PromptCachingLLM) + 1])
        return (_wrap, (plain, self._prompt_caching_state))

    # -- a repr without credentials ------------------------------------------------------------------------

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("**********" if name and _is_secret(name) and value else value)


_CLASSES: dict[type, type] = {}


def _caching_class(base: type[LLM]) -> type:
    """`PromptCaching<Base>`: `base` with `PromptCachingLLM` in front, one per class (created on first use)."""
    cls = _CLASSES.get(base)
    if cls is None:
        name = f"PromptCaching{base.__name__}"
        namespace = {
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{base.__name__} with prompt caching (see `with_prompt_caching`).",
            "_prompt_caching_state": PrivateAttr(default=None),
        }
        # setdefault: two threads wrapping the same class at once keep one of the two (equivalent) classes
        metaclass: Any = type(base)
        cls = _CLASSES.setdefault(base, metaclass(name, (PromptCachingLLM, base), namespace))
    return cls


def with_prompt_caching(llm: LLMT, *, session_id: str | None = None, instrument: Any = None, **options: Any) -> LLMT:
    """A copy of `llm` (any LlamaIndex LLM: OpenAI, OpenAILike, AzureOpenAI, Anthropic, GoogleGenAI, ...)
    whose requests its provider's cache can serve. `llm` itself is left as it was.

    Options: `provider` (default: detected from the LLM's package, class and base URL; ``"openai"`` for an
    OpenAI proxy on another host, since an `OpenAI` pointed at another host is treated as an OpenAI-compatible
    server and gets no OpenAI-only fields); `layout` (default True: system messages first, tools by name, the
    provider's options; False sends the caller's request as it is); `prompt_cache_key` (OpenAI: a fixed key, a
    callable of the `CallContext`, or None to hash the session id); `retention` (OpenAI: ``"in_memory"`` or
    ``"24h"``); `prompt_cache_options` (GPT-5.6 explicit mode); for `GoogleGenAI`, `cache_mode`, `cache_ttl` and
    `cache_registry` (managed Gemini explicit caches, see `with_gemini_caching`). `session_id`: the session of
    calls made outside any `prompt_cache_session` block. `instrument`: OpenTelemetry spans and metrics per call
    (see `cache_integrations.otel`; None follows `instrument()`).

    This package's own `GLM` and `Gemini`, and LLMs already wrapped, are returned unchanged: they cache by
    themselves.
    """
    if not isinstance(llm, LLM):
        raise ConfigurationError(
            f"with_prompt_caching: expected a LlamaIndex LLM (llama_index.core.llms.LLM), got {type(llm).__name__}"
        )
    if session_id is not None and (not isinstance(session_id, str) or not session_id):
        raise ConfigurationError(f"session_id: expected a non-empty string or None, got {session_id!r:.80}")
    if options.get("server_diagnostics"):
        raise ConfigurationError(
            "server_diagnostics: asked through LangChain's ChatAnthropic only (cache_integrations.langchain); "
            "the LlamaIndex handlers read a provider's diagnostics when a response carries them"
        )
    state = _State.create(session_id, options, instrument)  # bad options raise here, before anything is sent
    if isinstance(llm, PromptCachingLLM | CachingLLM):
        return llm
    if options.get("provider") in (None, "google") and _is_google_genai(llm):
        # Gemini's explicit caches live inside the call (the cache is created, named and recovered around the
        # request the class builds): the Gemini mixin does the whole job, with the Gemini options.
        from ._gemini_foreign import with_gemini_caching

        gemini = {k: v for k, v in options.items() if k in (*GEMINI_OPTIONS, "layout")}
        return with_gemini_caching(llm, instrument=instrument, **gemini)
    return _wrap(llm, state)


def _is_google_genai(llm: LLM) -> bool:
    return any(c.__module__.startswith("llama_index.llms.google_genai") for c in type(llm).__mro__)


def _wrap(llm: LLMT, state: _State) -> LLMT:
    wrapped = llm.model_copy()
    object.__setattr__(wrapped, "__class__", _caching_class(type(llm)))
    wrapped._prompt_caching_state = state  # type: ignore[attr-defined]
    return wrapped
