"""API keys: checked once when a client is built, and kept out of every message and log line.

A key read from a file or a terminal often carries a trailing newline; sent as a header it made h11
raise an error whose text *is* the header line, which then travelled through retries, the error chain
and httpcore's DEBUG log. Here surrounding whitespace is stripped and anything that cannot be a header
value (inner whitespace, control or non-ASCII characters) is refused before a request exists, naming
the field and the position, never the key.

As defence in depth, every key a provider was built with is registered: `redact` replaces it (and its
URL-quoted and escaped spellings) in error messages and bodies (`ProviderError` calls it), and a filter
on the ``httpx`` and ``httpcore`` loggers does the same for their DEBUG lines (a server that echoes
the key in a header or a redirect ``Location`` would otherwise have it logged).
"""

from __future__ import annotations

import logging
import os
import threading
import unicodedata
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

__all__ = ["REDACTED", "check_api_key", "check_header_values", "redact", "redact_value", "register_secret"]

REDACTED = "[REDACTED]"
MIN_REDACTED_LENGTH = 8
"""Keys shorter than this are placeholders (tests, local servers): replacing them in every message
would mangle ordinary words, so they are not registered for redaction."""
_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)

_secrets: tuple[str, ...] = ()
_known: frozenset[str] = frozenset()
_lock = threading.Lock()
_filter_installed = False


def _describe(char: str) -> str:
    if char in "\r\n":
        return "a line break"
    if char.isspace():
        return "whitespace"
    if unicodedata.category(char).startswith("C"):
        return "a control character"
    return "a non-ASCII character"


def check_api_key(value: str, field: str) -> str:
    """`value` without surrounding whitespace; `ConfigurationError` (naming `field`, never the key)
    when it is empty or holds a character a header cannot carry."""
    from .errors import ConfigurationError  # errors imports this module

    key = value.strip()
    if not key:
        raise ConfigurationError(f"{field} is empty (or only whitespace)")
    for position, char in enumerate(key):
        if not "\x21" <= char <= "\x7e":
            raise ConfigurationError(
                f"{field} contains {_describe(char)} at position {position} of {len(key)} "
                "(after removing surrounding whitespace); an API key is printable ASCII without spaces. "
                "Check how the key was read (a file or variable with extra characters?)"
            )
    return key


def check_header_values(headers: Mapping[str, str], field: str) -> None:
    """Refuse header names or values a request cannot carry, naming the header but not its value."""
    from .errors import ConfigurationError

    for name, value in headers.items():
        if not isinstance(name, str) or not name or any(not "\x21" <= c <= "\x7e" or c == ":" for c in name):
            raise ConfigurationError(f"{field}: {name!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ConfigurationError(f"{field}[{name!r}]: expected a string value, got {type(value).__name__}")
        for position, char in enumerate(value):
            if not (" " <= char <= "\x7e" or char == "\t"):
                raise ConfigurationError(
                    f"{field}[{name!r}]: the value contains {_describe(char)} at position {position}; "
                    "header values are printable ASCII on one line"
                )


def register_secret(secret: str) -> None:
    """Redact `secret` from provider errors and HTTP library log lines from now on (this process)."""
    global _secrets, _known
    if len(secret) < MIN_REDACTED_LENGTH or secret in _known:
        return
    with _lock:
        spellings = {secret, quote(secret, safe=""), repr(secret)[1:-1], repr(secret.encode())[2:-1]}
        _known = _known | {secret}
        # Longest first, so a spelling that contains another is replaced whole.
        _secrets = tuple(sorted(set(_secrets) | spellings, key=len, reverse=True))
    _install_log_filter()


def redact(text: str) -> str:
    """`text` with every registered key replaced by ``[REDACTED]``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, _depth: int = 0) -> Any:
    """A copy of a decoded JSON value (or any str/bytes/mapping/sequence) with keys redacted."""
    if not _secrets:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace")).encode()
    if _depth > 64:
        return REDACTED
    if isinstance(value, Mapping):
        return {redact_value(k, _depth + 1): redact_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, _depth + 1) for v in value)
    return value


class _RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message contains a registered key (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactingFilter()


def _install_log_filter() -> None:
    global _filter_installed
    if _filter_installed:
        return
    _filter_installed = True
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a fork while another thread registered a key must not leave it held


os.register_at_fork(after_in_child=_after_fork_in_child)
