"""The transport against answers no one should trust, from tiny real servers on loopback.

Interim answers, odd codings, a gzip bomb, a server trickling its headers or body, an answer over the
size cap, a server that wants a client certificate. Each failure must say whether the request may
have been applied (it may: the request was written) and must come within the attempt's deadline.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_crowdtwist.client import ClientConfig, CrowdTwistClient, CrowdTwistConnectionError
from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError
from airflow_provider_crowdtwist.client.transport import Transport, TransportFailed

from .test_transport import _self_signed

BODY = b'{"awarded":true}'
Handler = Callable[[socket.socket], None]


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(v)
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
            if k.strip().lower() == b"content-length"
        ),
        0,
    )
    while len(rest) < length:
        rest += conn.recv(65536)
    return head


class _Tiny:
    """A listening socket on loopback; each connection handled by ``handler`` in a thread of its own."""

    def __init__(self, handler: Handler, wrap: Callable[[socket.socket], Any] | None = None) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.handler = handler
        self.wrap = wrap
        self.connections = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.handler(self.wrap(conn) if self.wrap else conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tiny() -> Iterator[Callable[..., _Tiny]]:
    made: list[_Tiny] = []

    def make(handler: Handler, wrap: Any = None) -> _Tiny:
        made.append(_Tiny(handler, wrap))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _transport(url: str, **kwargs: Any) -> Transport:
    settings: dict[str, Any] = {"verify": True, "connect_timeout": 2.0, "read_timeout": 5.0, "max_idle": 4}
    return Transport(url, **(settings | kwargs))


def _answer(body: bytes, headers: str = "", status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def _fails(transport: Transport, url: str) -> TransportFailed:
    with pytest.raises(TransportFailed) as info:
        transport.send("POST", url + "/v2/users/a/activities", {"Content-Length": "2"}, b"{}")
    assert info.value.__context__ is None
    return info.value


def test_interim_answers_are_skipped_and_the_connection_kept(tiny: Callable[..., _Tiny]) -> None:
    def handler(conn: socket.socket) -> None:
        while _read_request(conn):
            conn.sendall(
                b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 102 Processing\r\n\r\n" + _answer(BODY)
            )

    server = tiny(handler)
    transport = _transport(server.url)
    for _ in range(3):
        answer = transport.send("POST", server.url + "/x", {"Content-Length": "0"}, b"")
        assert (answer.status_code, answer.content) == (200, BODY)
    assert server.connections == 1


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("x-gzip", gzip.compress(BODY)),
        ("gzip", gzip.compress(BODY[:5]) + gzip.compress(BODY[5:])),  # two members
        ("deflate", zlib.compress(BODY)),
        ("deflate", zlib.compress(BODY)[2:-4]),  # raw deflate, as some servers send it
        ("identity", BODY),
    ],
)
def test_codings_are_decoded(tiny: Callable[..., _Tiny], coding: str, encoded: bytes) -> None:
    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(_answer(encoded, f"Content-Encoding: {coding}\r\n"))

    server = tiny(handler)
    assert _transport(server.url).send("GET", server.url + "/", {}, None).content == BODY


def test_an_answer_over_the_cap_fails_as_ambiguous(tiny: Callable[..., _Tiny]) -> None:
    def announced(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(_answer(b"x" * 5000))

    def chunked(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            conn.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
        conn.sendall(b"0\r\n\r\n")

    for handler in (announced, chunked):
        server = tiny(handler)
        failed = _fails(_transport(server.url, max_answer_bytes=4096), server.url)
        assert (failed.failure.problem, failed.failure.ambiguous) == ("too_large", True)


def _bomb(size: int = 1 << 30) -> bytes:
    """``size`` zero bytes, gzip-compressed, built a slice at a time (never ``size`` bytes at once)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts) + packer.flush()


CHILD = """
import json, resource, sys
from airflow_provider_crowdtwist.client.transport import Transport, TransportFailed
url = sys.argv[1]
transport = Transport(url, verify=True, connect_timeout=5, read_timeout=30, max_idle=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    transport.send("GET", url + "/bomb", {}, None)
    problem = None
except TransportFailed as exc:
    problem = exc.failure.problem
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"problem": problem, "extra_kb": after - before}))
"""


@pytest.mark.timeout(120)
def test_a_1_gib_gzip_bomb_fails_without_100_mb_more_memory(tiny: Callable[..., _Tiny]) -> None:
    bomb = _bomb()

    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(_answer(bomb, "Content-Encoding: gzip\r\nContent-Type: application/json\r\n"))

    server = tiny(handler)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, server.url], capture_output=True, text=True, timeout=100, env=env
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["problem"] == "too_large"
    assert result["extra_kb"] < 100 * 1024, result


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_server_fails_the_attempt_within_its_deadline(
    tiny: Callable[..., _Tiny], where: str
) -> None:
    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        if where == "body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(600):  # one byte every 50 ms, each well inside the read timeout
            conn.sendall(b"X-Slow: a\r\n"[:1] if where == "headers" else b"x")
            time.sleep(0.05)

    server = tiny(handler)
    transport = _transport(server.url, read_timeout=0.5, deadline=1.0)
    started = time.monotonic()
    failed = _fails(transport, server.url)
    assert time.monotonic() - started < 1.6
    assert (failed.failure.problem, failed.failure.ambiguous) == ("deadline", True)


def test_through_the_client_the_cap_and_deadline_are_settings_and_ambiguous(
    tiny: Callable[..., _Tiny],
) -> None:
    def handler(conn: socket.socket) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        time.sleep(3)

    server = tiny(handler)
    config = ClientConfig(
        base_url=server.url, api_key="limits-test-key", max_retries=0, read_timeout=5.0, attempt_deadline=0.5
    )
    with CrowdTwistClient(config) as client, pytest.raises(CrowdTwistConnectionError) as info:
        client.credit_activity("a@b.com", "purchase")
    assert info.value.ambiguous and info.value.problem == "deadline"
    for bad in ({"max_answer_bytes": 10}, {"attempt_deadline": 0}, {"client_cert": "/nonexistent.pem"}):
        with pytest.raises(CrowdTwistConfigError):
            ClientConfig(base_url=server.url, api_key="k", **bad).validate()  # type: ignore[arg-type]


def test_a_client_certificate_is_presented(tiny: Callable[..., _Tiny], tmp_path: Path) -> None:
    server_cert, server_key = _self_signed(tmp_path)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    client_cert, client_key = _self_signed(client_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_cert, server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_cert)
    seen: list[Any] = []

    def handler(conn: socket.socket) -> None:
        seen.append(conn.getpeercert())  # type: ignore[attr-defined]
        _read_request(conn)
        conn.sendall(_answer(BODY))

    server = tiny(handler, wrap=lambda conn: context.wrap_socket(conn, server_side=True))
    url = server.url.replace("http://", "https://")
    with_cert = _transport(url, verify=str(server_cert), cert=str(client_cert), key=str(client_key))
    assert with_cert.send("GET", url + "/", {}, None).content == BODY
    assert seen and seen[0]
    without = _transport(url, verify=str(server_cert))
    with pytest.raises(TransportFailed):
        without.send("GET", url + "/", {}, None)
