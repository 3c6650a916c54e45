"""Row checks done before any request, kept to what the contract proves CrowdTwist refuses.

Why it is built this way: ``docs/sync-design.md``, section ``sync/validation.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_crowdtwist.formats import show
from airflow_provider_crowdtwist.sync.attributes import CREATE_REQUIRED, NAME_ATTRIBUTES

# These two are looser than ``formats.US_ZIP``/``CA_POSTAL`` (which describe the documented forms, as
# the sandbox checks them) on purpose: a row is refused before sending only where the contract proves
# CrowdTwist refuses it.
#: US postal code as CrowdTwist validates it: only the first five characters, which must be digits.
_US_ZIP_START = re.compile(r"^\d{5}")
#: ``L#L #L#``; the space is optional here: the contract shows the form, not a refusal of ``K1A0B1``.
_CA_POSTAL = re.compile(r"^[A-Za-z]\d[A-Za-z] ?\d[A-Za-z]\d$")
#: Besides letters and digits (``\p{L}0-9``): space, hyphen, both apostrophes, underscore, @ . ,
_NAME_EXTRA = frozenset(" -'\u2019_@.,")
def is_us(country: Any) -> bool:
    """True for ``country_code`` US in any letter case."""
    return isinstance(country, str) and country.strip().upper() == "US"


def is_us_zip(postal: Any) -> bool:
    """True when ``postal`` passes CrowdTwist's US check (its first five characters are digits)."""
    return isinstance(postal, str) and bool(_US_ZIP_START.match(postal))


def check_name(value: Any) -> str | None:
    """Reason why ``value`` is not an acceptable name (``docs/sync-design.md``), or ``None``."""
    if not isinstance(value, str) or not value.strip():
        return "must be non-empty text"
    bad = sorted({c for c in value if not (c.isalnum() or c in _NAME_EXTRA)})
    if bad:
        return (
            f"contains characters that are not allowed: {''.join(bad)!r} "
            "(allowed: letters, digits, space and -'\u2019_@.,)"
        )
    return None


def check_postal_code(postal: Any, country: Any) -> str | None:
    """Reason why ``postal`` does not fit ``country`` (US: starts with 5 digits; CA: ``L#L #L#``)."""
    if postal is None or not isinstance(country, str):
        return None
    country_u = country.strip().upper()
    if country_u == "US" and not is_us_zip(postal):
        return f"{show(postal)} is not a US ZIP code (5 digits, or ZIP+4 with or without the hyphen)"
    if country_u == "CA" and not (isinstance(postal, str) and _CA_POSTAL.match(postal)):
        return f"{show(postal)} is not a Canadian postal code like 'K1A 0B1'"
    return None


def check_create(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first documented create rule the payload breaks, or ``None``.

    The names and the email address are required (O:UserCreate). A location is not checked for
    presence: whether a create needs one is OPEN (O:UserCreate says yes; a secondary source reads the
    2026-04 release as no), so a create without one is sent and CrowdTwist's answer decides. A postal
    code that is given must fit: a new member without ``country_code`` is domestic, i.e. US (the
    postal codes of a given country are checked for every row by :func:`check_fields`).
    """
    for name in CREATE_REQUIRED:
        if payload.get(name) in (None, ""):
            return name, f"{name} is required to create a member"
    postal = payload.get("postal_code")
    if postal is not None and payload.get("country_code") is None:
        reason = check_postal_code(postal, "US")
        if reason:
            return "postal_code", f"{reason}; a member created without country_code is domestic (US)"
    return None


def check_fields(payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(field, reason)`` for the first field whose value breaks a documented rule, or ``None``."""
    for name in NAME_ATTRIBUTES:
        if payload.get(name) is not None:  # None: cleared (null_values="clear")
            reason = check_name(payload[name])
            if reason:
                return name, reason
    reason = check_postal_code(payload.get("postal_code"), payload.get("country_code"))
    if reason:
        return "postal_code", reason
    return None
