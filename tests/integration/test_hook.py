"""CrowdTwistHook against the sandbox over real HTTP: test_connection tells every failure apart.

Connections come from ``AIRFLOW_CONN_*`` JSON, read by Airflow itself. Servers that misbehave in ways
the sandbox does not (HTML pages, silence) are tiny stdlib servers on loopback.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

pytestmark = pytest.mark.integration


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, host: str, password: str, **extra: Any) -> None:
    login = extra.pop("login", None)
    payload = {"conn_type": "crowdtwist", "host": host, "password": password, "login": login, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))


class _HtmlHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>Welcome to our marketing site</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def html_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections (kernel backlog) but never answers: a read timeout."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_success_with_api_key(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_ok", sandbox.base_url, sandbox.api_key, auth_type="api_key")
    ok, message = CrowdTwistHook("ct_ok").test_connection()
    active = [a for a in sandbox.settings.activities if a.is_active]
    assert ok, message
    assert message == f"Connected: {len(active)} active activities"


def test_success_with_hmac(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    set_conn(
        monkeypatch,
        "ct_hmac",
        sandbox.base_url,
        sandbox.hmac_private_key,
        auth_type="hmac",
        login=sandbox.hmac_public_key,
    )
    ok, message = CrowdTwistHook("ct_hmac").test_connection()
    assert ok, message
    assert message.startswith("Connected: ")


def test_bad_api_key(monkeypatch: pytest.MonkeyPatch, sandbox: Any, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-key/4f9d+2b7c1a"  # in the query string this travels URL-encoded
    set_conn(monkeypatch, "ct_badkey", sandbox.base_url, wrong, auth_type="api_key", api_key_in="query")
    with caplog.at_level(logging.DEBUG):
        ok, message = CrowdTwistHook("ct_badkey").test_connection()
    assert not ok
    assert "Authentication failed (HTTP 401)" in message
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for spelling in (wrong, quote(wrong, safe=""), quote_plus(wrong)):
        assert spelling not in message
        assert spelling not in logged


def test_wrong_hmac_timestamp_unit_fails_and_names_the_unit_that_works(
    monkeypatch: pytest.MonkeyPatch, sandbox: Any
) -> None:
    set_conn(
        monkeypatch,
        "ct_ms",
        sandbox.base_url,
        sandbox.hmac_private_key,
        auth_type="hmac",
        hmac_timestamp_unit="ms",
        login=sandbox.hmac_public_key,
    )
    ok, message = CrowdTwistHook("ct_ms").test_connection()
    assert not ok  # as configured it does not work; the message says what would
    assert "refused the HMAC signature with timestamps in milliseconds" in message
    assert "set the connection extra 'hmac_timestamp_unit' to 's'" in message
    assert sandbox.hmac_private_key not in message


def test_connection_refused(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_refused", f"http://127.0.0.1:{closed_port()}", sandbox.api_key)
    ok, message = CrowdTwistHook("ct_refused").test_connection()
    assert not ok
    assert "Cannot reach" in message and "connection refused" in message


def test_unknown_host_name(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_dns", "https://crowdtwist-nowhere.invalid", sandbox.api_key)
    ok, message = CrowdTwistHook("ct_dns").test_connection()
    assert not ok
    assert "Cannot reach" in message and "DNS" in message


def test_timeout(monkeypatch: pytest.MonkeyPatch, silent_server: str, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_slow", silent_server, sandbox.api_key, timeout="0.3")
    ok, message = CrowdTwistHook("ct_slow").test_connection()
    assert not ok
    assert "Cannot reach" in message and "timed out" in message


def test_wrong_base_url_404(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_404", sandbox.base_url + "/api/crowdtwist", sandbox.api_key)
    ok, message = CrowdTwistHook("ct_404").test_connection()
    assert not ok
    assert "Wrong base URL" in message and "404" in message


def test_wrong_base_url_html(monkeypatch: pytest.MonkeyPatch, html_server: str, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_html", html_server, sandbox.api_key)
    ok, message = CrowdTwistHook("ct_html").test_connection()
    assert not ok
    assert "Wrong base URL" in message and "not the CrowdTwist API" in message


def test_server_down_is_reported_without_retries(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    sandbox.admin.set_faults(error_rate=1.0, error_status=503)
    set_conn(monkeypatch, "ct_down", sandbox.base_url, sandbox.api_key)
    ok, message = CrowdTwistHook("ct_down").test_connection()
    assert not ok
    assert "503" in message
    # the UI's button must answer at once: one request, no backoff
    assert sandbox.admin.stats()["by_route"] == {"GET /v2/activities": 1}


def test_delegating_methods_reach_the_api(monkeypatch: pytest.MonkeyPatch, sandbox: Any) -> None:
    set_conn(monkeypatch, "ct_calls", sandbox.base_url, sandbox.api_key)
    with CrowdTwistHook("ct_calls") as hook:
        ids = {a.id for a in hook.list_activities()}
        assert "purchase" in ids
        fields = {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email_address": "ada@example.com",
            "postal_code": "10001",
        }
        outcome, _user = hook.upsert_user("ada@example.com", fields)
        assert outcome == "created"
        assert hook.get_user("ada@example.com")["email_address"] == "ada@example.com"
        hook.update_user("ada@example.com", {"first_name": "Augusta"})
        member = hook.get_user("ada@example.com")
        assert member["first_name"] == "Augusta"
        # Without PII (O:UserProfile): by CrowdTwist id only, and no name or email comes back.
        bare = hook.get_user(str(member["id"]), id_type="id", pii=False)
        assert bare["id"] == member["id"] and "first_name" not in bare and "email_address" not in bare
        answer = hook.credit_activity("ada@example.com", "purchase", num_points=7)
        assert answer.get("awarded") is True
    credits = sandbox.admin.credits()
    assert [(c["activity_id"], c.get("num_points")) for c in credits] == [("purchase", 7)]
