"""The CrowdTwist HTTP client: auth, retries, typed errors. Never imports Airflow."""

from __future__ import annotations

from airflow_provider_crowdtwist.client.auth import ApiKeyAuth, HmacAuth, hmac_string_to_sign
from airflow_provider_crowdtwist.client.client import CrowdTwistClient, quote_path_value
from airflow_provider_crowdtwist.client.config import ID_TYPE_ATTRIBUTES, ID_TYPES, ClientConfig
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistAlreadyProcessedError,
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
from airflow_provider_crowdtwist.client.models import Activity, ActivityHistoryItem, parse_activities
from airflow_provider_crowdtwist.client.ratelimit import RateLimiter
from airflow_provider_crowdtwist.client.redact import Redactor

__all__ = [
    "ID_TYPES",
    "ID_TYPE_ATTRIBUTES",
    "Activity",
    "ActivityHistoryItem",
    "ApiKeyAuth",
    "ClientConfig",
    "CrowdTwistAlreadyProcessedError",
    "CrowdTwistAuthError",
    "CrowdTwistClient",
    "CrowdTwistConfigError",
    "CrowdTwistConnectionError",
    "CrowdTwistError",
    "CrowdTwistForbiddenError",
    "CrowdTwistNotFoundError",
    "CrowdTwistRateLimitError",
    "CrowdTwistServerError",
    "CrowdTwistValidationError",
    "HmacAuth",
    "RateLimiter",
    "Redactor",
    "hmac_string_to_sign",
    "parse_activities",
    "quote_path_value",
]
