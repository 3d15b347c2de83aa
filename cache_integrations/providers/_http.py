"""The HTTP layer every provider shares: pooled clients, retries with backoff, SSE streams, limits.

Providers subclass `HTTPProvider` and supply three things: auth headers, how to turn an error
response into a typed `ProviderError`, and which of those errors are worth retrying. Everything
else lives here once:

- connection reuse, owned per process and per event loop (`_pool`);
- retries with backoff and `Retry-After` (unparseable or non-finite values fall back to the backoff),
  a stream retried only before its first event, a non-idempotent request only when it was never sent;
- redirects are never followed (a 3xx is an `UnexpectedRedirectError`) and the auth headers only go to
  the configured base URL's origin;
- bodies are read incrementally up to ``max_response_bytes`` and must be what the API documents,
  else `MalformedResponseError` / `ResponseTooLargeError` (`_body`);
- an optional overall ``deadline`` per call, across retries and the whole stream;
- the clock and the sleeps are injectable, so tests can see the exact delays without waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from .._secrets import check_api_key, check_header_values, register_secret
from ..errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
    UnexpectedRedirectError,
)
from ..layout import PrefixFingerprints
from ..usage import Usage
from ._body import (
    DEFAULT_MAX_RESPONSE_BYTES,
    ERROR_BODY_BYTES,
    BodyDecoder,
    Deadline,
    SSEDecoder,
    decode_json_object,
    excerpt,
    finite_seconds,
    malformed,
)
from ._pool import ClientPool
from ._retry import RetryPolicy, parse_retry_after

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "STATUS_ERRORS",
    "EncodedRequest",
    "HTTPProvider",
    "RetryPolicy",
    "decode_error_body",
    "parse_retry_after",
]

logger = logging.getLogger("cache_integrations.providers")

STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
"""The error class for an HTTP status, before a provider's own codes refine it (5xx: ServerError)."""


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """The exact bytes sent, and the fingerprints of their prefix."""

    body: bytes
    fingerprints: PrefixFingerprints
    model: str


def decode_error_body(body: bytes) -> Any:
    """An error body as JSON, or (proxies, gateways) its first 200 characters as the message."""
    try:
        return json.loads(body) if body.strip() else {}
    except ValueError:
        return {"error": {"message": body[:200].decode("utf-8", "replace")}}


DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
# httpcore writes a request's headers and body in separate sends; with Nagle's algorithm on, the body
# can wait for the peer's delayed ACK of the headers (~40 ms). urllib3 and curl disable Nagle too.
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
# Transport failures that happen before a request's first byte is sent: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def _chain(exc: httpx.TransportError) -> BaseException | None:
    """What a connection error may be chained to: protocol errors can quote header lines, never them."""
    return None if isinstance(exc, httpx.ProtocolError) else exc


