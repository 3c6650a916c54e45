"""Which source column a CrowdTwist refusal is about (issue #14, finding 7), one piece at a time."""

from __future__ import annotations

import pytest

from airflow_provider_crowdtwist.sync.credits.mapping import CreditMapping
from airflow_provider_crowdtwist.sync.members.mapping import MemberMapping
from airflow_provider_crowdtwist.sync.run import IDENTIFIER, refused_attributes

PAYLOAD = {
    "email_address": "a@example.com",
    "postal_code": "0213",
    "is_active": 1,
    "custom_data": {"vip": 1, "name": "x"},
}


@pytest.mark.parametrize(
    ("message", "attributes"),
    [
        ("Invalid postal_code", ["postal_code"]),
        ("email_address already taken", ["email_address"]),
        ("custom_data.vip must be a scalar value", ["custom_data.vip"]),
        ("Unrecognized attribute name", ["custom_data.vip", "custom_data.name"]),  # names none: suspects
        ("Unrecognized attribute name: vip", ["custom_data.vip"]),  # "name" of the phrase is not the key
        ("User is inactive.", []),  # "inactive" is not is_active
        ("custom_data must be a JSON object", ["custom_data.vip", "custom_data.name"]),
        ("Something else went wrong", []),
    ],
)
def test_the_attributes_a_refusal_names(message: str, attributes: list[str]) -> None:
    assert refused_attributes(message, PAYLOAD) == attributes


def test_member_attributes_map_back_to_their_source_columns() -> None:
    mapping = MemberMapping(field_mapping={"zip": "postal_code", "size": "custom_data.shoe_size"})
    mapping.plan(["user_id", "zip", "size", "favourite", "first_name"])
    assert mapping.column_of("postal_code") == "zip"
    assert mapping.column_of("custom_data.shoe_size") == "size"
    assert mapping.column_of("custom_data.favourite") == "favourite"  # unmapped -> custom_data
    assert mapping.column_of("first_name") == "first_name"
    assert mapping.column_of("email_address") == "user_id" == mapping.column_of(IDENTIFIER)
    assert mapping.column_of("last_name") is None  # no column sent it
    assert mapping.field_label("postal_code") == "postal_code (column 'zip')"
    assert mapping.field_label("location") == "location (column 'zip')"


def test_credit_attributes_map_back_to_their_source_columns() -> None:
    mapping = CreditMapping(
        id_column="email",
        activity_id="purchase",
        points_column="pts",
        activity_date_column="at",
        extra_data_columns={"event_id": "order_id"},
    )
    assert mapping.column_of("num_points") == "pts"
    assert mapping.column_of("activity_date") == "at"
    assert mapping.column_of("extra_data.order_id") == "event_id"
    assert mapping.column_of(IDENTIFIER) == "email"
    assert mapping.column_of("activity_id") is None  # a fixed argument, no column
