"""Landed push -> typed row: every documented field, both spellings, timestamps, never a coerced value."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_crowdtwist.livepush.columns import (
    PROFILE_COLUMNS,
    ValueRejected,
    feed_columns,
    to_timestamp,
)
from airflow_provider_crowdtwist.livepush.dialects import SQLITE
from airflow_provider_crowdtwist.livepush.rows import RowBuilder
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile


def build(push: dict, received_at: object = 0, source_file: str = "f", feed: str = "profile") -> dict:
    """The row ``RowBuilder.build`` makes, by column name (its tuple is in ``row_columns`` order)."""
    builder = RowBuilder(feed)
    row = builder.build(push, received_at, source_file)
    return dict(zip([c.name for c in builder.row_columns], row, strict=True))


def test_a_full_profile_fills_every_documented_column() -> None:
    row = build(sample_profile(6566), 10.5, "f.jsonl")
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
    row = build(push)
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
    row = build(push)
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


def test_an_iso_date_with_an_offset_is_stored_as_utc_text_on_sqlite() -> None:
    push = sample_profile(1)
    push["tierInfo"] = push["tierInfo"] | {"dateReached": "2017-03-23T21:00:00+02:00"}
    builder = RowBuilder("profile", SQLITE.timestamp_out, null=SQLITE.null)
    row = dict(zip([c.name for c in builder.row_columns], builder.build(push, 0, "f"), strict=True))
    assert row["tier_date_reached"] == "2017-03-23 19:00:00.000000+00:00"  # sorts with the other dates


# ---- the compiled builder computes exactly what the column-by-column reference does ----------------

_values = st.one_of(
    st.none(),
    st.just(""),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, width=32),
    st.text(max_size=8),
    st.from_regex(r"-?\d{1,10}(\.\d{1,3})?", fullmatch=True),
    st.sampled_from(["2017-03-23T19:00:00Z", "2017-03-23T21:00:00+02:00", "2017-03-23 19:00", "soon"]),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
_TOP_KEYS = sorted(
    {c.source[0] for feed in ("profile", "activity") for c in feed_columns(feed) if c.source}
    | {"tier_info", "custom_data", "user_activity_id", "date_created", "password"}
)
_TIER_KEYS = sorted({c.source[1] for c in PROFILE_COLUMNS if len(c.source) > 1} | {"timeframe_score"})


def _no_nan(row: tuple) -> tuple:
    return tuple(None if isinstance(v, float) and v != v else v for v in row)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    feed=st.sampled_from(["profile", "activity"]),
    changes=st.dictionaries(st.sampled_from([*_TOP_KEYS, "unknownField"]), _values),
    tier=st.one_of(st.none(), st.dictionaries(st.sampled_from([*_TIER_KEYS, "surprise"]), _values)),
    removed=st.sets(st.sampled_from(_TOP_KEYS)),
    received_at=st.one_of(st.floats(0, 2e9), st.integers(0, 2**31), st.just("yesterday"), st.none()),
    null=st.sampled_from([None, float("nan")]),
)
def test_build_equals_the_reference_row(
    feed: str, changes: dict, tier: dict | None, removed: set, received_at: object, null: object
) -> None:
    push = (sample_profile(7) if feed == "profile" else sample_activity(7)) | changes
    if tier is not None and isinstance(push.get("tierInfo"), dict):
        push["tierInfo"] = push["tierInfo"] | tier
    for key in removed:
        push.pop(key, None)
    builder = RowBuilder(feed, SQLITE.timestamp_out, null=null)
    try:
        reference = builder.reference_row(push, received_at, "f")
        expected: object = dict(zip([c.name for c in builder.columns], reference, strict=True))
    except ValueRejected as exc:
        expected = str(exc)
    try:
        row = _no_nan(builder.build(push, received_at, "f"))
        got: object = dict(zip([c.name for c in builder.row_columns], row, strict=True))
    except ValueRejected as exc:
        got = str(exc)
    assert got == expected
