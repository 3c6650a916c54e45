"""``CrowdTwistPosClient``: the POS host's three calls -- Purchase, Return, Void Return.

CrowdTwist serves commerce on a host of its own (``https://{env}pos{client_id}.crowdtwist.com``) that
takes the API key header only: "This request does not support URL or query parameters" (O:Purchase,
O:Return) and HMAC "calls to pos[client_id].crowdtwist.com are not supported" (O:HMACAuthentication).
So the POS client is a :class:`CrowdTwistClient` over the same connection with its base URL replaced by
the POS base URL, the key placed in the header whatever the connection says, and an HMAC-only
connection refused before the first request, naming why.

Unlike an activity credit, a purchase carries an idempotency key (``receipt_id``: "a unique identifier
of this request"), and a return its ``return_id``: resending after an ambiguous failure is safe, so the
ordinary retry plan applies (5xx and dropped connections are resent). What a repeat answers is OPEN
(a ``not_unique`` 4xx, or 200 replaying the first answer); :func:`is_duplicate_id` recognises the
refusal and the purchase sync decides what it proves (``sync/purchases/``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from airflow_provider_crowdtwist.client.client import CrowdTwistClient, quote_path_value
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.errors import CrowdTwistConfigError, CrowdTwistError
from airflow_provider_crowdtwist.client.observe import CallObserver
from airflow_provider_crowdtwist.client.ratelimit import Pacer

#: Reasons of the POS error envelope (O:VoidReturn-PostVoid) that say "this id was already used".
DUPLICATE_REASONS = ("not_unique",)
#: Reasons that say "no such receipt or return" (O:VoidReturn-PostVoid's sample, its reason list).
NOT_FOUND_REASONS = ("return not found", "receipt_not_found", "return_not_found", "not_found")

HMAC_REFUSED = (
    "the POS host does not support HMAC authentication (O:HMACAuthentication: calls to "
    "pos[client_id].crowdtwist.com are not supported); use a connection with auth_type 'api_key' "
    "(the API key in password) for purchases and returns"
)


def pos_client_config(
    config: ClientConfig, pos_host: str | None, labels: Mapping[str, str] | None = None
) -> ClientConfig:
    """The POS host's client settings: ``config`` with the POS base URL and the key in the header.

    Raises :class:`CrowdTwistConfigError` before any request when the POS base URL is missing or
    malformed, or when ``config`` authenticates by HMAC only.
    """
    label = (labels or {}).get("pos_host", "POS base URL (pos_host)")
    if config.auth_type != "api_key":
        raise CrowdTwistConfigError(HMAC_REFUSED)
    if not isinstance(pos_host, str) or not pos_host.strip():
        raise CrowdTwistConfigError(
            f"{label} is empty; purchases and returns go to the POS host, "
            "e.g. https://sbpos123.crowdtwist.com (https://{env}pos{client_id}.crowdtwist.com)"
        )
    pos = replace(config, base_url=pos_host.strip().rstrip("/"), api_key_in="header")
    pos.validate({**(labels or {}), "base_url": label})
    return pos


def error_reason(error: CrowdTwistError) -> str:
    """The POS envelope's ``reason`` (the client keeps it as ``code``), lower-cased; '' when none."""
    return (error.code or "").strip().lower()


def is_duplicate_id(error: CrowdTwistError) -> bool:
    """True when CrowdTwist refused a receipt_id/return_id because it was used before (OPEN 1)."""
    if error.status == 409:
        return True
    if error.status is None or not 400 <= error.status < 500:
        return False
    if error_reason(error) in DUPLICATE_REASONS:
        return True
    text = (error.message or "").lower()
    return "not unique" in text or "not_unique" in text


def is_not_found(error: CrowdTwistError) -> bool:
    """True when CrowdTwist answered that the receipt or return does not exist (OPEN 6: 400 or 404)."""
    if error.status == 404:
        return True
    if error.status != 400:
        return False
    if error_reason(error) in NOT_FOUND_REASONS:
        return True
    return "not found" in (error.message or "").lower() or "cannot be found" in (error.message or "").lower()


class CrowdTwistPosClient:
    """Purchase, Return and Void Return on the POS host; safe to share between threads."""

    def __init__(
        self,
        config: ClientConfig,
        pos_host: str | None,
        *,
        rate_limiter: Pacer | None = None,
        logger: logging.Logger | None = None,
        labels: Mapping[str, str] | None = None,
        **client_options: Any,
    ) -> None:
        #: The connection's API base URL: the program the receipts go to (its asset names it).
        self.program_url = config.base_url
        self.config = pos_client_config(config, pos_host, labels)
        self._client = CrowdTwistClient(
            self.config, rate_limiter=rate_limiter, logger=logger, **client_options
        )

    def __repr__(self) -> str:
        return f"CrowdTwistPosClient(pos_host={self.config.base_url!r})"

    @property
    def rate_limiter(self) -> Pacer:
        return self._client.rate_limiter

    @property
    def requests_sent(self) -> int:
        """Every HTTP attempt sent so far, retries included."""
        return self._client.requests_sent

    def redact(self, text: object) -> str:
        return self._client.redact(text)

    @property
    def observer(self) -> CallObserver | None:
        """Told of every HTTP attempt (the calls sample): the inner client's."""
        return self._client.observer

    @observer.setter
    def observer(self, value: CallObserver | None) -> None:
        self._client.observer = value

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CrowdTwistPosClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._client.request(method, path, json=body)
        content = response.content or b""
        if not content.strip():
            return {}
        try:
            data = json.loads(content)
        except ValueError:
            return {}  # the answer's fields are OPEN (3): a 2xx is the proof, not its body
        return data if isinstance(data, dict) else {"answer": data}

    def purchase(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /purchase``: a receipt (``receipt_id``, ``total``, ``date_purchased``, ``items``...)."""
        return self._send("POST", "/purchase", dict(body))

    def create_return(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /return``: deducts the points of the returned items (O:Return)."""
        return self._send("POST", "/return", dict(body))

    def void_return(self, return_id: str) -> dict[str, Any]:
        """``DELETE /return/{return_id}``: deletes a return and credits its points back."""
        return self._send("DELETE", f"/return/{quote_path_value(return_id)}")


__all__ = [
    "HMAC_REFUSED",
    "CrowdTwistPosClient",
    "error_reason",
    "is_duplicate_id",
    "is_not_found",
    "pos_client_config",
]