def _is_event_stream(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type")
    return content_type is None or content_type.lower().startswith("text/event-stream")


_warned_usage: dict[tuple[int, str], object] = {}


def _same_origin(url: str, base_url: str) -> bool:
    a, b = httpx.URL(url), httpx.URL(base_url)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


class HTTPProvider:
    """Base of the provider clients. Thread-safe, fork-safe; safe to share between chat model instances.

    `deadline` (seconds) bounds a whole call, across retries and the whole stream (None: only the
    per-attempt `timeout`). `max_response_bytes` caps a decoded response body and each stream event.
    `clock` (monotonic seconds), `sleep` and `async_sleep` are injectable for tests.
    """

    provider: ClassVar[str] = "provider"

    def __init__(
        self,
        *,
        api_key: SecretStr,
        base_url: str,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        default_headers: Mapping[str, str] | None = None,
        retry_policy: RetryPolicy | None = None,
        deadline: float | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        owner = type(self).__name__
        key = check_api_key(api_key.get_secret_value(), f"{owner} api_key")
        register_secret(key)
        self._api_key = SecretStr(key)
        self.base_url = base_url.rstrip("/")
        try:
            base = httpx.URL(self.base_url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise ConfigurationError(f"{owner} base_url: {exc}") from None
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigurationError(f"{owner} base_url: expected an http(s) URL with a host, got {self.base_url!r}")
        self._origin = _origin(base)
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 1:
            raise ConfigurationError(f"{owner} max_response_bytes: expected a positive int, got {max_response_bytes!r}")
        self.max_response_bytes = max_response_bytes
        self.deadline = finite_seconds(deadline, f"{owner} deadline")
        self._timeout = (
            timeout
            if isinstance(timeout, httpx.Timeout)
            else (DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        )
        self.retry = retry_policy or RetryPolicy(max_retries=max_retries)
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._pool = ClientPool(
            self._new_sync_client, self._new_async_client, user_sync=http_client, user_async=async_http_client
        )
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        # Only encodings `_body` inflates itself, in bounded steps.
        self._headers["Accept-Encoding"] = "gzip, deflate"
        if default_headers:
            check_header_values(default_headers, f"{owner} default_headers")
            self._headers.update(default_headers)
        self._public_headers = dict(self._headers)
        self._headers.update(self.auth_headers(self._api_key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    @property
    def credential_fingerprint(self) -> str:
        """Identifies the credential and endpoint without revealing the key (namespaces caches)."""
        digest = hashlib.sha256(b"cache-integrations/credential/v1\0")
        digest.update(self._api_key.get_secret_value().encode())
        digest.update(b"\0" + self.base_url.encode())
        return digest.hexdigest()[:32]

    # -- what subclasses provide ---------------------------------------------------------------

    def auth_headers(self, api_key: SecretStr) -> dict[str, str]:
        raise NotImplementedError

    def error_from_response(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return self.error_from_body(status, decode_error_body(body))

    def error_from_body(self, status: int, body: Any) -> ProviderError:
        """The typed error for a decoded error body."""
        raise NotImplementedError

    def is_retryable(self, error: ProviderError) -> bool:
        return error.status_code == 429 or error.status_code >= 500

    # -- clients -------------------------------------------------------------------------------

    def _new_sync_client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout, transport=httpx.HTTPTransport(socket_options=SOCKET_OPTIONS))

    def _new_async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._timeout, transport=httpx.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS)
        )

    def _sync_client(self) -> httpx.Client:
        return self._pool.sync_client()

    def _async_client(self) -> httpx.AsyncClient:
        return self._pool.async_client()

    def http_client(self) -> httpx.Client:
        """The pooled sync client (for protocols beyond JSON requests: the Files API's uploads)."""
        return self._sync_client()

    def async_http_client(self) -> httpx.AsyncClient:
        """The async client of the running event loop."""
        return self._async_client()

    def headers_for(self, url: str) -> dict[str, str]:
        """The headers to send to `url`: the API key goes only to the configured scheme, host and port.

        URLs a server hands back (a resumable upload's session URL) may point anywhere; the key must
        not follow them off the host the caller configured.
        """
        headers = dict(self._headers)
        if not _same_origin(url, self.base_url):
            for name in self.auth_headers(self._api_key):
                headers.pop(name, None)
        return headers

    def close(self) -> None:
        self._pool.close()

    async def aclose(self) -> None:
        await self._pool.aclose()

    # -- unknown usage -------------------------------------------------------------------------

    def _note_usage(self, usage: Usage | None, raw: Any) -> None:
        """Warn (once per provider and process) that a call's usage was missing or invalid."""
        if usage is not None:
            return
        token = object()
        if _warned_usage.setdefault((os.getpid(), self.provider), token) is token:
            logger.warning(
                "%s: a response carried no valid token usage (%s); such calls are reported with usage unknown "
                "(usage=None) and no tokens are booked for them. This warning is shown once per process.",
                self.provider,
                "missing or not an object" if raw is None else f"got {excerpt(raw, 120)}",
            )

    # -- requests ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path.lstrip('/')}"

    def _headers_for(self, url: str) -> dict[str, str]:
        """The request headers; the auth headers only for the configured base URL's origin."""
        if url.startswith(self.base_url + "/") or _origin(httpx.URL(url)) == self._origin:
            return self._headers
        return self._public_headers

    def _start(self) -> Deadline:
        return Deadline.start(self.deadline, self.provider, self._clock)

    def _attempt_timeout(self, client: httpx.Client | httpx.AsyncClient, deadline: Deadline) -> httpx.Timeout:
        base = client.timeout
        if deadline.at is None:
            return base
        return httpx.Timeout(
            connect=deadline.cap(base.connect),
            read=deadline.cap(base.read),
            write=deadline.cap(base.write),
            pool=deadline.cap(base.pool),
        )

    def _build(
        self,
        client: httpx.Client | httpx.AsyncClient,
        method: str,
        url: str,
        body: bytes | None,
        params: Mapping[str, str] | None,
        deadline: Deadline,
    ) -> httpx.Request:
        return client.build_request(
            method,
            url,
            content=body,
            params=params,
            headers=self._headers_for(url),
            timeout=self._attempt_timeout(client, deadline),
        )

    def _retry_delay(
        self, error: ProviderError | None, headers: Mapping[str, str] | None, attempt: int
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when the failure is final."""
        if attempt >= self.retry.max_retries:
            return None
        if error is not None and not self.is_retryable(error):
            return None
        return self.retry.delay(attempt, parse_retry_after(headers) if headers is not None else None)

    def _connection_error(
        self, exc: httpx.TransportError, *, interrupted: bool = False, attempts: int | None = None
    ) -> ProviderConnectionError:
        maybe_sent = not isinstance(exc, _NOT_SENT)
        if interrupted:
            what = f"the stream from {self.base_url} was interrupted ({type(exc).__name__})"
        else:
            tries = self.retry.max_retries + 1 if attempts is None else attempts
            what = f"could not reach {self.base_url} ({type(exc).__name__}) after {tries} attempt(s)"
        return ProviderConnectionError(f"{self.provider}: {what}", provider=self.provider, maybe_sent=maybe_sent)

    def _transport_retry_delay(self, exc: httpx.TransportError, attempt: int, idempotent: bool) -> float | None:
        """Backoff before retrying after a transport error; None when the failure is final.

        A non-idempotent request (creating a resource) is retried only when it certainly never left
        this process (connect errors, pool timeouts): after a read timeout or a reset it may have
        taken effect, and the caller must find out before sending it again.
        """
        if not idempotent and not isinstance(exc, _NOT_SENT):
            return None
        return self._retry_delay(None, None, attempt)

    def _status_retry_delay(
        self, error: ProviderError, headers: Mapping[str, str], attempt: int, idempotent: bool
    ) -> float | None:
        # A 429 was refused before any work; a 5xx on a non-idempotent request is ambiguous.
        if not idempotent and error.status_code != 429:
            return None
        return self._retry_delay(error, headers, attempt)

    def _after_transport_error(
        self,
        exc: httpx.TransportError,
        attempt: int,
        deadline: Deadline,
        *,
        idempotent: bool = True,
        started: bool = False,
    ) -> float:
        """The delay before retrying after `exc`; raises (outside any ``except``, so nothing that can
        quote a header is chained) when the failure is final."""
        maybe_sent = not isinstance(exc, _NOT_SENT)
        if deadline.expired:
            raise deadline.error(maybe_sent=maybe_sent) from _chain(exc)
        delay = None if started else self._transport_retry_delay(exc, attempt, idempotent)
        if delay is None or not deadline.allows(delay):
            raise self._connection_error(exc, interrupted=started, attempts=attempt + 1) from _chain(exc)
        return delay

    def _after_status_error(
        self, error: ProviderError, headers: Mapping[str, str], attempt: int, deadline: Deadline, idempotent: bool
    ) -> float:
        delay = self._status_retry_delay(error, headers, attempt, idempotent)
        if delay is None or not deadline.allows(delay):
            raise error
        return delay

    def _redirect(self, response: httpx.Response) -> UnexpectedRedirectError:
        location = response.headers.get("location")
        return UnexpectedRedirectError(
            f"the server answered with a redirect to {location!r}; redirects are not followed, so the API key "
            f"is only ever sent to {self.base_url} (check base_url)",
            location=location,
            status_code=response.status_code,
            provider=self.provider,
        )

    def _unexpected_success(self, response: httpx.Response, data: bytes) -> ProviderError:
        """A 2xx that is not what was asked for (a stream request answered without an event stream)."""
        content_type = response.headers.get("content-type")
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        if isinstance(decoded, Mapping) and "error" in decoded:
            return self.error_from_body(response.status_code, dict(decoded))
        return malformed(
            self.provider,
            f"expected an event stream (text/event-stream), got content-type {content_type!r}",
            data,
            status=response.status_code,
        )

    # -- reading -------------------------------------------------------------------------------

    def _decoder(self, response: httpx.Response, *, error: bool = False) -> BodyDecoder:
        # A response already read (a mock transport, a user client's event hook) is decoded already.
        encoding = None if response.is_stream_consumed else response.headers.get("content-encoding")
        return BodyDecoder(
            encoding,
            ERROR_BODY_BYTES if error else self.max_response_bytes,
            self.provider,
            status=response.status_code,
            truncate=error,
        )

    @staticmethod
    def _raw(response: httpx.Response) -> Iterator[bytes]:
        return iter((response.content,)) if response.is_stream_consumed else response.iter_raw()

    @staticmethod
    async def _araw(response: httpx.Response) -> AsyncIterator[bytes]:
        if response.is_stream_consumed:
            yield response.content
            return
        async for raw in response.aiter_raw():
            yield raw

    def _read(self, response: httpx.Response, deadline: Deadline, *, error: bool = False) -> bytes:
        decoder = self._decoder(response, error=error)
        parts = []
        for raw in self._raw(response):
            deadline.check()
            parts.append(decoder.feed(raw))
            if decoder.full:
                break
        parts.append(decoder.flush())
        return b"".join(parts)

    async def _aread(self, response: httpx.Response, deadline: Deadline, *, error: bool = False) -> bytes:
        decoder = self._decoder(response, error=error)
        parts = []
        async for raw in self._araw(response):
            deadline.check()
            parts.append(decoder.feed(raw))
            if decoder.full:
                break
        parts.append(decoder.flush())
        return b"".join(parts)

    def _answer(self, response: httpx.Response, data: bytes) -> dict[str, Any]:
        return decode_json_object(data, self.provider, content_type=response.headers.get("content-type"))

    def _error_of(self, response: httpx.Response, data: bytes) -> ProviderError:
        if response.status_code < 300:
            return self._unexpected_success(response, data)
        return self.error_from_response(response.status_code, response.headers, data)

    # -- sync ----------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """Send a request and return the decoded JSON object, retrying what is worth retrying.

        With ``idempotent=False`` (creating a resource) only failures that certainly happened before
        the request was sent, and 429s, are retried; anything ambiguous raises at once, a connection
        error with ``maybe_sent=True``.
        """
        client = self._sync_client()
        url = self._url(path)
        deadline = self._start()
        attempt = 0
        while True:
            failure: httpx.TransportError | None = None
            try:
                request = self._build(client, method, url, body, params, deadline)
                response = client.send(request, stream=True, follow_redirects=False)
                try:
                    if 300 <= response.status_code < 400:
                        raise self._redirect(response)
                    if response.status_code < 300:
                        return self._answer(response, self._read(response, deadline))
                    error = self._error_of(response, self._read(response, deadline, error=True))
                finally:
                    response.close()
            except httpx.TransportError as exc:
                failure = exc
            if failure is not None:
                delay = self._after_transport_error(failure, attempt, deadline, idempotent=idempotent)
            else:
                delay = self._after_status_error(error, response.headers, attempt, deadline, idempotent)
            self._sleep(delay)
            attempt += 1

    def stream_events(self, path: str, body: bytes, params: Mapping[str, str] | None = None) -> Iterator[str]:
        """Yield the `data` of each SSE event. Retries happen only before the first event."""
        client = self._sync_client()
        url = self._url(path)
        deadline = self._start()
        attempt = 0
        while True:
            started = False
            failure: httpx.TransportError | None = None
            try:
                request = self._build(client, "POST", url, body, params, deadline)
                response = client.send(request, stream=True, follow_redirects=False)
                try:
                    if 300 <= response.status_code < 400:
                        raise self._redirect(response)
                    if response.status_code < 300 and _is_event_stream(response):
                        decoder = self._decoder(response)
                        events = SSEDecoder(self.max_response_bytes, self.provider)
                        for raw in self._raw(response):
                            deadline.check()
                            for data in events.feed(decoder.feed(raw)):
                                started = True
                                yield data
                        for data in events.feed(decoder.flush()):
                            yield data
                        return
                    error = self._error_of(response, self._read(response, deadline, error=True))
                finally:
                    response.close()
            except httpx.TransportError as exc:
                failure = exc
            if failure is not None:
                delay = self._after_transport_error(failure, attempt, deadline, started=started)
            else:
                delay = self._after_status_error(error, response.headers, attempt, deadline, True)
            self._sleep(delay)
            attempt += 1

    # -- async ---------------------------------------------------------------------------------

    async def arequest(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        *,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        client = self._async_client()
        url = self._url(path)
        deadline = self._start()
        attempt = 0
        while True:
            failure: httpx.TransportError | None = None
            try:
                request = self._build(client, method, url, body, params, deadline)
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    if 300 <= response.status_code < 400:
                        raise self._redirect(response)
                    if response.status_code < 300:
                        return self._answer(response, await self._aread(response, deadline))
                    error = self._error_of(response, await self._aread(response, deadline, error=True))
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                failure = exc
            if failure is not None:
                delay = self._after_transport_error(failure, attempt, deadline, idempotent=idempotent)
            else:
                delay = self._after_status_error(error, response.headers, attempt, deadline, idempotent)
            await self._async_sleep(delay)
            attempt += 1

    async def astream_events(
        self, path: str, body: bytes, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        client = self._async_client()
        url = self._url(path)
        deadline = self._start()
        attempt = 0
        while True:
            started = False
            failure: httpx.TransportError | None = None
            try:
                request = self._build(client, "POST", url, body, params, deadline)
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    if 300 <= response.status_code < 400:
                        raise self._redirect(response)
                    if response.status_code < 300 and _is_event_stream(response):
                        decoder = self._decoder(response)
                        events = SSEDecoder(self.max_response_bytes, self.provider)
                        async for raw in self._araw(response):
                            deadline.check()
                            for data in events.feed(decoder.feed(raw)):
                                started = True
                                yield data
                        for data in events.feed(decoder.flush()):
                            yield data
                        return
                    error = self._error_of(response, await self._aread(response, deadline, error=True))
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                failure = exc
            if failure is not None:
                delay = self._after_transport_error(failure, attempt, deadline, started=started)
            else:
                delay = self._after_status_error(error, response.headers, attempt, deadline, True)
            await self._async_sleep(delay)
            attempt += 1
