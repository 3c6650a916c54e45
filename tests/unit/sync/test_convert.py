"""Value conversion: what sources give -> what the CrowdTwist API takes."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_crowdtwist.sync.convert import (
    MISSING,
    ConversionError,
    convert,
    is_missing,
    to_bool01,
    to_epoch_seconds,
    to_int,
    to_object,
    to_plain,
    to_text,
)


@pytest.mark.parametrize(
    "value", [None, float("nan"), np.nan, pd.NA, pd.NaT, np.datetime64("NaT"), "", "   "]
)
def test_missing_values_are_left_out(value):
    assert is_missing(value)
    for kind in ("text", "bool01", "int", "epoch", "object", "plain"):
        assert convert(value, kind) is MISSING


@pytest.mark.parametrize("value", [0, 0.0, False, "0", "nan-ish", [], {}])
def test_falsy_values_are_not_missing(value):
    assert not is_missing(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, 1),
        (False, 0),
        (np.bool_(True), 1),
        (1, 1),
        (0.0, 0),
        ("yes", 1),
        ("FALSE", 0),
        (" t ", 1),
        ("n", 0),
        (Decimal("1"), 1),
    ],
)
def test_booleans_travel_as_0_or_1(value, expected):
    result = to_bool01(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("value", [2, -1, 0.5, "maybe", "2"])
def test_non_booleans_are_refused_with_the_value_in_the_reason(value):
    with pytest.raises(ConversionError, match="boolean"):
        to_bool01(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1990-05-17", 642902400),
        ("1990-05-17T00:00:00Z", 642902400),
        ("1990-05-17T02:00:00+02:00", 642902400),
        ("1990-05-17 00:00:00", 642902400),
        ("1990-05-17T00:00:00.123Z", 642902400),
        (dt.date(1990, 5, 17), 642902400),
        (dt.datetime(1990, 5, 17), 642902400),  # naive = UTC, never the machine's zone
        (dt.datetime(1990, 5, 17, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))), 642902400),
        (pd.Timestamp("1990-05-17"), 642902400),
        (pd.Timestamp("1990-05-17 02:00", tz="Europe/Berlin"), 642902400),  # CEST = UTC+2
        (np.datetime64("1990-05-17T00:00:00"), 642902400),
        (642902400, 642902400),
        ("642902400", 642902400),
        (np.int64(642902400), 642902400),
        (642902400.0, 642902400),
        ("1960-01-01", -315619200),  # birth dates before 1970 are negative
        (dt.date(1969, 12, 31), -86400),
    ],
)
def test_dates_become_integer_epoch_seconds_utc(value, expected):
    result = to_epoch_seconds(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value", ["17/05/1990", "05/17/1990", "yesterday", "1990-13-45", True, [1], "1990-05-17X"]
)
def test_unreadable_dates_are_refused_not_guessed(value):
    with pytest.raises(ConversionError, match="date"):
        to_epoch_seconds(value)


def test_numbers_to_text_lose_no_digits_and_gain_no_dot_zero():
    assert to_text(5551234.0) == "5551234"
    assert to_text(np.float64(12345.0)) == "12345"
    assert to_text(np.int64(42)) == "42"
    assert to_text(" a@b.co ") == "a@b.co"
    assert to_text("02134") == "02134"
    assert to_text(Decimal("10.50")) == "10.5"
    with pytest.raises(ConversionError):
        to_text(True)
    with pytest.raises(ConversionError):
        to_text({"a": 1})


def test_int_conversion():
    assert to_int(np.float64(3.0)) == 3
    assert to_int("-7") == -7
    with pytest.raises(ConversionError, match="whole number"):
        to_int(3.5)
    with pytest.raises(ConversionError, match="whole number"):
        to_int("three")


def test_numpy_scalars_become_plain_json_numbers():
    value = {"a": np.int64(3), "b": np.float32(1.5), "c": np.float64(2.0), "d": [np.bool_(True)], "e": np.nan}
    plain = to_plain(value)
    assert plain == {"a": 3, "b": 1.5, "c": 2, "d": [True]}
    assert type(plain["a"]) is int and type(plain["c"]) is int and type(plain["d"][0]) is bool
    assert json.loads(json.dumps(plain)) == plain  # serialisable, no NaN


def test_plain_refuses_infinity_and_unknown_types():
    with pytest.raises(ConversionError, match="finite"):
        to_plain(float("inf"))
    with pytest.raises(ConversionError, match="type object"):
        to_plain(object())


def test_object_accepts_json_text_and_drops_missing_entries():
    assert to_object('{"tier": "gold", "x": null}') == {"tier": "gold"}
    assert to_object({"k": np.int64(1), "n": np.nan}) == {"k": 1}
    assert to_object({}) is MISSING
    with pytest.raises(ConversionError, match="JSON object"):
        to_object("not json")
    with pytest.raises(ConversionError, match="object"):
        to_object([1, 2])


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown value kind"):
        convert(1, "nope")


_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.dates(),
    st.datetimes(),
    st.decimals(allow_nan=True),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.binary(max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(value=_anything, kind=st.sampled_from(["text", "bool01", "int", "epoch", "object", "plain"]))
def test_any_value_converts_or_fails_with_a_conversion_error(value, kind):
    """No crash of another kind, and never a NaN/None smuggled into the payload."""
    try:
        result = convert(value, kind)
    except ConversionError as exc:
        assert str(exc)
        return
    if result is MISSING:
        return
    assert result is not None
    json.dumps(result, allow_nan=False)  # raises on NaN/inf
    if kind in ("bool01",):
        assert result in (0, 1)
    if kind in ("int", "epoch"):
        assert type(result) is int
    if kind == "text":
        assert isinstance(result, str) and result == result.strip()


def test_float_infinity_in_epoch_is_refused():
    with pytest.raises(ConversionError):
        to_epoch_seconds(math.inf)
