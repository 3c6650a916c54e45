"""Values of a receipt or return as the POS host takes them: decimals, dates with an offset, yes/no.

Everything else is :mod:`..convert`'s (missing values, plain JSON, text). A value is sent as given or
refused with the reason; the one change made is the documented one: a date-time without an offset is
read in the sync's ``timezone`` and sent with that offset ("local ISO-8601 with offset appended",
O:Purchase), because CrowdTwist would otherwise have to guess the zone.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from airflow_provider_crowdtwist.formats import NO_WORDS, YES_WORDS, show
from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError, is_missing, to_plain

_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_OFFSET_TEXT = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


def to_decimal(value: Any) -> Any:
    """A number as a plain JSON number (``5.0`` travels as ``5``), or :data:`MISSING`.

    Numeric text ("12.50") is accepted and sent as the number it spells; anything else is refused.
    """
    kind = type(value)
    if kind is int:  # the common cases first: a sync converts several values per line
        return value
    if kind is float:
        if math.isfinite(value):
            return int(value) if value.is_integer() else value
        if math.isnan(value):
            return MISSING
        raise ConversionError(f"{show(value)} is not a finite number")
    if is_missing(value):
        return MISSING
    if _is_bool(value):
        raise ConversionError(f"{show(value)} is not a number")
    if isinstance(value, str):
        text = value.strip()
        if not _DECIMAL_TEXT.match(text):
            raise ConversionError(f"{show(value)} is not a number")
        number = Decimal(text)
        return int(number) if number == number.to_integral_value() else float(number)
    try:
        plain = to_plain(value)
    except ConversionError:
        raise ConversionError(f"{show(value)} is not a number") from None
    if isinstance(plain, bool) or not isinstance(plain, (int, float)):
        raise ConversionError(f"{show(value)} is not a number")
    if isinstance(plain, float) and not math.isfinite(plain):
        raise ConversionError(f"{show(value)} is not a finite number")
    return plain


def _is_bool(value: Any) -> bool:
    """A Python or numpy boolean (``numpy.bool_``; numpy 2 names its type ``bool``)."""
    return isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b"


def to_local_datetime(value: Any, zone: dt.tzinfo) -> Any:
    """ISO-8601 with an offset, or :data:`MISSING`.

    Text that carries an offset is sent exactly as given (after a check that it parses); text or a
    date-time without one is read in ``zone`` (the ``timezone`` setting) and sent with that zone's
    offset at that moment (daylight saving included). A bare number is refused: epoch seconds vs
    milliseconds and the zone would be guesses.
    """
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            raise ConversionError(f"{show(value)} is not an ISO-8601 date-time") from None
        if parsed.tzinfo is not None and _OFFSET_TEXT.search(text):
            return text
        return _with_offset(parsed, zone)
    to_pydatetime = getattr(value, "to_pydatetime", None)  # pandas Timestamp
    if callable(to_pydatetime):
        value = to_pydatetime()
    if type(value).__name__ == "datetime64":
        import numpy as np

        value = dt.datetime(1970, 1, 1) + dt.timedelta(
            microseconds=int(value.astype("datetime64[us]").astype(np.int64))
        )
    if isinstance(value, dt.datetime):
        return _with_offset(value, zone)
    if isinstance(value, dt.date):
        return _with_offset(dt.datetime(value.year, value.month, value.day), zone)
    raise ConversionError(f"{show(value)} is not a date-time (give ISO-8601 text or a timestamp column)")


def _with_offset(value: dt.datetime, zone: dt.tzinfo) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.isoformat()


def to_flag(value: Any) -> bool:
    """A yes/no value (true/false, 1/0, yes/no...); missing is no."""
    if is_missing(value):
        return False
    if _is_bool(value):
        return bool(value)
    if isinstance(value, (int, float, Decimal)) or type(value).__module__ == "numpy":
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            number = Decimal(-1)
        if number in (0, 1):
            return bool(number)
    elif isinstance(value, str):
        word = value.strip().lower()
        if word in YES_WORDS:
            return True
        if word in NO_WORDS:
            return False
    raise ConversionError(f"{show(value)} is not yes or no (true/false, 1/0, yes/no)")


def to_identifier(value: Any) -> Any:
    """A receipt, return or order id as text (``123`` from an integer column is ``"123"``), or MISSING."""
    if is_missing(value):
        return MISSING
    if isinstance(value, str):
        return value.strip()
    plain = to_plain(value)
    if isinstance(plain, (bool, dict, list)):
        raise ConversionError(f"{show(value)} is not an id")
    return str(plain)
