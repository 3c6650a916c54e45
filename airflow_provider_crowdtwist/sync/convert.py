"""Value conversion: from whatever a warehouse, a DataFrame or a file gives to what the API takes.

Why it is built this way: ``docs/sync-design.md``, section ``sync/convert.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:  # imported on first use: parsing a DAG must not pay for pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")
    pd = LazyModule("pandas", globals(), "pd")

from airflow_provider_crowdtwist.formats import NO_WORDS, YES_WORDS, show


class ConversionError(ValueError):
    """A value cannot be converted to what the API takes; the message says why, without the field."""


class _Missing:
    """Sentinel: the value is missing and the field must be left out of the payload."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: Returned by the converters for a missing value: leave the field out.
MISSING: Any = _Missing()

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_DATE = dt.date(1970, 1, 1)
_INT_RE = re.compile(r"^[+-]?\d+$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def is_missing(value: Any) -> bool:
    """True when ``value`` means "no value": None, NaN, NaT, pd.NA, or an empty/blank string."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):  # includes np.float64
        return math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, np.floating):
        return bool(np.isnan(value))
    if isinstance(value, Decimal):
        return value.is_nan()
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return False


def _integral_float_to_int(value: float) -> int | float:
    if math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def to_plain(value: Any) -> Any:
    """Convert a value to plain JSON (str, int, float, bool, list, dict), or :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if not math.isfinite(f):
            raise ConversionError(f"{show(value)} is not a finite number")
        return _integral_float_to_int(f)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ConversionError(f"{show(value)} is not a finite number")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, np.datetime64)):
        return to_epoch_seconds(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            pv = to_plain(v)
            if pv is not MISSING:
                out[str(k)] = pv
        return out
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [to_plain(v) for v in value]
        return [None if v is MISSING else v for v in items]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConversionError("binary value is not UTF-8 text") from exc
    raise ConversionError(f"cannot send a value of type {type(value).__name__} ({show(value)})")


def to_text(value: Any) -> Any:
    """Convert to a stripped string, or :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, np.bool_)):
        raise ConversionError(f"expected text, got a boolean ({show(value)})")
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating, Decimal)):
        plain = to_plain(value)
        return str(plain)
    if isinstance(value, bytes):
        return str(to_plain(value)).strip()
    if isinstance(value, (Mapping, list, tuple, np.ndarray)):
        raise ConversionError(f"expected text, got {type(value).__name__}")
    return str(value).strip()


def to_secret(value: Any) -> Any:
    """A password or token: sent exactly as given (never stripped), or :data:`MISSING` when empty."""
    if isinstance(value, str):
        if not value:
            return MISSING
        if not value.strip():
            raise ConversionError(
                "the value is blank (only whitespace); secrets are sent as given, so it is refused "
                "rather than set to blanks -- leave it empty to send none"
            )
        return value
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        raise ConversionError("expected text, got a boolean")
    if isinstance(value, (int, np.integer, float, np.floating, Decimal)):
        plain = to_plain(value)
        if isinstance(plain, int):
            return str(plain)
    raise ConversionError(f"expected text, got {type(value).__name__}")


class DigitsFromNumber(str):
    """The text of a whole number read from a numeric column, whose leading zeros may be lost."""

    __slots__ = ()


def to_postal_code(value: Any) -> Any:
    """Convert a postal code to text, or :data:`MISSING`; numbers become :class:`DigitsFromNumber`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        raise ConversionError(f"expected a postal code, got a boolean ({show(value)})")
    if isinstance(value, (int, np.integer, float, np.floating, Decimal)):
        plain = to_plain(value)
        if isinstance(plain, int) and plain >= 0:
            return DigitsFromNumber(str(plain))
        raise ConversionError(f"expected a postal code, got the number {show(value)}")
    return to_text(value)


def zero_pad_us_postal_code(digits: str) -> str:
    """Put back the leading zeros an integer column dropped from a US ZIP: to 5 digits, or to 9 (ZIP+4)."""
    if not digits.isdigit():
        return digits
    if len(digits) < 5:
        return digits.zfill(5)
    if 5 < len(digits) < 9:
        return digits.zfill(9)
    return digits


def to_bool01(value: Any) -> Any:
    """Convert a boolean-ish value to ``0``/``1`` (how CrowdTwist takes booleans), or :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return 1 if value else 0
    if isinstance(value, (int, np.integer, float, np.floating, Decimal)):
        if value == 1:
            return 1
        if value == 0:
            return 0
        raise ConversionError(f"expected a boolean (0/1, true/false), got {show(value)}")
    if isinstance(value, str):
        word = value.strip().lower()
        if word in YES_WORDS:
            return 1
        if word in NO_WORDS:
            return 0
    raise ConversionError(f"expected a boolean (0/1, true/false, yes/no), got {show(value)}")


def to_int(value: Any) -> Any:
    """Convert to a plain ``int`` (integral floats and numeric strings allowed), or :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating, Decimal)):
        f = float(value)
        if math.isfinite(f) and f.is_integer():
            return int(f)
        raise ConversionError(f"expected a whole number, got {show(value)}")
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value.strip())
    raise ConversionError(f"expected a whole number, got {show(value)}")


