"""Request and option validation, written once for every adapter and provider.

Everything here runs before a request leaves the process. An error names the field, the value it got
and what is allowed: `ConfigurationError` for a model's constructor arguments, `InvalidRequestError`
for a call (per-call overrides such as ``llm.invoke(..., temperature=9)`` or ``bind(max_tokens=0)``
included). Both are `ValueError`.

The providers' encode steps call `validate_request`, so every path that builds a request body (chat,
stream, async, count tokens, explicit cache creation) is covered, whatever adapter built the request.
The adapters call `validate_settings` and `reject_unknown_arguments` from their constructors.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

from pydantic import AliasChoices, BaseModel

from ._memo import MessageFacts, facts_of
from .errors import CacheIntegrationsError, ConfigurationError, InvalidRequestError
from .messages import ChatRequest, ImagePart, Message, TextPart, ToolDefinition

__all__ = [
    "GEMINI_LIMITS",
    "GLM_LIMITS",
    "TOOL_NAME_PATTERN",
    "SamplingLimits",
    "argument_names",
    "check_arguments",
    "check_seconds",
    "check_tools",
    "reject_unknown_arguments",
    "validate_request",
    "validate_settings",
]


@dataclass(frozen=True, slots=True)
class SamplingLimits:
    """A provider's documented ranges for the sampling parameters (both ends inclusive)."""

    provider: str
    temperature: tuple[float, float]
    top_p: tuple[float, float]


# GLM / Z.ai chat completions (https://docs.z.ai/api-reference/llm/chat-completion, the same API as
# open.bigmodel.cn): temperature in [0.0, 1.0]; top_p "value range is: [0.01, 1.0]".
GLM_LIMITS = SamplingLimits("GLM", temperature=(0.0, 1.0), top_p=(0.01, 1.0))

# Gemini GenerationConfig (https://ai.google.dev/api/generate-content#generationconfig): temperature
# "Values can range from [0.0, 2.0]"; topP is the maximum cumulative probability, so [0.0, 1.0].
GEMINI_LIMITS = SamplingLimits("Gemini", temperature=(0.0, 2.0), top_p=(0.0, 1.0))

TOOL_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""Tool (function) names every supported provider accepts: letters, digits, ``_``, ``.``, ``-``; 1 to 64."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_DEPTH = 64  # JSON nesting walked when looking for unencodable text


# -- numbers ---------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_seconds(
    field: str, value: Any, *, error: type[CacheIntegrationsError] = ConfigurationError, owner: str = ""
) -> None:
    """`value` is None or a positive, finite number of seconds (a TTL, a timeout, a deadline)."""
    if value is None:
        return
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise error(
            f"{owner}{field}: expected a positive, finite number of seconds (> 0, not nan or inf), got {value!r}"
        )


def _check_range(
    field: str, value: Any, bounds: tuple[float, float], provider: str, error: type[Exception], owner: str
) -> None:
    if value is None:
        return
    low, high = bounds
    if not _is_number(value) or not math.isfinite(value) or not low <= value <= high:
        raise error(f"{owner}{field}: {value!r} is outside {provider}'s allowed range [{low}, {high}]")


def _check_sampling(
    limits: SamplingLimits, temperature: Any, top_p: Any, max_tokens: Any, error: type[Exception], owner: str = ""
) -> None:
    _check_range("temperature", temperature, limits.temperature, limits.provider, error, owner)
    _check_range("top_p", top_p, limits.top_p, limits.provider, error, owner)
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise error(
            f"{owner}max_tokens: expected an integer >= 1 (or None for the provider's default), got {max_tokens!r}"
        )


_SECONDS_SETTINGS = ("timeout", "deadline", "cache_ttl")


