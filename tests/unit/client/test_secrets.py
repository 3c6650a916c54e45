"""No secret in logs (urllib3's DEBUG lines included), exception texts, reprs or exception chains.

These tests talk real HTTP to a tiny loopback server, so that ``requests`` and ``urllib3`` produce
their real exception texts and DEBUG log lines (which embed the URL, hence a query-string key).
"""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_crowdtwist.client import ClientConfig, CrowdTwistClient, CrowdTwistError

from .conftest import API_KEY, PRIVATE_KEY, PUBLIC_KEY

PASSWORD = "hunter2-Pa55word!"


class _Handler(BaseHTTPRequestHandler):
    """Answers like a careless server: errors echo the request line, headers and body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _echo(self, status: int) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        echo = f"{body} {self.command} {self.path} {dict(self.headers)}"
        payload = json.dumps({"error": "input_error", "message": echo}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self) -> None:
        if self.path.startswith("/v2/activities"):
            payload = b'{"activities": [{"id": "purchase"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        elif self.path.startswith("/v2/users/reset"):
            self.close_connection = True  # hang up without an answer
        elif self.path.startswith("/v2/users/slow"):
            time.sleep(0.6)
            self._echo(200)
        elif self.path.startswith("/v2/users/fail"):
            self._echo(500)
        else:
            self._echo(400)

    do_GET = do_POST = do_PUT = _route


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on the slow route is expected


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.block_on_close = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


AUTH_MODES = {
    "query": {"api_key": API_KEY, "api_key_in": "query"},
    "header": {"api_key": API_KEY, "api_key_in": "header"},
    "hmac": {"auth_type": "hmac", "hmac_public_key": PUBLIC_KEY, "hmac_private_key": PRIVATE_KEY},
}
SECRETS = (API_KEY, PRIVATE_KEY, PASSWORD)


def _client(base_url: str, mode: str) -> CrowdTwistClient:
    config = ClientConfig(
        base_url=base_url,
        read_timeout=0.2,
        connect_timeout=0.5,
        max_retries=1,
        backoff_base=0.001,
        backoff_max=0.002,
        **AUTH_MODES[mode],
    )
    return CrowdTwistClient(config)


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def _assert_error_clean(error: BaseException) -> None:
    assert isinstance(error, CrowdTwistError)
    _assert_clean(str(error))
    _assert_clean(repr(error))
    _assert_clean("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    assert error.__cause__ is None and error.__context__ is None
    _assert_clean(repr(pickle.loads(pickle.dumps(error))))
    _assert_clean(repr(error.__dict__))


@pytest.mark.parametrize("mode", sorted(AUTH_MODES))
def test_no_secret_anywhere(server_url: str, mode: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    errors: list[BaseException] = []
    with _client(server_url, mode) as client:
        assert [a.id for a in client.list_activities()] == ["purchase"]
        calls = [
            lambda: client.create_user({"first_name": "A", "password": PASSWORD}),  # 400 echoing the body
            lambda: client.update_user("fail", {"password": PASSWORD}),  # 500 echoing, retried
            lambda: client.get_user("reset"),  # connection dropped
            lambda: client.credit_activity("slow", "purchase"),  # read timeout
        ]
        for call in calls:
            with pytest.raises(CrowdTwistError) as info:
                call()
            errors.append(info.value)
        _assert_clean(repr(client))
        _assert_clean(repr(client.config))
    with _client(_closed_port_url(), mode) as client, pytest.raises(CrowdTwistError) as info:
        client.list_activities()
    errors.append(info.value)

    for error in errors:
        _assert_error_clean(error)
    assert [type(e).__name__ for e in errors] == [
        "CrowdTwistValidationError",
        "CrowdTwistServerError",
        "CrowdTwistConnectionError",
        "CrowdTwistConnectionError",
        "CrowdTwistConnectionError",
    ]
    assert [e.ambiguous for e in errors] == [False, True, True, True, False]
    # The errors still say what happened, with the secrets masked.
    assert "POST /v2/users" in str(errors[0]) and '"password":"***"' in errors[0].message

    _assert_clean(caplog.text)
    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert "CrowdTwist GET /v2/activities -> 200" in caplog.text
    assert any("/v2/activities" in line for line in urllib3_lines), "urllib3 DEBUG lines were not captured"
    if mode == "query":
        assert any("api_key=***" in line for line in urllib3_lines)


@pytest.mark.parametrize(
    ("password", "minimum", "masked"),
    [
        ("c", 5, False),  # Airflow 3's default: shorter than 5 is not masked
        ("abcd", 5, False),
        ("abcde", 5, True),
        ("c", 1, True),  # min_length_masked_secret = 1: everything is masked again
        ("c", 0, True),
    ],
)
def test_member_passwords_follow_airflows_minimum_length(
    server_url: str, password: str, minimum: int, masked: bool
) -> None:
    """A short member password masked everywhere would mangle the message ("chec*** the host")."""
    config = ClientConfig(
        base_url=server_url, api_key=API_KEY, max_retries=0, min_length_masked_secret=minimum
    )
    with CrowdTwistClient(config) as client, pytest.raises(CrowdTwistError) as info:
        client.create_user({"first_name": "check the host", "password": password})
    message = info.value.message
    assert ('"password":"***"' in message) is masked
    assert (f'"password":"{password}"' in message) is not masked
    # unmasked, the message is whole; masked, a 1-character password takes its letter everywhere
    assert ('"first_name":"check the host"' in message) is (not masked or len(password) > 1)
    assert API_KEY not in message  # the connection's key is masked whatever its length


def test_the_minimum_length_is_a_checked_setting() -> None:
    with pytest.raises(Exception, match="min_length_masked_secret"):
        ClientConfig(
            base_url="https://api.example.com", api_key=API_KEY, min_length_masked_secret=-1
        ).validate()
    assert ClientConfig(base_url="https://api.example.com").min_length_masked_secret == 5
