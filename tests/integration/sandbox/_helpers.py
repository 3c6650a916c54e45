"""Small helpers shared by the sandbox integration tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import requests

API_KEY_HEADER = {"X-CT-Authorization": "CTApiKey sandbox-api-key"}


def member(email: str, **fields: Any) -> dict[str, Any]:
    """A valid US member body; ``fields`` override or add attributes."""
    body: dict[str, Any] = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email_address": email,
        "postal_code": "10001",
    }
    body.update(fields)
    return body


def sign(
    method: str,
    request_uri: str,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    private_key: str = "sandbox-private",
    public_key: str = "sandbox-public",
    timestamp: str | None = None,
) -> dict[str, str]:
    """HMAC headers computed by hand from the contract, for wire-level checks of the sandbox's verifier.

    Deliberately neither the client's signer nor the sandbox's verifier: a third, literal reading.
    """
    timestamp = timestamp if timestamp is not None else str(int(time.time()))
    md5 = hashlib.md5(body).hexdigest() if body else ""
    ctype = content_type if body else ""
    text = "\n".join([method, md5, ctype, timestamp, request_uri])
    hex_digest = hmac.new(private_key.encode(), text.encode(), hashlib.sha256).hexdigest()
    signature = base64.b64encode(hex_digest.encode()).decode()
    headers = {"X-CT-Authorization": f"CTApiV2Auth {public_key}:{signature}", "X-CT-Timestamp": timestamp}
    if body:
        headers["Content-Type"] = content_type
    return headers


def raw(sandbox: Any, method: str, uri: str, **kwargs: Any) -> requests.Response:
    """A request sent exactly as given (no retries, no auth unless passed in headers)."""
    return requests.request(method, sandbox.base_url + uri, timeout=10, **kwargs)
