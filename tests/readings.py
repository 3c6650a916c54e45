"""Named readings of the contract's OPEN points, for parametrizing integration tests.

``crowdtwist-api.md`` leaves some behaviour open (429 with or without ``Retry-After``, the HMAC timestamp
unit, 401 or 403 for bad credentials, ...), and the provider must be correct under *every* reading. Each
``Reading`` is one value of one OPEN point: the sandbox settings that make the sandbox behave that way
(``SandboxServer(**reading.sandbox)``, ``SandboxProcess(**reading.sandbox)`` or, at runtime,
``sandbox.configure(**reading.sandbox)``) and the client settings that must match it (only where the
client is told the answer, like ``hmac_timestamp_unit``; everything else the client must cope with
unaided). ``baseline`` carries the default value of every point; each other reading changes exactly
one, so the list is one entry per value, not the cross product.

Use the ``sandbox_reading`` fixture (``tests/conftest.py``) to run a test under all of them, or pick
some with ``readings_for("rate limit")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The sandbox limit for the rate-limit readings: low enough that a test of a few hundred requests meets
# 429s, high enough that a 2,000-row sync still takes seconds. The client is let run faster than the
# sandbox (its own limiter would otherwise keep it under the limit and the 429 path would go untested).
RATE_LIMIT_PER_MINUTE = 12_000
CLIENT_FASTER_THAN_LIMIT = {"requests_per_minute": 60_000}


@dataclass(frozen=True)
class Reading:
    """One value of one OPEN point: ``sandbox`` settings and the ``client`` settings that match them."""

    name: str
    open_point: str
    sandbox: dict[str, Any] = field(default_factory=dict)
    client: dict[str, Any] = field(default_factory=dict)
    #: sync settings that must match the reading (the audience sync's ``values``), like ``client``
    sync: dict[str, Any] = field(default_factory=dict)


READINGS: tuple[Reading, ...] = (
    Reading(
        "baseline",
        "none: every point at its default (401, users/delete, bare list, nulls clear, location required, "
        "dedupe on, no limit)",
    ),
    Reading(
        "hmac_timestamp_s",
        "HMAC timestamp unit",
        {"timestamp_unit": "s"},
        {"auth_type": "hmac", "hmac_timestamp_unit": "s"},
    ),
    Reading(
        "hmac_timestamp_ms",
        "HMAC timestamp unit",
        {"timestamp_unit": "ms"},
        {"auth_type": "hmac", "hmac_timestamp_unit": "ms"},
    ),
    Reading("bad_credentials_403", "bad credentials status", {"bad_credentials_status": 403}),
    Reading(
        "deletion_status_user_deletion", "deletion status path", {"deletion_status_path": "user_deletion"}
    ),
    Reading("history_paged", "activity history envelope", {"history_envelope": "paged"}),
    Reading("nulls_ignored", "null in an optional field", {"null_values": "ignore"}),
    Reading("location_optional", "location on create", {"location_optional": True}),
    Reading("dedupe_off", "duplicate credit detection", {"dedupe_window_s": 0}),
    Reading(
        "rate_limit_bucket_retry_after",
        "rate limit",
        {"rate_limit_per_minute": RATE_LIMIT_PER_MINUTE, "rate_limit_burst": 10, "retry_after": True},
        CLIENT_FASTER_THAN_LIMIT,
    ),
    Reading(
        "rate_limit_bucket_no_retry_after",
        "rate limit",
        {"rate_limit_per_minute": RATE_LIMIT_PER_MINUTE, "rate_limit_burst": 10, "retry_after": False},
        CLIENT_FASTER_THAN_LIMIT,
    ),
    Reading(
        "rate_limit_window",
        "rate limit",
        {
            "rate_limit_per_minute": RATE_LIMIT_PER_MINUTE,
            "rate_limit_mode": "window",
            "rate_limit_window_s": 1.0,
        },
        CLIENT_FASTER_THAN_LIMIT,
    ),
)

# Not an OPEN point but Oracle's word that awards are queued ("generally within seconds"): a reading for
# tests of verified credits (issue 12). Kept out of READINGS so that every other test stays fast.
AWARD_LAG = Reading("award_lag_2s", "award queue", {"award_lag_s": 2.0})


# OPEN: custom attributes are typed per program; what a boolean takes (JSON true/false, 1/0 or strings),
# and whether a wrong type is refused at all. Only typed custom attributes feel these readings (the
# audience sync's boolean traits), so they are kept out of READINGS: every other test would run three
# more times for nothing. ``sync`` carries the ``values`` the user would configure for that program.
CUSTOM_TYPE_READINGS: tuple[Reading, ...] = (
    Reading("custom_boolean_json", "boolean custom attribute", {}, {}, {"values": (True, False)}),
    Reading(
        "custom_boolean_number",
        "boolean custom attribute",
        {"custom_boolean_values": "number"},
        {},
        {"values": (1, 0)},
    ),
    Reading(
        "custom_boolean_string",
        "boolean custom attribute",
        {"custom_boolean_values": "string"},
        {},
        {"values": ("true", "false")},
    ),
    Reading(
        "custom_types_not_enforced",
        "boolean custom attribute",
        {"custom_attribute_types": "not_enforced", "custom_boolean_values": "number"},
        {},
        {"values": (True, False)},
    ),
)


def readings_for(*open_points: str) -> tuple[Reading, ...]:
    """The baseline plus the readings of the named OPEN points (``Reading.open_point``)."""
    unknown = set(open_points) - {r.open_point for r in READINGS}
    if unknown:
        raise ValueError(f"no readings for {sorted(unknown)}")
    return tuple(r for r in READINGS if r.name == "baseline" or r.open_point in open_points)


def by_name(name: str) -> Reading:
    for reading in (*READINGS, AWARD_LAG, *CUSTOM_TYPE_READINGS):
        if reading.name == name:
            return reading
    raise KeyError(name)