def validate_settings(owner: str, limits: SamplingLimits, settings: Any) -> None:
    """Check a model's constructor settings (read as attributes of `settings`, absent ones skipped).

    ``temperature``, ``top_p`` (against the provider's `limits`), ``max_tokens`` (>= 1),
    ``max_retries`` (>= 0) and the durations ``timeout``, ``deadline``, ``cache_ttl`` (positive and
    finite). Raises `ConfigurationError` prefixed with `owner`, the class the user constructed.
    """
    prefix = f"{owner}: "
    _check_sampling(
        limits,
        getattr(settings, "temperature", None),
        getattr(settings, "top_p", None),
        getattr(settings, "max_tokens", None),
        ConfigurationError,
        prefix,
    )
    for field in _SECONDS_SETTINGS:
        check_seconds(field, getattr(settings, field, None), owner=prefix)
    retries = getattr(settings, "max_retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigurationError(f"{prefix}max_retries: expected an integer >= 0, got {retries!r}")


# -- text ------------------------------------------------------------------------------------------


def _bad_text(value: Any, where: str, depth: int = 0) -> tuple[str, int, str] | None:
    """The first string in `value` (nested JSON) that cannot be encoded as UTF-8: (where, offset, char)."""
    if isinstance(value, str):
        if value.isascii():
            return None
        m = _SURROGATE.search(value)
        return None if m is None else (where, m.start(), m.group())
    if depth > _MAX_DEPTH:
        return None  # canonical JSON encoding rejects cycles and absurd depth on its own
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _bad_text(key, f"{where} key {key!r}", depth + 1) or _bad_text(item, f"{where}.{key}", depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if found := _bad_text(item, f"{where}[{i}]", depth + 1):
                return found
    return None


def _raise_bad_text(found: tuple[str, int, str]) -> None:
    where, offset, char = found
    raise InvalidRequestError(
        f"{where}: contains the lone surrogate {char!r} at character {offset}, which cannot be encoded as "
        "UTF-8; allowed: valid Unicode text (decode input with errors='replace' or remove the character)"
    )


def _message_fields(message: Message, where: str) -> Iterable[tuple[Any, str]]:
    if isinstance(message.content, str):
        yield message.content, f"{where}.content"
    else:
        for j, part in enumerate(message.content):
            if isinstance(part, TextPart):
                yield part.text, f"{where}.content[{j}].text"
            elif isinstance(part, ImagePart):
                yield part.url, f"{where}.content[{j}].url"
    for field, value in (("name", message.name), ("tool_call_id", message.tool_call_id)):
        if value:
            yield value, f"{where}.{field}"
    if message.reasoning:
        yield message.reasoning, f"{where}.reasoning"
    for k, call in enumerate(message.tool_calls):
        call_where = f"{where}.tool_calls[{k}]"
        yield call.id, f"{call_where}.id"
        yield call.name, f"{call_where}.name"
        yield call.arguments, f"{call_where}.arguments"
        if call.raw_arguments is not None:
            yield call.raw_arguments, f"{call_where}.raw_arguments"


def _check_messages(messages: Sequence[Message], facts: Sequence[MessageFacts] | None = None) -> None:
    """Every message's text encodes as UTF-8; a message checked once is not checked again (`facts`)."""
    for i, (message, known) in enumerate(zip(messages, facts or facts_of(messages), strict=True)):
        if known.valid:
            continue
        for value, where in _message_fields(message, f"messages[{i}]"):
            if found := _bad_text(value, where):
                _raise_bad_text(found)
        known.valid = True


# -- tools -----------------------------------------------------------------------------------------


def check_tools(tools: Sequence[ToolDefinition]) -> None:
    """Tool names, JSON-schema `parameters` objects and encodable text; raises `InvalidRequestError`."""
    for i, tool in enumerate(tools):
        name = tool.name
        if not isinstance(name, str) or not TOOL_NAME_PATTERN.fullmatch(name):
            raise InvalidRequestError(
                f"tools[{i}].name: {name!r} is not a valid tool name; allowed: 1 to 64 characters from "
                "A-Z, a-z, 0-9, '_', '.', '-' (no spaces)"
            )
        if not isinstance(tool.description, str):
            raise InvalidRequestError(f"tools[{i}].description ({name}): expected a string, got {tool.description!r}")
        params = tool.parameters
        if not isinstance(params, Mapping):
            raise InvalidRequestError(
                f"tools[{i}].parameters ({name}): expected a JSON-schema object such as "
                f'{{"type": "object", "properties": {{...}}}}, got {type(params).__name__} {params!r:.80}'
            )
        kind = params.get("type")
        if kind != "object":
            raise InvalidRequestError(
                f"tools[{i}].parameters ({name}): the schema's type must be 'object' (arguments are named), "
                f"got {kind!r}"
            )
        properties = params.get("properties")
        if properties is not None and not isinstance(properties, Mapping):
            raise InvalidRequestError(
                f"tools[{i}].parameters.properties ({name}): expected an object mapping argument names to "
                f"schemas, got {type(properties).__name__}"
            )
        for value, where in ((tool.description, f"tools[{i}].description"), (params, f"tools[{i}].parameters")):
            if found := _bad_text(value, where):
                _raise_bad_text(found)


# -- the request -----------------------------------------------------------------------------------


def validate_request(request: ChatRequest, limits: SamplingLimits, facts: Sequence[MessageFacts] | None = None) -> None:
    """Check a request against the provider's `limits`; raises `InvalidRequestError` naming the field.

    `facts` are the messages' `MessageFacts` when the caller has them (each message is checked once)."""
    _check_sampling(limits, request.temperature, request.top_p, request.max_tokens, InvalidRequestError)
    if found := _bad_text(request.model, "model"):
        _raise_bad_text(found)
    check_tools(request.tools)
    _check_messages(request.messages, facts)
    for i, stop in enumerate(request.stop):
        if not isinstance(stop, str):
            raise InvalidRequestError(f"stop[{i}]: expected a string, got {stop!r}")
        if found := _bad_text(stop, f"stop[{i}]"):
            _raise_bad_text(found)
    for where, value in (("response_format", request.response_format), ("extra", request.extra)):
        if value is not None and (found := _bad_text(value, where)):
            _raise_bad_text(found)


# -- constructor arguments -------------------------------------------------------------------------


@cache
def argument_names(model: type[BaseModel]) -> Mapping[str, str]:
    """Every keyword a pydantic model's constructor accepts (field names and all their aliases),
    mapped to the field it sets."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
        alias = info.validation_alias
        if isinstance(alias, str):
            names[alias] = name
        elif isinstance(alias, AliasChoices):
            names.update((choice, name) for choice in alias.choices if isinstance(choice, str))
    return MappingProxyType(names)


def reject_unknown_arguments(owner: str, given: Iterable[str], allowed: Mapping[str, str]) -> None:
    """Raise `ConfigurationError` for arguments not in `allowed` (a did-you-mean hint for each) and for
    two spellings of one field (``api_key`` and ``zhipuai_api_key``).

    A misspelled argument must not be dropped silently: ``base_ur=`` would send prompts to the
    default (production) endpoint, ``temprature=5`` would sample at the default temperature.
    """
    given = list(given)
    unknown = [name for name in given if name not in allowed]
    if not unknown:
        seen: dict[str, str] = {}
        for name in given:
            first = seen.setdefault(allowed[name], name)
            if first != name:
                raise ConfigurationError(
                    f"{owner}: {first!r} and {name!r} both set {allowed[name]!r}; pass only one of them"
                )
        return
    choices = sorted(allowed)
    hints = {name: difflib.get_close_matches(name, choices, n=1, cutoff=0.6) for name in unknown}
    listed = ", ".join(n for n in choices if not n.startswith("_"))
    if len(unknown) == 1:
        (name,) = unknown
        hint = f"; did you mean {hints[name][0]!r}?" if hints[name] else "."
        raise ConfigurationError(f"{owner}: unknown argument {name!r}{hint} Allowed: {listed}")
    described = ", ".join(
        f"{name!r} (did you mean {hints[name][0]!r}?)" if hints[name] else repr(name) for name in unknown
    )
    raise ConfigurationError(f"{owner}: unknown arguments {described}. Allowed: {listed}")


def check_arguments(model: type[BaseModel], given: Iterable[str]) -> None:
    """`reject_unknown_arguments` for the constructor of the pydantic `model` (named after its class)."""
    reject_unknown_arguments(model.__name__, given, argument_names(model))
