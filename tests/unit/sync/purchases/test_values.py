"""POS values: numbers as given, dates with an offset, yes/no, ids."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError
from airflow_provider_crowdtwist.sync.purchases.values import (
    to_decimal,
    to_flag,
    to_identifier,
    to_local_datetime,
)

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("value", "sent"),
    [(5, 5), (5.0, 5), ("12.50", 12.5), (" 3 ", 3), (np.int64(4), 4), (Decimal("1.25"), 1.25), ("1e2", 100)],
)
def test_numbers(value: object, sent: object) -> None:
    assert to_decimal(value) == sent


@pytest.mark.parametrize("value", ["abc", "1,5", True, float("inf"), "nan"])
def test_not_numbers(value: object) -> None:
    with pytest.raises(ConversionError):
        to_decimal(value)


def test_missing() -> None:
    assert (
        to_decimal(None) is MISSING
        and to_decimal(float("nan")) is MISSING
        and to_local_datetime("", NY) is MISSING
    )


def test_dates() -> None:
    assert to_local_datetime("2026-12-07 09:30:00", NY) == "2026-12-07T09:30:00-05:00"
    assert to_local_datetime("2026-12-07T09:30:00Z", NY) == "2026-12-07T09:30:00Z"  # as given
    assert to_local_datetime(pd.Timestamp("2026-06-07 09:30"), NY) == "2026-06-07T09:30:00-04:00"
    assert to_local_datetime(pd.Timestamp("2026-06-07 09:30", tz="UTC"), NY) == "2026-06-07T09:30:00+00:00"
    assert to_local_datetime(dt.date(2026, 1, 2), NY) == "2026-01-02T00:00:00-05:00"
    assert to_local_datetime(np.datetime64("2026-01-02T03:04:05"), NY) == "2026-01-02T03:04:05-05:00"
    with pytest.raises(ConversionError):
        to_local_datetime(1765000000, NY)


def test_flags_and_ids() -> None:
    assert [to_flag(v) for v in (True, "yes", 1, "0", None, np.bool_(True))] == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]
    with pytest.raises(ConversionError):
        to_flag("maybe")
    assert to_identifier(123.0) == "123" and to_identifier(" R1 ") == "R1" and to_identifier(None) is MISSING
