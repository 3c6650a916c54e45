"""Landed push -> typed row: every documented field, both spellings, timestamps, never a coerced value."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from airflow_provider_crowdtwist.livepush.columns import (
    PROFILE_COLUMNS,
    RowBuilder,
    ValueRejected,
    feed_columns,
    to_timestamp,
)
from airflow_provider_crowdtwist.livepush.samples import sample_profile


def as_dict(feed: str, row: tuple) -> dict:
    return dict(zip([c.name for c in feed_columns(feed)], row, strict=True))


def test_a_full_profile_fills_every_documented_column() -> None:
    row = as_dict("profile", RowBuilder("profile").build(sample_profile(6566), 10.5, "f.jsonl"))
    utc = timezone.utc
    assert row["member_id"] == 6566 and row["email_address"] == "member6566@example.com"
    assert row["date_last_updated"] == datetime(2017, 3, 23, 20, 49, 4, tzinfo=utc)
    assert row["date_of_birth"] == datetime(1974, 7, 6, 20, 0, tzinfo=utc)
    assert row["tier_date_reached"] == datetime(2017, 3, 23, 19, 0, tzinfo=utc)
    assert row["tier_current_level_title"] == "Tier 1" and row["tier_current_level_min_value"] is None
    assert row["tier_next_level_max_value"] == 2499 and row["tier_assigned_by_event"] == "UPDATE"
    assert row["custom_data"] == '{"employee_id": "employee1", "register_id": "1"}'
    assert row["extra_fields"] is None  # password and salt are not "extra": they are never landed
    assert row["received_at"] == datetime(1970, 1, 1, 0, 0, 10, 500000, tzinfo=utc)
    assert row["source_file"] == "f.jsonl"
    names = [c.name for c in PROFILE_COLUMNS]
    assert len(names) == len(set(names))
    assert "password" not in names and "salt" not in names


def test_snake_case_tier_keys_as_in_oracles_sample() -> None:
    push = sample_profile(1)
    push["tierInfo"] = {"timeframe_score": 7, "current_level": {"title": "Gold"}, "date_reached": 0}
    row = as_dict("profile", RowBuilder("profile").build(push, 0, "f"))
    assert row["tier_timeframe_score"] == 7 and row["tier_current_level_title"] == "Gold"
    assert row["tier_date_reached"] == datetime(1970, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("totalPoints", "lots", "column total_points (totalPoints): not a number: 'lots'"),
        ("isActive", 1.5, "column is_active (isActive): not an integer: 1.5"),
        ("dateCreated", "yesterday", "column date_created (dateCreated): not a timestamp"),
        ("id", None, "column member_id (id): missing"),
        ("dateCreated", {"a": 1}, "column date_created (dateCreated): not a timestamp"),
        ("dateCreated", True, "column date_created (dateCreated): not a timestamp"),
    ],
)
def test_bad_values_name_the_column(field: str, value: object, message: str) -> None:
    builder = RowBuilder("profile")
    builder.build(sample_profile(1) | {"dateCreated": 1}, 0, "f")  # 1 is now in the timestamp cache
    push = sample_profile(1) | {field: value}
    with pytest.raises(ValueRejected, match=message.replace("(", r"\(").replace(")", r"\)")):
        builder.build(push, 0, "f")


def test_numbers_as_text_are_read_exactly_and_text_stays_text() -> None:
    push = sample_profile(1) | {"totalPoints": "12.5", "postalCode": 10001, "fanRank": "3"}
    row = as_dict("profile", RowBuilder("profile").build(push, 0, "f"))
    assert row["total_points"] == 12.5 and row["postal_code"] == "10001" and row["fan_rank"] == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1490302144, datetime(2017, 3, 23, 20, 49, 4, tzinfo=timezone.utc)),
        ("1490302144", datetime(2017, 3, 23, 20, 49, 4, tzinfo=timezone.utc)),
        ("2017-03-23T19:00:00Z", datetime(2017, 3, 23, 19, tzinfo=timezone.utc)),
        ("2017-03-23T21:00:00+02:00", datetime(2017, 3, 23, 19, tzinfo=timezone.utc)),
        ("2017-03-23 19:00:00", datetime(2017, 3, 23, 19, tzinfo=timezone.utc)),
    ],
)
def test_timestamps(value: object, expected: datetime) -> None:
    assert to_timestamp(value) == expected
