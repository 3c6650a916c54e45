"""Findings 1 and 3 of issue #14: no date guessed silently, no password altered.

Dates: epoch milliseconds (and micro/nanoseconds) are recognised by magnitude, 8 digits are a
``YYYYMMDD`` date, and a value outside the plausible range of its field is refused naming row and
column. Secrets: sent exactly as given; a blank one is a rejection, never a silent drop.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from airflow_provider_crowdtwist.sync import convert
from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError, to_epoch_seconds
from airflow_provider_crowdtwist.sync.credits.mapping import CreditMapping, CreditRequest
from airflow_provider_crowdtwist.sync.members.mapping import MappedRow, MemberMapping
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult


# Looked up at call time, so that this file also runs (and fails) on the code before the fix.
def to_birth_date(value):
    return convert.to_birth_date(value)


def to_activity_date(value):
    return convert.to_activity_date(value)


def to_secret(value):
    return convert.to_secret(value)


MAY_17_1990 = 642902400  # 1990-05-17T00:00:00Z
MS_1990 = 643593600000  # 1990-05-25T00:00:00Z in milliseconds, the probe's value


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp())


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (MS_1990, MS_1990 // 1000),  # milliseconds, int
        (str(MS_1990), MS_1990 // 1000),  # milliseconds, digit string
        (np.int64(MS_1990), MS_1990 // 1000),
        (float(MS_1990), MS_1990 // 1000),
        (MS_1990 + 999, MS_1990 // 1000),  # sub-second part dropped: the API takes whole seconds
        (MS_1990 * 1000, MS_1990 // 1000),  # microseconds
        (MS_1990 * 1_000_000, MS_1990 // 1000),  # nanoseconds (pandas' int64 of a datetime)
        (-631152000000, -631152000),  # 1950-01-01 in milliseconds, before the epoch
        ("19900517", MAY_17_1990),  # compact YYYYMMDD text
        (19900517, MAY_17_1990),  # a date key as an integer
        (MAY_17_1990, MAY_17_1990),  # plain epoch seconds are unchanged
        ("1990-05-17", MAY_17_1990),
    ],
)
def test_bare_numbers_are_read_by_magnitude_and_eight_digits_as_a_date(value, expected):
    assert to_epoch_seconds(value) == expected
    assert to_birth_date(value) == expected


def test_eight_digits_that_are_no_calendar_date_are_refused():
    with pytest.raises(ConversionError, match="YYYYMMDD"):
        to_epoch_seconds("19901345")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0001-01-01", "plausible range of a birth date"),
        ("9999-12-31", "plausible range of a birth date"),
        ("1899-12-31", "plausible range of a birth date"),
        (-1, "placeholder"),
        (0, "placeholder"),
        ("-1", "placeholder"),
        (99_000_000_000, "plausible range"),  # 1973-ish in ms read as seconds: year 5107, refused
    ],
)
def test_implausible_birth_dates_are_refused(value, why):
    with pytest.raises(ConversionError, match=why):
        to_birth_date(value)


def test_a_birth_date_tomorrow_plus_is_refused_today_accepted():
    now = dt.datetime.now(dt.timezone.utc)
    assert to_birth_date(now.date().isoformat()) == _utc(now.year, now.month, now.day)
    with pytest.raises(ConversionError, match="birth date"):
        to_birth_date((now + dt.timedelta(days=3)).isoformat())
    assert to_birth_date("1970-01-01") == 0  # written as a date, the first day of 1970 is fine
    assert to_birth_date(None) is MISSING


def test_activity_dates_far_from_now_are_refused():
    now = dt.datetime.now(dt.timezone.utc)
    recent = now - dt.timedelta(days=30)
    assert to_activity_date(int(recent.timestamp() * 1000)) == int(recent.timestamp())
    for far in ("1990-05-17", (now + dt.timedelta(days=40)).isoformat(), 19_900_517_000_000):
        with pytest.raises(ConversionError, match="activity date"):
            to_activity_date(far)


def test_member_rows_get_the_converted_date_or_a_rejection_naming_row_and_column():
    mapping = MemberMapping(field_mapping={"dob": "date_of_birth"})
    record = {"user_id": "a@example.com", "dob": str(MS_1990)}
    plan = mapping.plan(list(record))
    ok = mapping.map_record(4, record, plan)
    assert isinstance(ok, MappedRow) and ok.payload["date_of_birth"] == MS_1990 // 1000
    bad = mapping.map_record(5, {**record, "dob": "9999-12-31"}, plan)
    assert isinstance(bad, RowResult) and bad.outcome is Outcome.REJECTED
    assert bad.message.startswith("row 5: date_of_birth (column 'dob'):")
    assert "plausible range" in bad.message


def test_credit_rows_with_an_implausible_activity_date_are_rejected_naming_the_column():
    mapping = CreditMapping(id_column="email", activity_id="buy", activity_date_column="when")
    ok = mapping.map_row(1, {"email": "a@example.com", "when": "20260101"})
    assert isinstance(ok, CreditRequest)
    bad = mapping.map_row(2, {"email": "a@example.com", "when": "19900517"})
    assert isinstance(bad, RowResult) and bad.outcome is Outcome.REJECTED
    assert bad.message.startswith("row 2: column 'when' (activity_date):")


# ---------------------------------------------------------------------------------- secrets


def test_secrets_are_sent_exactly_as_given():
    assert to_secret("  pass word  ") == "  pass word  "
    assert to_secret("") is MISSING and to_secret(None) is MISSING
    assert to_secret(1234) == "1234"
    with pytest.raises(ConversionError, match="blank"):
        to_secret("   ")
    with pytest.raises(ConversionError) as info:
        to_secret(True)
    assert "True" not in str(info.value)  # never shows the value


def test_member_password_is_not_stripped_and_a_blank_one_is_a_rejection():
    mapping = MemberMapping(field_mapping={"pw": "password", "tok": "twitter_access_token"})
    record = {"user_id": "a@example.com", "pw": "  pass word  ", "tok": " t0ken "}
    plan = mapping.plan(list(record))
    ok = mapping.map_record(1, record, plan)
    assert isinstance(ok, MappedRow)
    assert ok.payload["password"] == "  pass word  "
    assert ok.payload["twitter_access_token"] == " t0ken "
    blank = mapping.map_record(2, {**record, "pw": "    "}, plan)
    assert isinstance(blank, RowResult) and blank.outcome is Outcome.REJECTED
    assert blank.message.startswith("row 2: password (column 'pw'): the value is blank")
    empty = mapping.map_record(3, {**record, "pw": ""}, plan)  # an empty cell: no password, as before
    assert isinstance(empty, MappedRow) and "password" not in empty.payload