def _datetime_to_epoch(value: dt.datetime) -> int:
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        value = value.replace(tzinfo=dt.timezone.utc)  # naive means UTC, never the machine's zone
    return (value - _EPOCH) // dt.timedelta(seconds=1)


#: Epoch numbers at or above these magnitudes are milliseconds, microseconds, nanoseconds. 10**11
#: seconds is the year 5138, 10**11 ms is 1973-03-03: no plausible date is ambiguous between them.
_EPOCH_UNITS = ((10**17, 10**9), (10**14, 10**6), (10**11, 10**3))
_COMPACT_DATE = range(10_000_000, 100_000_000)  # 8 digits: YYYYMMDD


def _number_to_seconds(number: int | float, value: Any) -> int:
    """A bare number (or digit string) as epoch seconds: the unit by magnitude, 8 digits as a date."""
    if isinstance(number, int) and number in _COMPACT_DATE:
        year, month, day = number // 10_000, number // 100 % 100, number % 100
        try:
            return (dt.date(year, month, day) - _EPOCH_DATE).days * 86_400
        except ValueError:
            raise ConversionError(
                f"{show(value)} has 8 digits, read as a date YYYYMMDD, and is not a valid date "
                "(write epoch seconds before 1973-03 as ISO 8601 text)"
            ) from None
    for threshold, per_second in _EPOCH_UNITS:
        if abs(number) >= threshold:
            return math.floor(number / per_second) if isinstance(number, float) else number // per_second
    return math.floor(number)


#: Bounds of a plausible birth date and activity date; outside them a value is a mistake, not a date.
BIRTH_DATE_EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
ACTIVITY_DATE_MAX_AGE = dt.timedelta(days=25 * 365)
#: Slack for "the future": a date written in a time zone ahead of UTC may be a few hours ahead.
FUTURE_SLACK = dt.timedelta(days=1)
#: A bare number this close to 0 is a placeholder (-1, 0, 1), not a date in the first day of 1970.
_PLACEHOLDER_SECONDS = 86_400


def _describe_seconds(seconds: int) -> str:
    try:
        return (_EPOCH.replace(tzinfo=None) + dt.timedelta(seconds=seconds)).isoformat(sep=" ") + " UTC"
    except OverflowError:
        return "a date outside the years 1-9999"


def _bounded_date(value: Any, what: str, earliest: dt.datetime, latest: dt.datetime) -> Any:
    """Epoch seconds of ``value``, refused (not sent) when outside ``earliest``..``latest``."""
    seconds = to_epoch_seconds(value)
    if seconds is MISSING:
        return MISSING
    is_number = isinstance(value, (int, float, Decimal, np.integer, np.floating)) or (
        isinstance(value, str) and _INT_RE.match(value.strip())
    )
    if is_number and not isinstance(value, (bool, np.bool_)) and abs(seconds) < _PLACEHOLDER_SECONDS:
        raise ConversionError(
            f"{show(value)} looks like a placeholder, not a date (it would be {_describe_seconds(seconds)}); "
            "leave the value empty, or write 1970-01-01 as ISO 8601 text if that day is meant"
        )
    low, high = _datetime_to_epoch(earliest), _datetime_to_epoch(latest)
    if not low <= seconds <= high:
        raise ConversionError(
            f"{show(value)} is {_describe_seconds(seconds)}, outside the plausible range of {what} "
            f"({earliest.date().isoformat()} to {latest.date().isoformat()})"
        )
    return seconds


