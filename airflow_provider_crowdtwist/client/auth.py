"""CrowdTwist authentication, as values the client puts on each request and as ``requests`` auth.

The client signs each attempt (HMAC: :meth:`HmacAuth.sign`) over the exact body bytes and
``path?query`` that go on the wire, with a fresh timestamp per retry; an API key never changes within
a run, so :class:`ApiKeyAuth` hands out its header or query value once (``headers()``, ``query()``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.auth import AuthBase

API_KEY_HEADER = "X-CT-Authorization"
TIMESTAMP_HEADER = "X-CT-Timestamp"


class ApiKeyAuth(AuthBase):
    """``X-CT-Authorization: CTApiKey KEY`` (default), or ``api_key=KEY`` in the query when asked.

    The header is the default because a key in a URL leaks into proxies, access logs and the texts of
    ``requests``' own exceptions.
    """

    def __init__(self, api_key: str, location: str = "header") -> None:
        if location not in ("header", "query"):
            raise ValueError("api_key location must be 'header' or 'query'")
        self._api_key = api_key
        self.location = location

    def headers(self) -> dict[str, str]:
        """The header to send on every request (empty when the key goes in the query)."""
        return {API_KEY_HEADER: f"CTApiKey {self._api_key}"} if self.location == "header" else {}

    def query(self) -> dict[str, str]:
        """The query parameter to append to every request (empty when the key goes in a header)."""
        return {"api_key": self._api_key} if self.location == "query" else {}

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.update(self.headers())
        if self.location == "query":
            r.prepare_url(r.url, self.query())
        return r

    def __repr__(self) -> str:
        return f"ApiKeyAuth(api_key='***', location={self.location!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ApiKeyAuth)
            and hmac.compare_digest(self._api_key, other._api_key)
            and self.location == other.location
        )

    __hash__ = None  # type: ignore[assignment]


def hmac_string_to_sign(
    method: str, body_md5: str, content_type: str, timestamp: str, request_uri: str
) -> str:
    """``METHOD\\nMD5\\nCONTENT_TYPE\\nTIMESTAMP\\nREQUEST_URI``, per CrowdTwist's HMAC page."""
    return f"{method.upper()}\n{body_md5}\n{content_type}\n{timestamp}\n{request_uri}"


def hmac_signature(private_key: str | bytes, string_to_sign: str) -> str:
    """base64 of the *lowercase hex* HMAC-SHA256 digest (CrowdTwist's quirk, not of the raw bytes)."""
    key = private_key.encode("utf-8") if isinstance(private_key, str) else private_key
    hex_digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(hex_digest.encode("ascii")).decode("ascii")


def body_md5(body: bytes | str | None) -> str:
    """Lowercase hex MD5 of the exact body bytes; the empty string when there is no body."""
    if body is None or body == b"" or body == "":
        return ""
    data = body.encode("utf-8") if isinstance(body, str) else body
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("HMAC signing needs the request body as bytes, not a stream")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class HmacAuth(AuthBase):
    """``X-CT-Authorization: CTApiV2Auth {public}:{signature}`` and ``X-CT-Timestamp``.

    ``timestamp_unit`` is a setting because public sources disagree (Oracle's example has 13 digits,
    a working public signer sends seconds). ``clock`` is injectable so tests can sign a fixed instant.
    """

    def __init__(
        self,
        public_key: str,
        private_key: str,
        timestamp_unit: str = "s",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if timestamp_unit not in ("s", "ms"):
            raise ValueError("hmac timestamp unit must be 's' or 'ms'")
        self.public_key = public_key
        self._private_key = private_key.encode("utf-8")  # encoded once, not on every request
        self.timestamp_unit = timestamp_unit
        self._clock = clock

    def timestamp(self) -> str:
        now = self._clock()
        return str(int(now * 1000) if self.timestamp_unit == "ms" else int(now))

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.update(self.sign(r.method or "GET", r.path_url, r.body, r.headers.get("Content-Type", "")))
        return r

    def sign(self, method: str, path_url: str, body: Any, content_type: str) -> dict[str, str]:
        """The two headers for one attempt (a fresh timestamp each time); ``path_url`` is path + query."""
        digest = body_md5(body)
        # Without a body both MD5 and content type are empty, whatever header a caller left behind.
        timestamp = self.timestamp()
        to_sign = hmac_string_to_sign(method, digest, content_type if digest else "", timestamp, path_url)
        signature = hmac_signature(self._private_key, to_sign)
        return {API_KEY_HEADER: f"CTApiV2Auth {self.public_key}:{signature}", TIMESTAMP_HEADER: timestamp}

    def __repr__(self) -> str:
        return (
            f"HmacAuth(public_key={self.public_key!r}, private_key='***', "
            f"timestamp_unit={self.timestamp_unit!r})"
        )


__all__ = [
    "API_KEY_HEADER",
    "TIMESTAMP_HEADER",
    "ApiKeyAuth",
    "HmacAuth",
    "body_md5",
    "hmac_signature",
    "hmac_string_to_sign",
]
