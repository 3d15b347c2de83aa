"""The HTTP layer every provider shares: pooled clients, retries with backoff, SSE streams.

Providers subclass `HTTPProvider` and supply three things: auth headers, how to turn an error
response into a typed `ProviderError`, and which of those errors are worth retrying. Everything
else (connection reuse, one async client per event loop, `Retry-After`, retrying a stream only
before its first byte) lives here once.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import random
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from httpx_sse import EventSource
from pydantic import SecretStr

from ..errors import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProviderConnectionError,
    ProviderError,
    RateLimitError,
)
from ..layout import PrefixFingerprints

__all__ = ["STATUS_ERRORS", "EncodedRequest", "HTTPProvider", "RetryPolicy", "decode_error_body"]

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
    """An error body as JSON, or (proxies, gateways) its first 500 characters as the message."""
    try:
        return json.loads(body) if body else {}
    except ValueError:
        return {"error": {"message": body[:500].decode("utf-8", "replace")}}


DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=10.0)
# httpcore writes a request's headers and body in separate sends; with Nagle's algorithm on, the body
# can wait for the peer's delayed ACK of the headers (~40 ms). urllib3 and curl disable Nagle too.
SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
# Transport failures that happen before a request's first byte is sent: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; a server's `Retry-After` wins, up to `max_delay`."""

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.25

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        base = min(self.initial_delay * (2**attempt), self.max_delay)
        return float(base * (1 + self.jitter * random.random()))


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _same_origin(url: str, base_url: str) -> bool:
    a, b = httpx.URL(url), httpx.URL(base_url)
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


class HTTPProvider:
    """Base of the provider clients. Thread-safe; safe to share between chat model instances."""

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
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._timeout = (
            timeout
            if isinstance(timeout, httpx.Timeout)
            else (DEFAULT_TIMEOUT if timeout is None else httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        )
        self.retry = retry_policy or RetryPolicy(max_retries=max_retries)
        self._user_client = http_client
        self._user_async_client = async_http_client
        self._client: httpx.Client | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._headers.update(self.auth_headers(api_key))
        if default_headers:
            self._headers.update(default_headers)

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

    def _sync_client(self) -> httpx.Client:
        if self._user_client is not None:
            return self._user_client
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(
                        timeout=self._timeout, transport=httpx.HTTPTransport(socket_options=SOCKET_OPTIONS)
                    )
                    # A chat model has no close(): release the pool's sockets when the provider goes.
                    weakref.finalize(self, self._client.close)
        return self._client

    def _async_client(self) -> httpx.AsyncClient:
        if self._user_async_client is not None:
            return self._user_async_client
        # An AsyncClient's pool is bound to the loop that opened its connections: keep one per loop.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(
                timeout=self._timeout, transport=httpx.AsyncHTTPTransport(socket_options=SOCKET_OPTIONS)
            )
            self._async_clients[loop] = client
        return client

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
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        for client in list(self._async_clients.values()):
            await client.aclose()
        self._async_clients.clear()

    # -- requests ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}/{path.lstrip('/')}"

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

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        *,
        idempotent: bool = True,
    ) -> Any:
        """Send a request and return the decoded JSON body, retrying what is worth retrying.

        With ``idempotent=False`` (creating a resource) only failures that certainly happened before
        the request was sent, and 429s, are retried; anything ambiguous raises at once, a connection
        error with ``maybe_sent=True``.
        """
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                resp = client.request(method, self._url(path), content=body, headers=self._headers, params=params)
            except httpx.TransportError as exc:
                delay = self._transport_retry_delay(exc, attempt, idempotent)
                if delay is None:
                    raise self._connection_error(exc, attempts=attempt + 1) from exc
            else:
                if resp.status_code < 400:
                    return resp.json() if resp.content else {}
                error = self.error_from_response(resp.status_code, resp.headers, resp.content)
                delay = self._status_retry_delay(error, resp.headers, attempt, idempotent)
                if delay is None:
                    raise error
            time.sleep(delay)
            attempt += 1

    async def arequest(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        *,
        idempotent: bool = True,
    ) -> Any:
        client = self._async_client()
        attempt = 0
        while True:
            try:
                resp = await client.request(method, self._url(path), content=body, headers=self._headers, params=params)
            except httpx.TransportError as exc:
                delay = self._transport_retry_delay(exc, attempt, idempotent)
                if delay is None:
                    raise self._connection_error(exc, attempts=attempt + 1) from exc
            else:
                if resp.status_code < 400:
                    return resp.json() if resp.content else {}
                error = self.error_from_response(resp.status_code, resp.headers, resp.content)
                delay = self._status_retry_delay(error, resp.headers, attempt, idempotent)
                if delay is None:
                    raise error
            await asyncio.sleep(delay)
            attempt += 1

    def stream_events(self, path: str, body: bytes, params: Mapping[str, str] | None = None) -> Iterator[str]:
        """Yield the `data` of each SSE event. Retries happen only before the first event."""
        client = self._sync_client()
        attempt = 0
        while True:
            started = False
            try:
                with client.stream("POST", self._url(path), content=body, headers=self._headers, params=params) as resp:
                    if resp.status_code < 400:
                        for sse in EventSource(resp).iter_sse():
                            started = True
                            yield sse.data
                        return
                    resp.read()
                    error = self.error_from_response(resp.status_code, resp.headers, resp.content)
                    delay = self._retry_delay(error, resp.headers, attempt)
                    if delay is None:
                        raise error
            except httpx.TransportError as exc:
                delay = None if started else self._retry_delay(None, None, attempt)
                if delay is None:
                    raise self._connection_error(exc, interrupted=started, attempts=attempt + 1) from exc
            time.sleep(delay)
            attempt += 1

    async def astream_events(
        self, path: str, body: bytes, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[str]:
        client = self._async_client()
        attempt = 0
        while True:
            started = False
            try:
                async with client.stream(
                    "POST", self._url(path), content=body, headers=self._headers, params=params
                ) as resp:
                    if resp.status_code < 400:
                        async for sse in EventSource(resp).aiter_sse():
                            started = True
                            yield sse.data
                        return
                    await resp.aread()
                    error = self.error_from_response(resp.status_code, resp.headers, resp.content)
                    delay = self._retry_delay(error, resp.headers, attempt)
                    if delay is None:
                        raise error
            except httpx.TransportError as exc:
                delay = None if started else self._retry_delay(None, None, attempt)
                if delay is None:
                    raise self._connection_error(exc, interrupted=started, attempts=attempt + 1) from exc
            await asyncio.sleep(delay)
            attempt += 1
