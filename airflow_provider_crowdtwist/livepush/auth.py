"""The authentication CrowdTwist can be configured to send: Basic, an ``x-api-key`` header, or none.

Both secrets come from environment variables (never argv, which any local user reads in ``ps``) and are
compared with ``hmac.compare_digest``, so the time an answer takes says nothing about how much of a
guess was right. ``repr`` never shows a secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field


class AuthConfigError(ValueError):
    """Bad authentication settings; the message names the variable, never its value."""


@dataclass(frozen=True)
class PushAuth:
    mode: str = "none"  # "none" | "basic" | "api_key"
    secret: bytes = field(default=b"", repr=False)

    @classmethod
    def from_env(
        cls,
        *,
        basic_auth_env: str | None = None,
        api_key_env: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> PushAuth:
        env = os.environ if environ is None else environ
        if basic_auth_env and api_key_env:
            raise AuthConfigError("give --basic-auth-env or --api-key-env, not both")
        if basic_auth_env:
            value = env.get(basic_auth_env)
            if not value:
                raise AuthConfigError(f"environment variable {basic_auth_env} (--basic-auth-env) is not set")
            if ":" not in value or value.startswith(":"):
                raise AuthConfigError(
                    f"environment variable {basic_auth_env} (--basic-auth-env) must hold user:password"
                )
            return cls("basic", value.encode())
        if api_key_env:
            value = env.get(api_key_env)
            if not value:
                raise AuthConfigError(f"environment variable {api_key_env} (--api-key-env) is not set")
            return cls("api_key", value.encode())
        return cls()

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def check(self, headers: Mapping[bytes, bytes]) -> bool:
        """True when the request carries the configured credentials (always True without auth)."""
        if self.mode == "none":
            return True
        if self.mode == "api_key":
            return hmac.compare_digest(headers.get(b"x-api-key", b""), self.secret)
        scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        # compare first, then the scheme: the comparison runs whatever the header looked like
        same = hmac.compare_digest(given, self.secret)
        return same and scheme.lower() == b"basic"
