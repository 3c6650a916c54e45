"""Client configuration, validated before the first request.

A wrong setting found after a sync has started costs a half-applied run, so :meth:`ClientConfig.validate`
checks every field up front, and names each field the way the caller says the user wrote it
(``validate(labels)``; the hook passes its connection's field names).
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError

#: The ``id_type`` values CrowdTwist accepts to identify a member (``id`` is CrowdTwist's own id).
ID_TYPES: tuple[str, ...] = (
    "email",
    "facebook_user_id",
    "twitter_user_id",
    "id",
    "third_party_id",
    "username",
    "mobile_phone_number",
)

#: ``id_type`` values of an activity credit: the member id types plus ``inst_username``
#: (O:UserActivityCredit).
CREDIT_ID_TYPES: tuple[str, ...] = (*ID_TYPES, "inst_username")

#: The only id types a ``pii=false`` profile read takes (O:UserProfile).
PII_FREE_ID_TYPES: tuple[str, ...] = ("id", "third_party_id")

#: Member fields the update takes and the create does not (O:UserUpdate): a new member whose row sets
#: one of them needs the PUT after the POST.
UPDATE_ONLY_FIELDS: tuple[str, ...] = ("is_active", "remove_points")

#: The member attribute that holds each identifier, so that a create can carry the identifier the
#: member was looked up by (``id`` is assigned by CrowdTwist and has no attribute).
ID_TYPE_ATTRIBUTES: dict[str, str] = {
    "email": "email_address",
    "facebook_user_id": "facebook_user_id",
    "twitter_user_id": "twitter_user_id",
    "third_party_id": "third_party_id",
    "username": "username",
    "mobile_phone_number": "mobile_phone_number",
}

#: Airflow 3's default of ``[logging] min_length_masked_secret`` (see ``ClientConfig``).
DEFAULT_MIN_LENGTH_MASKED_SECRET = 5

AUTH_TYPES = ("api_key", "hmac")
API_KEY_LOCATIONS = ("header", "query")
TIMESTAMP_UNITS = ("s", "ms")

#: How the caller names each field in messages (set for one ``validate`` call; see ``validate``).
_LABELS: ContextVar[Mapping[str, str] | None] = ContextVar("crowdtwist_config_labels", default=None)

_SECRET_FIELDS = ("api_key", "hmac_private_key")


def _label(name: str) -> str:
    return (_LABELS.get() or {}).get(name, f"client setting '{name}'")


def is_loopback_host(host: str | None) -> bool:
    """True for hosts that never leave this machine, where plain http cannot leak a key."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ClientConfig:
    """Everything a :class:`CrowdTwistClient` needs (see docs/architecture.md)."""

    base_url: str
    auth_type: str = "api_key"
    api_key: str | None = None
    api_key_in: str = "header"
    hmac_public_key: str | None = None
    hmac_private_key: str | None = None
    hmac_timestamp_unit: str = "s"
    id_type: str = "email"
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    verify: bool | str = True
    requests_per_minute: int = 10_000
    max_retries: int = 5
    max_retry_wait: float = 120.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    pool_size: int = 64
    #: The most bytes one answer may have (raw and decoded); a CrowdTwist answer is a few KB.
    max_answer_bytes: int = 8 * 1024 * 1024
    #: Seconds one attempt may take in all (connect, send, every read); None: connect + read timeouts.
    attempt_deadline: float | None = None
    #: A client certificate (PEM), with its key in ``client_key`` when that is a file apart.
    client_cert: str | None = None
    client_key: str | None = None
    #: A member's password (a secret of one request) shorter than this is not masked in messages:
    #: masking a 1-character password would turn every such letter of a message into ``***``. Airflow's
    #: own rule, ``[logging] min_length_masked_secret``, whose value the hook passes (default 5).
    min_length_masked_secret: int = DEFAULT_MIN_LENGTH_MASKED_SECRET

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                shown.append(f"{f.name}='***'")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"ClientConfig({', '.join(shown)})"

    @property
    def api_root(self) -> str:
        """The base URL without a trailing slash, ready for ``+ "/v2/..."``."""
        return self.base_url.rstrip("/")

    def validate(self, labels: Mapping[str, str] | None = None) -> None:
        """Raise :class:`CrowdTwistConfigError` naming the first bad field.

        ``labels`` maps field names to the words the user knows them by (the hook passes the Airflow
        connection's: "connection host (API base URL)"...); unlabelled fields are "client setting 'x'".
        """
        token = _LABELS.set(labels)
        try:
            self._validate()
        finally:
            _LABELS.reset(token)

    def _validate(self) -> None:
        self._validate_base_url()
        self._validate_auth()
        self._check_choice("id_type", ID_TYPES)
        self._check_number("connect_timeout", positive=True)
        self._check_number("read_timeout", positive=True)
        self._check_number("max_retry_wait")
        self._check_number("backoff_base")
        self._check_number("backoff_max")
        self._check_int("requests_per_minute", minimum=0, note="0 means no limit")
        self._check_int("max_retries", minimum=0)
        self._check_int("pool_size", minimum=1)
        self._check_int("max_answer_bytes", minimum=1024)
        self._check_int("min_length_masked_secret", minimum=0)
        if self.attempt_deadline is not None:
            self._check_number("attempt_deadline", positive=True)
        for name in ("client_cert", "client_key"):  # (the key alone is no certificate)
            path = getattr(self, name)
            if path is not None and not (isinstance(path, str) and os.path.isfile(path) and self.client_cert):
                raise CrowdTwistConfigError(f"{_label(name)} must be a PEM file (and needs client_cert)")
        if self.backoff_max < self.backoff_base:
            raise CrowdTwistConfigError(
                f"{_label('backoff_max')} ({self.backoff_max}) must not be smaller than "
                f"{_label('backoff_base')} ({self.backoff_base})"
            )
        self._validate_verify()

    # -- pieces --------------------------------------------------------------------------------

    def _validate_base_url(self) -> None:
        label = _label("base_url")
        if not isinstance(self.base_url, str) or not self.base_url.strip():
            raise CrowdTwistConfigError(
                f"{label} is empty; give the whole base URL, e.g. https://api.example"
            )
        if self.base_url != self.base_url.strip():
            raise CrowdTwistConfigError(f"{label} has leading or trailing whitespace")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("https", "http"):
            raise CrowdTwistConfigError(
                f"{label} must start with https:// (got scheme {parts.scheme or 'none'!r}); "
                "is the scheme missing from host?"
            )
        if not parts.hostname:
            raise CrowdTwistConfigError(f"{label} has no host name: {self.base_url!r}")
        if parts.username or parts.password:
            raise CrowdTwistConfigError(f"{label} must not carry credentials; put the key in password")
        if parts.query or parts.fragment:
            raise CrowdTwistConfigError(f"{label} must not have a query string or fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise CrowdTwistConfigError(
                f"{label} uses plain http for host {parts.hostname!r}: https is required "
                "(http is only allowed for loopback hosts such as 127.0.0.1, localhost, ::1)"
            )

    def _validate_auth(self) -> None:
        self._check_choice("auth_type", AUTH_TYPES)
        if self.auth_type == "api_key":
            self._check_choice("api_key_in", API_KEY_LOCATIONS)
            self._check_secret("api_key", header_value=True)
        else:
            self._check_choice("hmac_timestamp_unit", TIMESTAMP_UNITS)
            self._check_secret("hmac_public_key", header_value=True)
            self._check_secret("hmac_private_key", header_value=False)

    def _check_secret(self, name: str, *, header_value: bool) -> None:
        value = getattr(self, name)
        label = _label(name)
        if value is None or not isinstance(value, str) or value == "":
            raise CrowdTwistConfigError(f"{label} is empty; auth_type {self.auth_type!r} needs it")
        # Never echo the value: it is (part of) a credential.
        if header_value and (value != value.strip() or any(c.isspace() or ord(c) < 32 for c in value)):
            raise CrowdTwistConfigError(f"{label} contains whitespace or control characters")
        if header_value and name == "hmac_public_key" and ":" in value:
            raise CrowdTwistConfigError(f"{label} must not contain ':'")

    def _check_choice(self, name: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            raise CrowdTwistConfigError(f"{_label(name)} must be one of {allowed}; got {value!r}")

    def _check_number(self, name: str, *, positive: bool = False) -> None:
        value: Any = getattr(self, name)
        label = _label(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise CrowdTwistConfigError(f"{label} must be a number of seconds; got {value!r}")
        if math.isinf(value):
            raise CrowdTwistConfigError(f"{label} must be finite; got {value!r}")
        if positive and value <= 0:
            raise CrowdTwistConfigError(f"{label} must be greater than 0; got {value!r}")
        if value < 0:
            raise CrowdTwistConfigError(f"{label} must not be negative; got {value!r}")

    def _check_int(self, name: str, *, minimum: int, note: str = "") -> None:
        value: Any = getattr(self, name)
        label = _label(name)
        suffix = f" ({note})" if note else ""
        if isinstance(value, bool) or not isinstance(value, int):
            raise CrowdTwistConfigError(f"{label} must be a whole number; got {value!r}{suffix}")
        if value < minimum:
            raise CrowdTwistConfigError(f"{label} must be at least {minimum}; got {value!r}{suffix}")

    def _validate_verify(self) -> None:
        label = _label("verify")
        if isinstance(self.verify, bool):
            return
        if isinstance(self.verify, str) and self.verify:
            if not os.path.exists(self.verify):
                raise CrowdTwistConfigError(
                    f"{label} must be true, false or the path of a CA bundle; no file at {self.verify!r}"
                )
            return
        raise CrowdTwistConfigError(
            f"{label} must be true, false or the path of a CA bundle; got {self.verify!r}"
        )


def id_type_problem(id_type: object, allowed: tuple[str, ...] = ID_TYPES) -> str | None:
    """Why ``id_type`` is not one CrowdTwist takes (the one wording every caller uses), or None.

    ``allowed`` is :data:`ID_TYPES`, or :data:`CREDIT_ID_TYPES` for the credit call.
    """
    if id_type in allowed:
        return None
    return f"id_type {id_type!r} is not valid: id_type must be one of {', '.join(allowed)}"


__all__ = [
    "CREDIT_ID_TYPES",
    "DEFAULT_MIN_LENGTH_MASKED_SECRET",
    "ID_TYPES",
    "ID_TYPE_ATTRIBUTES",
    "PII_FREE_ID_TYPES",
    "UPDATE_ONLY_FIELDS",
    "ClientConfig",
    "id_type_problem",
    "is_loopback_host",
]