def to_birth_date(value: Any) -> Any:
    """``date_of_birth``: epoch seconds from 1900-01-01 to today (plus a day of time-zone slack)."""
    now = dt.datetime.now(dt.timezone.utc)
    return _bounded_date(value, "a birth date", BIRTH_DATE_EARLIEST, now + FUTURE_SLACK)


def to_activity_date(value: Any) -> Any:
    """``activity_date`` of a credit: epoch seconds from 25 years ago to today (plus a day of slack)."""
    now = dt.datetime.now(dt.timezone.utc)
    return _bounded_date(value, "an activity date", now - ACTIVITY_DATE_MAX_AGE, now + FUTURE_SLACK)


def to_epoch_seconds(value: Any) -> Any:
    """Convert a date-like value to integer epoch seconds (UTC), or :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime(warn=False)
    if isinstance(value, np.datetime64):
        value = pd.Timestamp(value).to_pydatetime(warn=False)
    if isinstance(value, dt.datetime):
        return _datetime_to_epoch(value)
    if isinstance(value, dt.date):
        return (value - _EPOCH_DATE).days * 86_400
    if isinstance(value, (bool, np.bool_)):
        raise ConversionError(f"expected a date, got a boolean ({show(value)})")
    if isinstance(value, (int, np.integer)):
        return _number_to_seconds(int(value), value)
    if isinstance(value, (float, np.floating, Decimal)):
        f = float(value)
        if not math.isfinite(f):
            raise ConversionError(f"cannot read {show(value)} as a date")
        return _number_to_seconds(int(f) if f.is_integer() else f, value)
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.match(text):
            return _number_to_seconds(int(text), value)
        if _ISO_DATE_RE.match(text):
            iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
            try:
                parsed = dt.datetime.fromisoformat(iso)
            except ValueError:
                try:
                    ts = pd.Timestamp(text)
                except (ValueError, OverflowError):
                    ts = None
                if ts is None or ts is pd.NaT:
                    raise ConversionError(
                        f"cannot read {show(value)} as a date (expected ISO 8601 such as 1990-05-17 "
                        "or 1990-05-17T10:00:00Z, or epoch seconds)"
                    ) from None
                parsed = ts.to_pydatetime(warn=False)
            return _datetime_to_epoch(parsed)
    raise ConversionError(
        f"cannot read {show(value)} as a date (expected ISO 8601 such as 1990-05-17 "
        "or 1990-05-17T10:00:00Z, or epoch seconds)"
    )


def to_object(value: Any) -> Any:
    """Convert to a JSON object (dict) for ``custom_data``/``extra_data``, or :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ConversionError(f"expected a JSON object, got {show(value)}") from exc
    if not isinstance(value, Mapping):
        raise ConversionError(f"expected an object (mapping), got {type(value).__name__}")
    plain = to_plain(value)
    return plain if plain else MISSING


#: Converter by attribute kind (see ``sync/attributes.py``).
CONVERTERS = {
    "text": to_text,
    "bool01": to_bool01,
    "int": to_int,
    "epoch": to_epoch_seconds,
    "birth_date": to_birth_date,
    "activity_date": to_activity_date,
    "secret": to_secret,
    "object": to_object,
    "postal": to_postal_code,
    "plain": to_plain,
}


def convert(value: Any, kind: str) -> Any:
    """Convert ``value`` for an attribute of ``kind`` (a key of :data:`CONVERTERS`)."""
    try:
        converter = CONVERTERS[kind]
    except KeyError:
        raise ValueError(f"unknown value kind {kind!r}; expected one of {sorted(CONVERTERS)}") from None
    return converter(value)
