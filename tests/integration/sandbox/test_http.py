"""Wire-level behaviour of the small HTTP/1.1 server: keep-alive, framing, and clear refusals."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.integration.sandbox._helpers import API_KEY_HEADER, raw

pytestmark = pytest.mark.integration


def _exchange(sandbox, payload: bytes) -> bytes:
    port = sandbox.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def test_keep_alive_reuses_one_connection(sandbox):
    with requests.Session() as session:
        for _ in range(5):
            assert session.get(sandbox.base_url + "/v2/activities", headers=API_KEY_HEADER, timeout=5).ok
    port = sandbox.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = (
            b"GET /v2/activities HTTP/1.1\r\nHost: x\r\nX-CT-Authorization: CTApiKey sandbox-api-key\r\n\r\n"
        )
        sock.sendall(request + request)  # two back to back: both answered in order
        data = b""
        while data.count(b"HTTP/1.1 200 OK") < 2:
            data += sock.recv(65536)
    assert sandbox.admin.stats()["total"] == 7


def test_connection_close_and_http_1_0_close_after_the_answer(sandbox):
    answer = _exchange(
        sandbox, b"GET /v2/activities HTTP/1.0\r\nX-CT-Authorization: CTApiKey sandbox-api-key\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in answer
    answer = _exchange(sandbox, b"GET /v2/activities HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 401")


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"POST /v2/users HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"501"),
        (b"POST /v2/users HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nbroken header\r\n\r\n", b"400"),
    ],
)
def test_malformed_requests_get_a_clear_answer(sandbox, payload, status):
    answer = _exchange(sandbox, payload)
    assert answer.split(b" ")[1] == status
    assert b'"error":"input_error"' in answer


def test_unknown_endpoint_is_page_not_found(sandbox):
    answer = raw(sandbox, "GET", "/v3/whatever", headers=API_KEY_HEADER)
    assert answer.status_code == 404
    assert answer.json()["error"] == "page_not_found"
    patch = raw(sandbox, "PATCH", "/v2/users/1", headers=API_KEY_HEADER)
    assert patch.status_code == 404


def _create_request(email: str, extra_headers: bytes = b"") -> tuple[bytes, bytes]:
    """The head and body of a raw ``POST /v2/users`` for ``email``."""
    body = b'{"first_name":"A","last_name":"B","email_address":"%s","postal_code":"12345"}' % email.encode()
    head = (
        b"POST /v2/users HTTP/1.1\r\nContent-Type: application/json\r\n"
        + extra_headers
        + b"X-CT-Authorization: "
        b"CTApiKey sandbox-api-key\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head, body


def test_body_split_across_packets_is_reassembled(sandbox):
    head, body = _create_request("split@example.com")
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (head[:10], head[10:], body[:7], body[7:]):
            sock.sendall(piece)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert sandbox.admin.member("split@example.com") is not None


def test_expect_100_continue_is_honoured(sandbox):
    head, body = _create_request("curl@example.com", b"Expect: 100-continue\r\n")
    with socket.create_connection(("127.0.0.1", sandbox.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")
    assert sandbox.admin.member("curl@example.com") is not None
