"""The contract's input rules, as the sandbox enforces them on member and credit bodies.

Written from ``crowdtwist-api.md`` alone and independently of the provider's own ``sync/validation.py``:
if both were the same code, a mistake in it would pass every test. Where the contract is silent the
sandbox leans strict (a string where a string is documented, 0/1 where a flag is documented), because a
DAG that passes a strict emulator also passes a lenient service, never the other way round.

Messages quoted by the contract are used verbatim (clients may match on them); the others name the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_crowdtwist.formats import CA_POSTAL as _CA_POSTAL
from airflow_provider_crowdtwist.formats import COUNTRY as _COUNTRY
from airflow_provider_crowdtwist.formats import EMAIL as _EMAIL
from airflow_provider_crowdtwist.formats import US_ZIP as _US_ZIP
from airflow_provider_crowdtwist.sandbox.errors import ApiError, input_error
from airflow_provider_crowdtwist.sandbox.settings import SandboxSettings

LOCATION_REQUIRED = "US zip code or country/city combo is required"
NO_CUSTOM_ATTRIBUTES = "No custom attributes setup for client"
UNRECOGNIZED_ATTRIBUTE = "Unrecognized attribute name"
EMAIL_TAKEN = "email_address already taken"
EVENT_ALREADY_PROCESSED = "Event already processed"
# O:UserDelete's documented refusals.
DELETION_NOT_INITIATED = "Unable to initiate deletion"
INACTIVE_WITH_POINTS = "Member is inactive but has redeemable points"
MEMBER_NOT_FOUND = "Member not found"
MEMBER_ID_INVALID = "Member ID is invalid"
US_POSTAL_CODE_ONLY = "For domestic addresses ONLY postal_code can be provided"

NAME_FIELDS = ("first_name", "last_name", "middle_name")
FLAG_FIELDS = ("email_is_verified", "receive_email_updates", "password_generated")
EPOCH_FIELDS = ("date_of_birth",)
# Identifier-like values arrive from warehouses as numbers as often as strings; both are accepted and
# stored as text, which is how lookups by id_type compare them.
ID_LIKE_FIELDS = (
    "third_party_id",
    "mobile_phone_number",
    "facebook_user_id",
    "twitter_user_id",
    "city_id",
    "gender_id",
)
STRING_FIELDS = (
    "email_address",
    "postal_code",
    "country_code",
    "city_name",
    "invite_code",
    "lang_pref",
    "username",
    "password",
    "tier_override",
    "inst_username",
    "facebook_access_token",
    "twitter_access_token",
    "twitter_access_token_secret",
)
OBJECT_FIELDS = ("custom_data", "extra_data")
SOCIAL_PREFIXES = ("instagram_", "foursquare_")

CREATE_FIELDS = frozenset(
    NAME_FIELDS + FLAG_FIELDS + EPOCH_FIELDS + ID_LIKE_FIELDS + STRING_FIELDS + OBJECT_FIELDS
)
# Update-only (O:UserUpdate): the create body does not take them, and CrowdTwist does not apply them on
# create, so the sandbox ignores them there (a new member is active with no points, whatever was sent).
UPDATE_ONLY_FIELDS = frozenset({"is_active", "remove_points"})
UPDATE_FIELDS = CREATE_FIELDS | UPDATE_ONLY_FIELDS
CREATE_REQUIRED = ("first_name", "last_name", "email_address")
LOCATION_FIELDS = ("postal_code", "country_code", "city_id", "city_name")
# Sent alongside a US postal_code, these are refused (O:UserCreate: "ONLY postal_code can be provided").
NON_US_LOCATION_FIELDS = ("country_code", "city_id", "city_name")
CREDIT_FIELDS = frozenset({"activity_id", "num_points", "activity_date", "extra_data"})

# Names: letters (any script), digits, space and these. Oracle prints the class as
# [-\<U+2019> \p{L}0-9- _@\.,]: the backslash escapes an ASCII ' that the docs site curled (it curls every
# quote), so both apostrophes are allowed.
_NAME_CHARS = set(" -'\u2019_@.,")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _known(name: str, allowed: frozenset[str]) -> bool:
    return name in allowed or name.startswith(SOCIAL_PREFIXES)


def _check_value(name: str, value: Any, settings: SandboxSettings) -> Any:
    """Check one non-null attribute; return it as stored (id-like numbers become text)."""
    if name in NAME_FIELDS:
        if not isinstance(value, str) or not value.strip():
            raise input_error(f"{name} must be a non-empty string")
        bad = sorted({c for c in value if not (c.isalnum() or c in _NAME_CHARS)})
        if bad:
            raise input_error(f"{name} contains characters that are not allowed: {''.join(bad)!r}")
        return value
    if name in FLAG_FIELDS or name in UPDATE_ONLY_FIELDS:
        if not _is_int(value) or value not in (0, 1):
            raise input_error(f"{name} must be 0 or 1, got {value!r}")
        return value
    if name in EPOCH_FIELDS:
        if not _is_int(value):
            raise input_error(f"{name} must be an integer epoch timestamp (seconds), got {value!r}")
        return value
    if name in ID_LIKE_FIELDS:
        if _is_int(value):
            return str(value)
        if not isinstance(value, str) or not value.strip():
            raise input_error(f"{name} must be a non-empty string or an integer")
        return value
    if name in OBJECT_FIELDS:
        if not isinstance(value, dict):
            raise input_error(f"{name} must be a JSON object")
        if name == "custom_data":
            _check_custom_data(value, settings)
            if settings.null_values == "ignore":
                # a null key is left alone; under "clear" it stays None and the state removes the key
                return {k: v for k, v in value.items() if v is not None}
        return dict(value)
    if name == "email_address":
        if not isinstance(value, str) or not _EMAIL.match(value):
            raise input_error("email_address is not a valid email address")
        return value
    if name == "country_code":
        if not isinstance(value, str) or not _COUNTRY.match(value):
            raise input_error("country_code must be a two-letter ISO country code")
        return value.upper()
    # plain strings (and social ids/tokens by prefix)
    if not isinstance(value, str):
        raise input_error(f"{name} must be a string")
    return value


def _check_custom_data(data: Mapping[str, Any], settings: SandboxSettings) -> None:
    if not data:
        return
    kinds = settings.custom_attribute_kinds()
    if not kinds:
        raise input_error(NO_CUSTOM_ATTRIBUTES)
    for key, value in data.items():
        if key not in kinds:
            raise input_error(UNRECOGNIZED_ATTRIBUTE)
        if isinstance(value, (dict, list)):
            raise input_error(f"custom_data.{key} must be a scalar value")
        kind = kinds[key]
        if value is not None and kind and settings.custom_attribute_types == "enforced":
            _check_custom_type(key, value, kind, settings.custom_boolean_values)


def _check_custom_type(key: str, value: Any, kind: str, boolean_values: str) -> None:
    """Custom attributes are typed per program: a value of another type is refused (one OPEN reading)."""
    if kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = "a number"
    elif kind == "string":
        ok = isinstance(value, str)
        expected = "a string"
    elif boolean_values == "json":
        ok = isinstance(value, bool)
        expected = "a boolean (true or false)"
    elif boolean_values == "number":
        ok = _is_int(value) and value in (0, 1)
        expected = "a boolean (1 or 0)"
    else:
        ok = isinstance(value, str) and value.lower() in ("true", "false")
        expected = 'a boolean ("true" or "false")'
    if not ok:
        raise input_error(f"custom_data.{key} must be {expected}, got {value!r}")


def _check_location(attrs: Mapping[str, Any], settings: SandboxSettings) -> None:
    """US: ``postal_code`` alone; Canada: ``CA`` + ``L#L #L#``; elsewhere a country with a city.

    Anything else gets the contract's message; a US postal code sent with a city or a country (even
    ``US``) is refused as CrowdTwist does ("for domestic addresses ONLY postal_code can be provided").
    Under the OPEN point's lenient reading (``location_optional``) no location at all is accepted; a
    location that is given is checked all the same.
    """
    if settings.location_optional and all(attrs.get(name) is None for name in LOCATION_FIELDS):
        return
    country = attrs.get("country_code")
    postal = attrs.get("postal_code")
    if country in (None, "US"):
        if postal is not None and any(attrs.get(name) is not None for name in NON_US_LOCATION_FIELDS):
            raise input_error(US_POSTAL_CODE_ONLY)
        ok = isinstance(postal, str) and bool(_US_ZIP.match(postal))
    elif country == "CA":
        ok = isinstance(postal, str) and bool(_CA_POSTAL.match(postal))
    else:
        ok = bool(attrs.get("city_id") or attrs.get("city_name"))
    if not ok:
        raise input_error(LOCATION_REQUIRED)


def _object_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise input_error("Request body must be a JSON object")
    return body


def validate_create(body: Any, settings: SandboxSettings) -> dict[str, Any]:
    """Check a ``POST /v2/users`` body; return the attributes to store.

    Update-only fields are checked like any value but not returned: they do not apply on create. A null
    is an absent attribute on create under either reading of the OPEN point (there is nothing to clear).
    """
    body = _object_body(body)
    for name in body:
        if not _known(name, UPDATE_FIELDS):
            raise input_error(f"Unknown attribute '{name}'")
    for name in CREATE_REQUIRED:
        if name not in body or body[name] in (None, ""):
            raise input_error(f"{name} is required")
    attrs = {
        name: _check_value(name, value, settings)
        for name, value in body.items()
        if value is not None and name not in UPDATE_ONLY_FIELDS
    }
    for name in UPDATE_ONLY_FIELDS & body.keys():
        if body[name] is not None:
            _check_value(name, body[name], settings)
    _check_location(attrs, settings)
    return attrs


def validate_update(body: Any, current: Mapping[str, Any], settings: SandboxSettings) -> dict[str, Any]:
    """Check a ``PUT /v2/users/{id}`` body against the member as stored; return the changes.

    A null is the OPEN point: with ``null_values="clear"`` it is returned as None (the caller removes the
    attribute; a required one cannot be cleared), with ``"ignore"`` it is dropped as if not sent.
    """
    body = _object_body(body)
    for name in body:
        if not _known(name, UPDATE_FIELDS):
            raise input_error(f"Unknown attribute '{name}'")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if value is not None:
            changes[name] = _check_value(name, value, settings)
        elif settings.null_values == "clear":
            if name in CREATE_REQUIRED or name in UPDATE_ONLY_FIELDS:
                raise input_error(f"{name} is required and cannot be cleared")
            changes[name] = None
    if any(name in changes for name in LOCATION_FIELDS):
        merged = {name: current.get(name) for name in LOCATION_FIELDS}
        merged.update({k: v for k, v in changes.items() if k in LOCATION_FIELDS})
        _check_location(merged, settings)
    return changes


def validate_credit(body: Any, settings: SandboxSettings) -> dict[str, Any]:
    """Check a credit body (activity existence is checked by the caller, which knows the program)."""
    body = _object_body(body)
    for name in body:
        if name not in CREDIT_FIELDS:
            raise input_error(f"Unknown attribute '{name}'")
    activity_id = body.get("activity_id")
    if activity_id is None or activity_id == "":
        raise input_error("activity_id is required")
    if not isinstance(activity_id, str):
        raise input_error("activity_id must be a string")
    num_points = body.get("num_points")
    if num_points is not None and (not _is_int(num_points) or num_points < 0):
        raise input_error(f"num_points must be an integer >= 0, got {num_points!r}")
    activity_date = body.get("activity_date")
    if activity_date is not None:
        if not settings.activity_date_enabled:
            raise input_error("activity_date is not enabled for this client")
        if not _is_int(activity_date) or activity_date < 0:
            raise input_error(
                f"activity_date must be an integer epoch timestamp (seconds), got {activity_date!r}"
            )
    extra_data = body.get("extra_data")
    if extra_data is not None and not isinstance(extra_data, dict):
        raise input_error("extra_data must be a JSON object")
    return {
        "activity_id": activity_id,
        "num_points": num_points,
        "activity_date": activity_date,
        "extra_data": extra_data,
    }


__all__ = ["ApiError", "validate_create", "validate_credit", "validate_update"]
