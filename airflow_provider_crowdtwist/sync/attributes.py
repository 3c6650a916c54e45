"""The CrowdTwist member attribute catalogue: which attributes exist and what kind of value each takes.

Why it is built this way: ``docs/sync-design.md``, section ``sync/attributes.py``.
"""

from __future__ import annotations

from airflow_provider_crowdtwist.client.config import UPDATE_ONLY_FIELDS

#: Attribute -> value kind, for attributes accepted on create (and on update).
CREATE_ATTRIBUTES: dict[str, str] = {
    "first_name": "text",
    "last_name": "text",
    "middle_name": "text",
    "email_address": "text",
    "postal_code": "postal",
    "country_code": "text",
    "city_id": "text",
    "city_name": "text",
    "date_of_birth": "birth_date",
    "email_is_verified": "bool01",
    "receive_email_updates": "bool01",
    "password_generated": "bool01",
    "send_verify_email": "bool01",
    "sign_up_channel_id": "text",
    "invite_code": "text",
    "lang_pref": "text",
    "username": "text",
    "password": "secret",
    "third_party_id": "text",
    "gender_id": "text",
    "mobile_phone_number": "text",
    "tier_override": "text",
    "facebook_user_id": "text",
    "facebook_access_token": "secret",
    "twitter_user_id": "text",
    "twitter_access_token": "secret",
    "twitter_access_token_secret": "secret",
    "instagram_user_id": "text",
    "instagram_access_token": "secret",
    "foursquare_user_id": "text",
    "foursquare_access_token": "secret",
    "custom_data": "object",
    "extra_data": "object",
}

#: Attributes accepted only on update (``client.config.UPDATE_ONLY_FIELDS``), all 0/1 flags:
#: ``is_active``, and ``remove_points``, which O:UserUpdate documents as a flag "sent with is_active"
#: that wipes the member's points on deactivation -- not a count.
UPDATE_ONLY_ATTRIBUTES: dict[str, str] = dict.fromkeys(UPDATE_ONLY_FIELDS, "bool01")

#: Every attribute a member payload may carry.
MEMBER_ATTRIBUTES: dict[str, str] = {**CREATE_ATTRIBUTES, **UPDATE_ONLY_ATTRIBUTES}

#: Attributes required to create a member (O:UserCreate; a location is OPEN: see ``validation.check_create``).
CREATE_REQUIRED: tuple[str, ...] = ("first_name", "last_name", "email_address")

#: Left out of a US member's payload: "for domestic addresses ONLY postal_code can be provided"
#: (O:UserCreate); CrowdTwist refuses a city or a country alongside a US postal code.
NOT_WITH_US_POSTAL_CODE: tuple[str, ...] = ("country_code", "city_id", "city_name")

#: Attributes restricted to letters, digits, space and ``-'\u2019_@.,`` (both apostrophes, O:UserCreate).
NAME_ATTRIBUTES: tuple[str, ...] = ("first_name", "last_name", "middle_name")

#: Prefix for ``field_mapping`` targets that go into ``custom_data`` under a key of their own.
CUSTOM_DATA_PREFIX = "custom_data."

#: Social network ids/tokens: the contract lists ``instagram_*`` and ``foursquare_*`` by prefix.
SOCIAL_PREFIXES: tuple[str, ...] = ("instagram_", "foursquare_")


def attribute_kind(name: str) -> str | None:
    """The value kind of attribute ``name``, or ``None`` when CrowdTwist has no such attribute."""
    kind = MEMBER_ATTRIBUTES.get(name)
    if kind is None and name.startswith(SOCIAL_PREFIXES) and len(name) > len("instagram_"):
        return "secret" if name.endswith(("_token", "_secret")) else "text"
    return kind


def is_attribute(name: str) -> bool:
    """True when ``name`` is a CrowdTwist member attribute."""
    return attribute_kind(name) is not None
