"""Redactor and the urllib3 log filter."""

from __future__ import annotations

import logging

from airflow_provider_crowdtwist.client.redact import MASK, Redactor, SecretLogFilter

from .conftest import API_KEY, PRIVATE_KEY


def test_registered_secrets_and_their_url_forms_are_masked() -> None:
    redactor = Redactor([API_KEY, PRIVATE_KEY, None, ""])
    text = f"a {API_KEY} b {PRIVATE_KEY} c priv_Secret%2B%2F%3DKey-0042 d priv_Secret%2B%2F%3DKey-0042"
    out = redactor.redact(text)
    assert API_KEY not in out and PRIVATE_KEY not in out and "%2B%2F%3D" not in out
    assert out.count(MASK) == 4


def test_unknown_query_keys_and_auth_headers_are_masked() -> None:
    redactor = Redactor()
    out = redactor.redact(
        "GET /v2/x?id_type=email&api_key=abc123&y=1 "
        "'X-CT-Authorization': 'CTApiKey zzz999' CTApiV2Auth pub:c2ln"
    )
    assert "abc123" not in out and "zzz999" not in out and "c2ln" not in out
    assert "id_type=email" in out and "&y=1" in out


def test_extra_per_call_secrets_are_not_kept() -> None:
    redactor = Redactor()
    assert redactor.redact("pw hunter22", extra=["hunter22"]) == f"pw {MASK}"
    assert redactor.redact("pw hunter22") == "pw hunter22"


def test_log_filter_rewrites_message_and_args() -> None:
    record = logging.LogRecord(
        "urllib3.connectionpool",
        logging.DEBUG,
        __file__,
        1,
        '"%s %s"',
        ("GET", f"/a?api_key={API_KEY}"),
        None,
    )
    assert SecretLogFilter(Redactor([API_KEY])).filter(record) is True
    assert API_KEY not in record.getMessage() and "/a?api_key=***" in record.getMessage()
