"""Verifying a request's credentials exactly as the contract describes CrowdTwist doing it.

The signature is computed here from the contract, never by importing the provider's signer: a test in
which the same function signs and verifies proves nothing. Every detail a client can get wrong is
checked: the one space in ``CTApiKey KEY``, the hex-then-base64 quirk, MD5 and Content-Type left empty
when there is no body, the request URI exactly as sent (percent-encoding included), the timestamp's unit
and its 15-minute window.

Failure messages say what was wrong but never echo a key or a signature back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from airflow_provider_crowdtwist.sandbox.errors import auth_error
from airflow_provider_crowdtwist.sandbox.settings import SandboxSettings

AUTH_HEADER = "x-ct-authorization"
TIMESTAMP_HEADER = "x-ct-timestamp"
API_KEY_SCHEME = "CTApiKey "
HMAC_SCHEME = "CTApiV2Auth "


def string_to_sign(method: str, body: bytes, content_type: str, timestamp: str, request_uri: str) -> str:
    """``METHOD\\nMD5\\nCONTENT_TYPE\\nTIMESTAMP\\nREQUEST_URI``; MD5 and type empty without a body."""
    if body:
        md5 = hashlib.md5(body).hexdigest()
    else:
        md5 = ""
        content_type = ""
    return f"{method}\n{md5}\n{content_type}\n{timestamp}\n{request_uri}"


def signature(private_key: str, text: str) -> str:
    """HMAC-SHA256 as a lowercase hex string, and that hex string base64-encoded (CrowdTwist's quirk)."""
    digest = hmac.new(private_key.encode(), text.encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode()).decode()


def verify(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    settings: SandboxSettings,
    now: float,
) -> str:
    """Return the auth mode that authenticated the request, or raise a 401 ``ApiError``.

    A request is judged by the credentials it carries: an HMAC header is verified as HMAC, an API key
    (header or ``api_key`` query parameter) as an API key.
    """
    header = headers.get(AUTH_HEADER)
    if header is not None and header.startswith(HMAC_SCHEME):
        if "hmac" not in settings.auth_modes:
            raise auth_error("HMAC authentication is not enabled for this client")
        _verify_hmac(method, target, headers, header[len(HMAC_SCHEME) :], body, settings, now)
        return "hmac"
    if header is not None:
        if not header.startswith(API_KEY_SCHEME):
            raise auth_error(
                "Unsupported X-CT-Authorization scheme (expected 'CTApiKey KEY' or 'CTApiV2Auth')"
            )
        key = header[len(API_KEY_SCHEME) :]
    elif "api_key" in query:
        key = query["api_key"]
    else:
        raise auth_error("Missing authentication: send X-CT-Authorization or api_key")
    if "api_key" not in settings.auth_modes:
        raise auth_error("API key authentication is not enabled for this client (HMAC is required)")
    if not hmac.compare_digest(key.encode(), settings.api_key.encode()):
        raise auth_error("Invalid API key")
    return "api_key"


def _verify_hmac(
    method: str,
    target: str,
    headers: Mapping[str, str],
    credentials: str,
    body: bytes,
    settings: SandboxSettings,
    now: float,
) -> None:
    public_key, sep, sent_signature = credentials.partition(":")
    if not sep or not public_key or not sent_signature:
        raise auth_error("Malformed CTApiV2Auth header (expected 'CTApiV2Auth PUBLIC_KEY:SIGNATURE')")
    if not hmac.compare_digest(public_key.encode(), settings.hmac_public_key.encode()):
        raise auth_error("Unknown HMAC public key")
    timestamp = headers.get(TIMESTAMP_HEADER)
    if timestamp is None:
        raise auth_error("Missing X-CT-Timestamp header")
    if not timestamp.isdigit():
        raise auth_error("X-CT-Timestamp must be an integer UNIX time")
    seconds = int(timestamp) / (1000.0 if settings.timestamp_unit == "ms" else 1.0)
    if abs(now - seconds) > settings.timestamp_window_s:
        unit = "milliseconds" if settings.timestamp_unit == "ms" else "seconds"
        raise auth_error(
            f"X-CT-Timestamp is outside the allowed window of {settings.timestamp_window_s:.0f} s "
            f"(this client expects UNIX time in {unit})"
        )
    text = string_to_sign(method, body, headers.get("content-type", ""), timestamp, target)
    expected = signature(settings.hmac_private_key, text)
    if not hmac.compare_digest(sent_signature.encode(), expected.encode()):
        raise auth_error("Invalid HMAC signature")
