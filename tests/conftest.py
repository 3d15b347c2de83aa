"""Test wiring: vcrpy cassettes that hold no secrets and replay host-agnostically.

Cassettes live in tests/cassettes/ as readable YAML. Requests match on method, path and the exact
body (our request bodies are canonical, so equal requests are equal bytes). When cassettes are
recorded against the emulator (`python -m tests.record_cassettes`), loopback URLs are rewritten to
the provider's real host so the cassettes replay against the default base URL.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from .wire import Cassette

REAL_HOSTS = {"/api/paas/v4": "open.bigmodel.cn", "/v1beta": "generativelanguage.googleapis.com"}
_KEEP_RESPONSE_HEADERS = {"content-type"}
_SECRET_REQUEST_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")


def _real_url(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return uri
    for prefix, host in REAL_HOSTS.items():
        if parts.path.startswith(prefix):
            return urlunsplit(("https", host, parts.path, parts.query, ""))
    return uri


def _scrub_request(request: Any) -> Any:
    request.uri = _real_url(request.uri)
    if "host" in request.headers:
        request.headers["host"] = urlsplit(request.uri).netloc
    for name in list(request.headers):
        if name.lower() in _SECRET_REQUEST_HEADERS:
            request.headers[name] = "REDACTED"
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    response["headers"] = {k: v for k, v in response["headers"].items() if k.lower() in _KEEP_RESPONSE_HEADERS}
    return response


_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A cache's display name embeds a fingerprint of the credential, which differs between recording
# and replay by design (caches are namespaced per key).
_CACHE_DISPLAY_NAME = re.compile(rb"cache-integrations:[0-9a-f]{40}")


def _body_without_uuids(r1: Any, r2: Any) -> None:
    """Exact body match, except random UUIDs (tests build few-shot tool calls with uuid4 ids) and
    the credential-dependent cache display names."""
    b1, b2 = (_CACHE_DISPLAY_NAME.sub(b"<cache>", _UUID.sub(b"<uuid>", r.body or b"")) for r in (r1, r2))
    assert b1 == b2, "request bodies differ"


def pytest_recording_configure(config: Any, vcr: Any) -> None:
    vcr.register_matcher("body_without_uuids", _body_without_uuids)


@pytest.fixture(scope="session")
def vcr_config() -> dict[str, Any]:
    return {
        "filter_headers": [(h, "REDACTED") for h in _SECRET_REQUEST_HEADERS],
        "filter_query_parameters": [("key", "REDACTED")],
        "before_record_request": _scrub_request,
        "before_record_response": _scrub_response,
        "match_on": ["method", "path", "query", "body_without_uuids"],
        "allow_playback_repeats": True,
        "decode_compressed_response": True,
    }


@pytest.fixture
def cassette(vcr: Any) -> Cassette:
    """The responses of this test's cassette (``@pytest.mark.vcr``), to compare reported usage with."""
    assert vcr is not None, "the cassette fixture needs @pytest.mark.vcr"
    return Cassette(vcr)


@pytest.fixture(scope="module")
def vcr_cassette_dir(request: pytest.FixtureRequest) -> str:
    return os.path.join(os.path.dirname(__file__), "cassettes", request.module.__name__.split(".")[-1])


@pytest.fixture(autouse=True)
def _private_registry_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chat models default to a SQLite registry in the user's cache dir: keep tests out of it."""
    monkeypatch.setenv("CACHE_INTEGRATIONS_HOME", str(tmp_path_factory.mktemp("registry-home")))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for this test session (`make test` installs it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: run `make test` (it installs it) or `apt-get install redis-server`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
