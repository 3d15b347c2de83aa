"""Typed errors.

Two families: mistakes we catch before a request leaves the process (`InvalidRequestError`,
`ConfigurationError`, both `ValueError` so framework code that expects one still works), and
`ProviderError` for what a provider answered, carrying the HTTP status and the provider's own code
so callers can branch on them without parsing messages. No error message ever contains a secret:
the messages and bodies of provider errors pass through `_secrets.redact`, which removes every API key
a client of this process was built with, should a server echo one back.
"""

from __future__ import annotations

from typing import Any

from ._secrets import redact, redact_value

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CacheIntegrationsError",
    "CachedContentNotFoundError",
    "CachedContentNotSupportedError",
    "CachedContentTooSmallError",
    "ConfigurationError",
    "DeadlineExceededError",
    "ExplicitCachingUnsupportedError",
    "FileNotActiveError",
    "FileProcessingError",
    "FileProcessingFailedError",
    "FileProcessingTimeoutError",
    "InsufficientBalanceError",
    "InvalidRequestError",
    "MalformedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "PinnedContextDeletedError",
    "ProviderConnectionError",
    "ProviderError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ServerError",
    "UnexpectedRedirectError",
    "UploadedFileNotFoundError",
]


class CacheIntegrationsError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(CacheIntegrationsError, ValueError):
    """The client is set up wrongly (missing API key, bad base URL, bad option)."""


class InvalidRequestError(CacheIntegrationsError, ValueError):
    """The request cannot be sent as given; the message names the offending field and value."""


class ProviderConnectionError(CacheIntegrationsError):
    """The provider could not be reached (connect error, timeout) after all retries."""

    def __init__(self, message: str, *, provider: str, maybe_sent: bool = False) -> None:
        super().__init__(redact(message))
        self.provider = provider
        self.maybe_sent = maybe_sent
        """True when the request may have reached the provider before the connection failed (a read
        timeout, a reset after sending): a non-idempotent request (creating a cache) may have taken effect."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_connection_error, (type(self), str(self), self.provider, self.maybe_sent))


def _rebuild_connection_error(
    cls: type[ProviderConnectionError], message: str, provider: str, maybe_sent: bool
) -> ProviderConnectionError:
    return cls(message, provider=provider, maybe_sent=maybe_sent)


class ProviderError(CacheIntegrationsError):
    """The provider answered with an error status.

    `status_code` is the HTTP status; `code` is the provider's own error code as a string
    (Zhipu's business codes such as ``"1214"``, Google's ``"PERMISSION_DENIED"``).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        provider: str,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        self.message = redact(message)
        self.status_code = status_code
        self.code = redact(code) if code is not None else None
        self.provider = provider
        self.request_id = redact(request_id) if request_id is not None else None
        self.body = redact_value(body)
        super().__init__(self._describe())

    def _describe(self) -> str:
        code = f" code={self.code}" if self.code else ""
        rid = f" request_id={self.request_id}" if self.request_id else ""
        return f"{self.provider} HTTP {self.status_code}{code}: {self.message}{rid}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor: make errors survive pickling (multiprocessing, batch workers).
        return (
            _rebuild_provider_error,
            (type(self), self.message, self.status_code, self.code, self.provider, self.request_id),
        )


def _rebuild_provider_error(
    cls: type[ProviderError],
    message: str,
    status_code: int,
    code: str | None,
    provider: str,
    request_id: str | None,
) -> ProviderError:
    return cls(message, status_code=status_code, code=code, provider=provider, request_id=request_id)


class BadRequestError(ProviderError):
    """HTTP 400: the provider rejected the request's content or parameters."""


class CachedContentTooSmallError(BadRequestError):
    """Gemini refused to create a cache below the model's minimum size.

    `total_token_count` and `min_total_token_count` are parsed from the provider's message, so the
    caller learns the minimum for that model instead of hard-coding a table that keeps changing.
    """

    def __init__(
        self,
        message: str,
        *,
        total_token_count: int | None = None,
        min_total_token_count: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.total_token_count = total_token_count
        self.min_total_token_count = min_total_token_count
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        state = {"total_token_count": self.total_token_count, "min_total_token_count": self.min_total_token_count}
        return (*super().__reduce__(), state)


class AuthenticationError(ProviderError):
    """HTTP 401: the API key is missing, malformed or revoked."""


class PermissionDeniedError(ProviderError):
    """HTTP 403."""


class CachedContentNotFoundError(PermissionDeniedError):
    """The referenced cache expired, was deleted or never existed.

    Gemini answers 403 PERMISSION_DENIED "CachedContent not found (or permission denied)" (Vertex: 404).
    A cache manager forgets the cache and recreates it; any other 403 is a real permission problem.
    """


class NotFoundError(ProviderError):
    """HTTP 404: unknown model or resource."""


class CachedContentNotSupportedError(NotFoundError):
    """Gemini refused to create a cache because the model does not take explicit caches.

    Gemini answers 404 NOT_FOUND "models/<model> is not found for API version v1beta, or is not supported
    for createCachedContent." (the wording of its unsupported-method errors). A cache manager remembers the
    model and sends its requests inline, where Gemini's implicit cache still serves repeated prefixes.
    `model` is the model named in the message, when it names one.
    """

    def __init__(self, message: str, *, model: str | None = None, **kwargs: Any) -> None:
        self.model = model
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (*super().__reduce__(), {"model": self.model})


class ExplicitCachingUnsupportedError(InvalidRequestError):
    """An explicit cache was asked for (`cache_context`) on a model that does not take explicit caches.

    Raised before anything is sent; the message names the model and what to do instead. `model` is the model.
    """

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_plain, (type(self), str(self), dict(self.__dict__)))


