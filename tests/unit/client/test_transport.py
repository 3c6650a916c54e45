"""The transport against a real HTTP/1.1 server on loopback (the standard library's), plain and TLS.

What is checked is what the client's exactly-once rules rest on: a connection is reused, a connection
the server closed while idle is replaced before a request goes out (so it never makes a request
ambiguous), and every failure says whether the request may have been applied.
"""

from __future__ import annotations

import datetime
import gzip
import http.server
import ipaddress
import json
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_crowdtwist.client import ClientConfig, CrowdTwistClient
from airflow_provider_crowdtwist.client.errors import CrowdTwistConnectionError
from airflow_provider_crowdtwist.client.transport import Transport, TransportFailed

BODY = json.dumps({"ok": True}).encode()
LOOPBACK = "127.0.0.1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def _answer(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = self.rfile.read(length)
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers), received))
        if self.path == "/gzip":
            self._answer(gzip.compress(BODY), {"Content-Encoding": "gzip"})
        elif self.path == "/deflate":
            self._answer(zlib.compress(BODY), {"Content-Encoding": "deflate"})
        elif self.path == "/close-after":  # answers, then closes while the client thinks it is alive
            self._answer(BODY)
            self.close_connection = True
        elif self.path == "/connection-close":
            self._answer(BODY, {"Connection": "close"})
            self.close_connection = True
        elif self.path == "/drop":  # read the request, never answer
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(1.0)
            self._answer(BODY)
        else:
            self._answer(BODY)

    do_GET = do_PUT
    do_POST = do_PUT


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []


def _serve(server: _Server) -> Iterator[_Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serve(_Server())


def _transport(url: str, **kwargs: Any) -> Transport:
    settings: dict[str, Any] = {"verify": True, "connect_timeout": 2.0, "read_timeout": 5.0, "max_idle": 4}
    return Transport(url, **(settings | kwargs))


def _url(server: _Server, path: str, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.server_address[1]}{path}"


def test_requests_reuse_one_connection_and_send_the_headers_and_body_as_given(server: _Server) -> None:
    transport = _transport(_url(server, ""))
    sent_body = '{"x":"é"}'.encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(sent_body)), "X-Test": "a"}
    for _ in range(5):
        answer = transport.send("PUT", _url(server, "/v2/users/a%40b.com?id_type=email"), headers, sent_body)
        assert answer.status_code == 200 and json.loads(answer.content) == {"ok": True}
        assert answer.headers.get("content-type") == "application/json"  # case-insensitive
    transport.close()
    assert server.connections == 1
    path, sent, body = server.requests[-1]
    assert path == "/v2/users/a%40b.com?id_type=email"
    assert sent["X-Test"] == "a" and body == sent_body


@pytest.mark.parametrize("path", ["/gzip", "/deflate"])
def test_compressed_answers_are_decoded(server: _Server, path: str) -> None:
    answer = _transport(_url(server, "")).send("GET", _url(server, path), {}, None)
    assert answer.content == BODY


def test_a_connection_the_server_closed_while_idle_is_replaced_before_sending(server: _Server) -> None:
    transport = _transport(_url(server, ""))
    assert transport.send("PUT", _url(server, "/close-after"), {}, b"").status_code == 200
    time.sleep(0.2)  # the server's close reaches the idle socket
    assert transport.send("PUT", _url(server, "/ok"), {}, b"").status_code == 200  # no error at all
    assert server.connections == 2


def test_connection_close_is_honoured(server: _Server) -> None:
    transport = _transport(_url(server, ""))
    for _ in range(3):
        assert transport.send("GET", _url(server, "/connection-close"), {}, None).status_code == 200
    assert server.connections == 3


def _kind(failed: TransportFailed) -> tuple[bool, bool, str]:
    return failed.failure.ambiguous, failed.failure.retryable, failed.failure.problem


def _failure(transport: Transport, url: str) -> TransportFailed:
    with pytest.raises(TransportFailed) as info:
        transport.send("PUT", url, {"Content-Length": "2"}, b"{}")
    assert info.value.__context__ is None and info.value.__cause__ is None
    return info.value


def test_no_answer_after_the_request_went_out_is_ambiguous(server: _Server) -> None:
    failed = _failure(_transport(_url(server, "")), _url(server, "/drop"))
    assert _kind(failed) == (
        True,
        True,
        "closed",
    )


