"""The CrowdTwist HTTP client: auth, retries, typed errors. Never imports Airflow."""

from __future__ import annotations

from airflow_provider_crowdtwist.client.auth import ApiKeyAuth, HmacAuth
from airflow_provider_crowdtwist.client.config import ID_TYPES, ClientConfig
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAuthError,
    CrowdTwistConfigError,
    CrowdTwistConnectionError,
    CrowdTwistError,
    CrowdTwistForbiddenError,
    CrowdTwistNotFoundError,
    CrowdTwistRateLimitError,
    CrowdTwistServerError,
    CrowdTwistValidationError,
)

__all__ = [
    "ID_TYPES",
    "ApiKeyAuth",
    "ClientConfig",
    "CrowdTwistAuthError",
    "CrowdTwistConfigError",
    "CrowdTwistConnectionError",
    "CrowdTwistError",
    "CrowdTwistForbiddenError",
    "CrowdTwistNotFoundError",
    "CrowdTwistRateLimitError",
    "CrowdTwistServerError",
    "CrowdTwistValidationError",
    "HmacAuth",
]