class PinnedContextDeletedError(InvalidRequestError):
    """A pinned context was used after its cache was deleted with `delete()`.

    Create a new one with `cache_context(...)`, or pass ``recreate=True`` to `cache_context` to have the
    cache created again on the next use. `name` is the deleted cache's name.
    """

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_plain, (type(self), str(self), dict(self.__dict__)))


def _rebuild_plain(cls: type[Exception], message: str, state: dict[str, Any]) -> Exception:
    """Unpickle an error whose constructor takes keyword-only fields: the message, then its attributes."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class RateLimitError(ProviderError):
    """HTTP 429 that is a real rate limit; retried with backoff before it surfaces."""


class InsufficientBalanceError(ProviderError):
    """The account is out of balance (Zhipu code 1113, sent with HTTP 429). Never retried."""


class ServerError(ProviderError):
    """HTTP 5xx; retried with backoff before it surfaces."""


class UploadedFileNotFoundError(PermissionDeniedError):
    """A Files API file referenced by a request expired (48 h after upload), was deleted or never existed.

    Gemini answers 403 PERMISSION_DENIED "You do not have permission to access the File <id> or it
    may not exist."; `file_name` is ``files/<id>``. Whoever uploaded it can upload it again.
    """

    def __init__(self, message: str, *, file_name: str | None = None, **kwargs: Any) -> None:
        self.file_name = file_name
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (*super().__reduce__(), {"file_name": self.file_name})


class FileNotActiveError(BadRequestError):
    """A request used a Files API file that is still PROCESSING (or FAILED): 400 FAILED_PRECONDITION.

    `file_name` is ``files/<id>``; wait until the file is ACTIVE (`GeminiFiles.wait_active`).
    """

    def __init__(self, message: str, *, file_name: str | None = None, **kwargs: Any) -> None:
        self.file_name = file_name
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (*super().__reduce__(), {"file_name": self.file_name})


class FileProcessingError(CacheIntegrationsError):
    """An uploaded file did not become usable. `name` is ``files/<id>``; `display_name` the caller's label."""

    def __init__(self, message: str, *, name: str, display_name: str = "") -> None:
        super().__init__(message)
        self.name = name
        self.display_name = display_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_file_error, (type(self), str(self), self.name, self.display_name), dict(self.__dict__))


def _rebuild_file_error(
    cls: type[FileProcessingError], message: str, name: str, display_name: str
) -> FileProcessingError:
    error = cls.__new__(cls)
    FileProcessingError.__init__(error, message, name=name, display_name=display_name)
    return error


class FileProcessingFailedError(FileProcessingError):
    """The provider finished processing an upload with state FAILED; `reason` is its error message."""

    def __init__(self, message: str, *, name: str, display_name: str = "", reason: str = "") -> None:
        super().__init__(message, name=name, display_name=display_name)
        self.reason = reason


class FileProcessingTimeoutError(FileProcessingError):
    """An upload was still PROCESSING when the wait's deadline passed; `state` is the last one seen."""

    def __init__(
        self, message: str, *, name: str, display_name: str = "", state: str = "PROCESSING", waited: float = 0.0
    ) -> None:
        super().__init__(message, name=name, display_name=display_name)
        self.state = state
        self.waited = waited


class MalformedResponseError(ProviderError):
    """The provider answered with something this client cannot read: a body that is not JSON (an HTML
    page from a proxy, a truncated document), JSON of the wrong shape (``null``, a list, a field of the
    wrong type), or an invalid stream event. The message names what was wrong and quotes the start of
    the body (about 200 characters). Never retried: the same request would get the same answer."""


class ResponseTooLargeError(ProviderError):
    """The response (or one stream event) decoded to more than `limit` bytes (``max_response_bytes``);
    reading stopped there, so a compressed "bomb" cannot exhaust memory."""

    def __init__(self, message: str, *, limit: int, **kwargs: Any) -> None:
        self.limit = limit
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_sized_error, (type(self), self.message, self.status_code, self.provider, self.limit))


def _rebuild_sized_error(
    cls: type[ResponseTooLargeError], message: str, status_code: int, provider: str, limit: int
) -> ResponseTooLargeError:
    return cls(message, limit=limit, status_code=status_code, provider=provider)


class UnexpectedRedirectError(ProviderError):
    """The provider answered with a redirect (3xx). Redirects are never followed, so the API key is
    never sent to another host; `location` is where the server pointed (keys redacted)."""

    def __init__(self, message: str, *, location: str | None = None, **kwargs: Any) -> None:
        self.location = redact(location) if location is not None else None
        super().__init__(message, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (*super().__reduce__(), {"location": self.location})


class DeadlineExceededError(ProviderConnectionError):
    """The call's overall `deadline` (seconds, across retries and the whole stream) passed.

    Unlike the per-attempt timeout, the deadline also stops a server that keeps a connection alive by
    dripping bytes."""

    def __init__(self, message: str, *, provider: str, maybe_sent: bool = True, deadline: float = 0.0) -> None:
        super().__init__(message, provider=provider, maybe_sent=maybe_sent)
        self.deadline = deadline

    def __reduce__(self) -> tuple[Any, ...]:
        return (*super().__reduce__(), {"deadline": self.deadline})
