"""Row checks done before any request, so that bad input is a clear row-level reason, not a 400.

The rules come from the contract: names take letters, digits, space and ``-\u2019_@.,``; emails must look
like emails; a create needs a location -- a US ZIP (5 digits or ZIP+4), a Canadian ``L#L #L#`` postal
code with ``country_code=CA``, or any other country with a city. Each function returns ``None`` when
the value is fine, or a reason (without the row number, which the caller adds).

The checks are deliberately no stricter than the contract: a row CrowdTwist would accept must never
be rejected here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_crowdtwist.formats import CA_POSTAL, COUNTRY, EMAIL, US_ZIP, show
from airflow_provider_crowdtwist.sync.attributes import CREATE_REQUIRED, NAME_ATTRIBUTES

_NAME_EXTRA = frozenset(" -\u2019_@.,")  # \u2019: the typographic apostrophe
_LOCATION_RULE = (
    "a location is required to create a member: a US postal_code (5 digits or ZIP+4), "
    "country_code CA with a postal_code like 'K1A 0B1', or another country_code with city_id or city_name"
)


def check_email(value: Any) -> str | None:
    """Reason why ``value`` is not an email address, or ``None``."""
    if not isinstance(value, str) or not EMAIL.match(value):
        return f"{show(value)} is not an email address"
    return None


def check_name(value: Any) -> str | None:
    """Reason why ``value`` is not an acceptable name (letters, digits, space, ``-_@.,``, apostrophe)."""
    if not isinstance(value, str) or not value.strip():
        return "must be non-empty text"
    bad = sorted({c for c in value if not (c.isalnum() or c in _NAME_EXTRA)})
    if bad:
        return (
            f"contains characters that are not allowed: {''.join(bad)!r} "
            "(allowed: letters, digits, space, -_@., and \u2019)"
        )
    return None


def check_country(value: Any) -> str | None:
    """Reason why ``value`` is not a two-letter country code, or ``None``."""
    if not isinstance(value, str) or not COUNTRY.match(value):
        return f"{show(value)} is not a two-letter ISO country code"
    return None


def check_postal_code(postal: Any, country: Any) -> str | None:
    """Reason why ``postal`` does not fit ``country`` (US or absent: ZIP; CA: ``L#L #L#``), or ``None``.

    Other countries' postal codes are not checked: the contract has no rule for them.
    """
    if postal is None:
        return None
    country_u = country.upper() if isinstance(country, str) else None
    if country_u in (None, "US"):
        if not (isinstance(postal, str) and US_ZIP.match(postal)):
            if country_u is None and isinstance(postal, str) and CA_POSTAL.match(postal):
                return None  # may be a Canadian member whose country is already stored
            return f"{show(postal)} is not a US ZIP code (5 digits or ZIP+4)"
    elif country_u == "CA" and not (isinstance(postal, str) and CA_POSTAL.match(postal)):
        return f"{show(postal)} is not a Canadian postal code like 'K1A 0B1'"
    return None


def check_location_for_create(payload: Mapping[str, Any]) -> str | None:
    """Reason why ``payload`` lacks the location a create needs, or ``None``."""
    country = payload.get("country_code")
    country_u = country.upper() if isinstance(country, str) else None
    postal = payload.get("postal_code")
    if country_u in (None, "US"):
        ok = isinstance(postal, str) and bool(US_ZIP.match(postal))
    elif country_u == "CA":
        ok = isinstance(postal, str) and bool(CA_POSTAL.match(postal))
    else:
        ok = bool(payload.get("city_id") or payload.get("city_name"))
    return None if ok else _LOCATION_RULE


def check_create(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first rule a create would break, or ``None``.

    Used up front in ``insert`` mode, and in ``upsert`` mode right before the POST that follows a
    404 (a member that exists needs none of this).
    """
    for name in CREATE_REQUIRED:
        if payload.get(name) in (None, ""):
            return name, f"{name} is required to create a member"
    reason = check_location_for_create(payload)
    if reason:
        return "location", reason
    return None


def check_fields(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first field whose value breaks a rule, or ``None``."""
    email = payload.get("email_address")
    if email is not None:
        reason = check_email(email)
        if reason:
            return "email_address", reason
    for name in NAME_ATTRIBUTES:
        if name in payload:
            reason = check_name(payload[name])
            if reason:
                return name, reason
    country = payload.get("country_code")
    if country is not None:
        reason = check_country(country)
        if reason:
            return "country_code", reason
    reason = check_postal_code(payload.get("postal_code"), country)
    if reason:
        return "postal_code", reason
    return None