def test_read_timeout_is_ambiguous(server: _Server) -> None:
    failed = _failure(_transport(_url(server, ""), read_timeout=0.2), _url(server, "/slow"))
    assert (failed.failure.ambiguous, failed.failure.problem) == (True, "timeout")
    assert failed.failure.description == "read timeout"


def test_refused_connect_is_not_ambiguous() -> None:
    probe = _Server()
    port = probe.server_address[1]
    probe.server_close()
    url = f"http://127.0.0.1:{port}"
    failed = _failure(_transport(url), url + "/v2/activities")
    assert _kind(failed) == (
        False,
        True,
        "refused",
    )


def test_a_url_on_another_origin_is_refused(server: _Server) -> None:
    with pytest.raises(ValueError, match="origin"):
        _transport(_url(server, "")).send("GET", "http://example.invalid/v2/activities", {}, None)


# ---- TLS ----------------------------------------------------------------------------------------


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[_Server, Path]]:
    cert, key = _self_signed(tmp_path)
    server = _Server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in _serve(server):
        yield running, cert


def test_tls_verifies_against_the_given_bundle_and_reuses_the_connection(
    tls_server: tuple[_Server, Path],
) -> None:
    server, cert = tls_server
    transport = _transport(_url(server, "", "https"), verify=str(cert))
    for _ in range(3):
        answer = transport.send("GET", _url(server, "/ok", "https"), {}, None)
        assert json.loads(answer.content) == {"ok": True}
    assert server.connections == 1


def test_tls_with_an_unknown_certificate_fails_before_sending(tls_server: tuple[_Server, Path]) -> None:
    server, _ = tls_server
    failed = _failure(_transport(_url(server, "", "https"), verify=True), _url(server, "/ok", "https"))
    assert _kind(failed) == (
        False,
        False,
        "tls",
    )
    assert not server.requests


def test_tls_verify_false_checks_nothing(tls_server: tuple[_Server, Path]) -> None:
    server, _ = tls_server
    transport = _transport(_url(server, "", "https"), verify=False)
    assert transport.send("GET", _url(server, "/ok", "https"), {}, None).status_code == 200


# ---- when the client uses it ------------------------------------------------------------------


def _client(url: str) -> CrowdTwistClient:
    return CrowdTwistClient(ClientConfig(base_url=url, api_key="transport-test-key", max_retries=0))


def test_the_client_sends_over_it_and_reuses_the_connection(server: _Server) -> None:
    with _client(_url(server, "")) as client:
        assert isinstance(client._transport, Transport)
        assert client.list_activities() == []  # the body {"ok": true} is no list of activities
        with pytest.raises(CrowdTwistConnectionError):
            client.request("GET", "/drop")
    assert server.connections == 1 and [p for p, _, _ in server.requests] == ["/v2/activities", "/drop"]


def test_request_returns_a_requests_response(server: _Server) -> None:
    with _client(_url(server, "")) as client:
        response = client.request("GET", "/gzip")
    assert isinstance(response, requests.Response)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert response.headers["content-encoding"] == "gzip"


def test_a_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``requests`` resolves them: ``HTTP_PROXY``, and ``NO_PROXY`` with a CIDR range."""
    proxy = _Server()  # answers every request itself: a forwarding proxy sees the whole URL
    for running in _serve(proxy):
        monkeypatch.setenv("HTTP_PROXY", _url(running, ""))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        through = _transport(_url(server, ""))
        assert through.proxy == _url(running, "")
        assert through.send("GET", _url(server, "/ok"), {}, None).status_code == 200
        assert [path for path, _, _ in running.requests] == [_url(server, "/ok")]
        monkeypatch.setenv("no_proxy", "10.0.0.0/8,127.0.0.0/8")
        direct = _transport(_url(server, ""))
        assert direct.proxy is None
        assert direct.send("GET", _url(server, "/ok"), {}, None).status_code == 200
        assert [path for path, _, _ in server.requests] == ["/ok"] and len(running.requests) == 1


def test_a_request_http_client_refuses_to_build_is_not_sent_and_not_ambiguous(server: _Server) -> None:
    transport = _transport(_url(server, ""))
    with pytest.raises(TransportFailed) as info:
        transport.send("PUT", _url(server, "/ok"), {"X-Key": "secret\r\nX-Injected: 1"}, b"")
    assert _kind(info.value) == (False, False, "other")
    assert "secret" not in str(info.value) and info.value.__context__ is None
    assert transport.send("PUT", _url(server, "/ok"), {}, b"").status_code == 200  # a fresh connection
    assert [path for path, _, _ in server.requests] == ["/ok"]
