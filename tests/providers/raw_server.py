"""A tiny loopback HTTP/1.1 server whose answers are raw bytes the test writes itself.

For what the emulator cannot (and should not) do: drip a body one byte at a time, send a gzip bomb,
echo a secret in a header, answer with a malformed status line, record which TCP connection (client
port) each request came on. Connections are kept alive until the client closes them or the answer
function closes them (it returns False).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawRequest:
    peer_port: int
    head: bytes
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split(b"\r\n", 1)[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


Answer = Callable[[socket.socket, RawRequest], bool]
"""Writes the response to the socket; returns whether the connection may serve another request."""


@dataclass
class RawServer:
    answer: Answer
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RawRequest] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _read_request(conn: socket.socket, buffer: bytes) -> tuple[bytes, bytes, bytes] | None:
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return head, rest[:length], rest[length:]


@contextmanager
def raw_server(answer: Answer) -> Iterator[RawServer]:
    """Serve `answer` on a free loopback port for the duration of the block."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = RawServer(answer, port=listener.getsockname()[1])
    stop = threading.Event()
    threads: list[threading.Thread] = []
    conns: list[socket.socket] = []

    def serve(conn: socket.socket, peer_port: int) -> None:
        buffer = b""
        with conn, suppress(OSError):
            while not stop.is_set():
                parsed = _read_request(conn, buffer)
                if parsed is None:
                    return
                head, body, buffer = parsed
                request = RawRequest(peer_port, head, body)
                server.requests.append(request)
                if not answer(conn, request):
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, (_, peer_port) = listener.accept()
            except OSError:
                return
            conns.append(conn)
            thread = threading.Thread(target=serve, args=(conn, peer_port), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in conns:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        acceptor.join(timeout=5)
        for thread in threads:
            thread.join(timeout=5)


def response(status: int, body: bytes, headers: dict[str, str] | None = None, *, reason: str = "X") -> bytes:
    """A complete HTTP/1.1 response with a Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason}"]
    merged = {"content-type": "application/json", **(headers or {}), "content-length": str(len(body))}
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def canned(status: int, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    """An answer that sends the same response to every request and keeps the connection."""
    data = response(status, body, headers)

    def answer(conn: socket.socket, request: RawRequest) -> bool:
        conn.sendall(data)
        return True

    return answer
