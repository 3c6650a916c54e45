"""Which audience rows name a member: identifiers checked column-wise, and the segment file's columns.

An audience row is nothing but an identifier, so the checks are few and run on whole columns (a
million-row audience is checked in pandas, not row by row in Python):

* missing or empty -> rejected (``missing_identifier``);
* not text (a boolean, a list) -> rejected (``invalid_identifier``);
* ``id_type="id"``: CrowdTwist's own id is a number (``{"user_id": N}``); anything else cannot name a
  member -> rejected;
* in a segment file (``mode="segment_file"`` or ``"both"``): Oracle's format has **no field
  enclosures**, so a comma, a double quote or a line break cannot be written -> rejected, never
  quoted (a quoted value would be read by CrowdTwist as a different identifier).

Nothing else is refused before sending: an identifier CrowdTwist does not know is answered 404 by
CrowdTwist itself (never stricter than CrowdTwist).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.client.config import ID_TYPES
from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError, to_text
from airflow_provider_crowdtwist.sync.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = LazyModule("numpy", globals(), "np")
    pd = LazyModule("pandas", globals(), "pd")

MISSING_IDENTIFIER = "missing_identifier"
INVALID_IDENTIFIER = "invalid_identifier"
DUPLICATE_IDENTIFIER = "duplicate_identifier"
#: The header of a Client Defined Segment file for each id_type (O:ClientDefinedSegments names five
#: identifier columns; the social ids have none, so they cannot travel in a segment file).
SEGMENT_HEADERS = {
    "id": "id",
    "third_party_id": "third_party_id",
    "email": "email_address",
    "username": "username",
    "mobile_phone_number": "mobile_phone_number",
}
AUDIENCE_ID_TYPES = ID_TYPES
_SEGMENT_UNWRITABLE = r'[,"\r\n]'


@dataclass(frozen=True)
class BadIdentifier:
    """A row that names no member: its position in the chunk, the value as text, why."""

    position: int
    identifier: str | None
    code: str
    reason: str


#: pandas' SipHash takes a 16-byte key as text; two keys give each member a 128-bit key.
_KEY_HASH_KEYS = ("ct-audience-k1xx", "ct-audience-k2xx")


def audience_keys(dedupe: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit keys of the dedupe identifiers (an object array of str) as two ``int64`` arrays.

    SipHash over the strings themselves (``categorize=False``): an audience has few repeated values,
    so pandas' default of factorizing first would only cost time. Not secret: identifiers are stored
    in clear in the state, and the keys decide who left.
    """
    from pandas.util import hash_array

    k1 = hash_array(dedupe, hash_key=_KEY_HASH_KEYS[0], categorize=False)
    k2 = hash_array(dedupe, hash_key=_KEY_HASH_KEYS[1], categorize=False)
    return k1.view(np.int64), k2.view(np.int64)


def check_identifiers(
    values: pd.Series, *, id_type: str, column: str, segment: bool
) -> tuple[np.ndarray, np.ndarray, list[BadIdentifier], np.ndarray]:
    """The chunk's identifiers as stripped text, a mask of the good ones, the bad ones, the dedupe keys.

    ``values`` is the id column of one chunk (any dtype). The text and dedupe arrays (``object``) are
    aligned with ``values`` (bad positions hold ``""``); the dedupe key is what makes two rows the
    same member: an email without case, any other identifier exactly.
    """
    text, problems = _as_text(values, column)
    good = np.ones(len(text), dtype=bool)
    for bad in problems:
        good[bad.position] = False
    empty = (text == "").to_numpy(dtype=bool) & good
    for position in np.flatnonzero(empty).tolist():
        problems.append(
            BadIdentifier(position, None, MISSING_IDENTIFIER, f"{column}: the identifier is missing")
        )
    good &= ~empty
    if id_type == "id":
        wrong = ~text.str.fullmatch(r"[0-9]+").to_numpy(dtype=bool, na_value=False) & good
        for position in np.flatnonzero(wrong).tolist():
            problems.append(
                BadIdentifier(
                    position,
                    str(text.iat[position]),
                    INVALID_IDENTIFIER,
                    f"{column}: a CrowdTwist id (id_type 'id') is a number, got {str(text.iat[position])!r}",
                )
            )
        good &= ~wrong
    if segment:
        wrong = text.str.contains(_SEGMENT_UNWRITABLE, regex=True).to_numpy(dtype=bool, na_value=False) & good
        for position in np.flatnonzero(wrong).tolist():
            problems.append(
                BadIdentifier(
                    position,
                    str(text.iat[position]),
                    INVALID_IDENTIFIER,
                    f"{column}: {str(text.iat[position])!r} holds a comma, a double quote or a line break, "
                    "which a Client Defined Segment file cannot carry (its format has no quoting)",
                )
            )
        good &= ~wrong
    problems.sort(key=lambda bad: bad.position)
    dedupe = text.str.lower() if id_type == "email" else text
    return text.to_numpy(dtype=object), good, problems, dedupe.to_numpy(dtype=object)


def _as_text(values: pd.Series, column: str) -> tuple[pd.Series, list[BadIdentifier]]:
    """Stripped text for every value (``""`` where missing or not text), column-wise when possible.

    A column of strings (pandas' ``str`` dtype, or ``object`` holding only strings) and a column of
    integers are converted whole; anything else (numbers from a float column, mixed types, missing
    values) value by value, with the member sync's rules (:func:`~..convert.to_text`).
    """
    dtype = values.dtype
    strings = pd.api.types.is_string_dtype(dtype) and not values.isna().any()
    if strings and (not pd.api.types.is_object_dtype(dtype) or pd.api.types.infer_dtype(values) == "string"):
        return values.str.strip(), []
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return values.astype(str), []
    out: list[str] = []
    problems: list[BadIdentifier] = []
    for position, value in enumerate(values.tolist()):
        try:
            converted: Any = to_text(value)
        except ConversionError as exc:
            problems.append(BadIdentifier(position, None, INVALID_IDENTIFIER, f"{column}: {exc}"))
            out.append("")
            continue
        out.append("" if converted is MISSING else converted)
    return pd.Series(out, index=values.index, dtype=object), problems
