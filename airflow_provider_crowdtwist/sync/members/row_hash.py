"""Hashes of source rows for the member state: who a row is (its key) and what it says (its fingerprint).

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/row_hash.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from airflow_provider_crowdtwist.sync.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:  # imported on first use: parsing a DAG must not pay for numpy/pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")
    pd = LazyModule("pandas", globals(), "pd")


#: pandas' SipHash takes a 16-byte key given as text; these two give the 128-bit member key.
_KEY_HASH_KEYS = ("ct-member-key-k1", "ct-member-key-k2")
#: Column kinds whose values print exactly (``astype(str)`` round-trips them): hashed column-wise.
_TEXT_INFERRED = frozenset({"string", "empty"})


def member_keys(dedupe_keys: Sequence[str] | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The 128-bit keys of ``dedupe_keys`` as two ``int64`` arrays (SQLite stores signed 64-bit)."""
    series = dedupe_keys if isinstance(dedupe_keys, pd.Series) else pd.Series(list(dedupe_keys), dtype=object)
    k1 = pd.util.hash_pandas_object(series, index=False, hash_key=_KEY_HASH_KEYS[0]).to_numpy()
    k2 = pd.util.hash_pandas_object(series, index=False, hash_key=_KEY_HASH_KEYS[1]).to_numpy()
    return k1.view(np.int64), k2.view(np.int64)


def derive_key(secret: bytes, label: str) -> bytes:
    """A 32-byte key for one purpose (``label``) from the state's secret."""
    return hmac.new(secret, label.encode("utf-8"), hashlib.sha256).digest()


def _pandas_key(key: bytes, domain: str) -> str:
    """A 16-character SipHash key for pandas (96 bits of ``key``, bound to ``domain``)."""
    digest = hmac.new(key, domain.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest[:12]).decode("ascii")


def _hashable(column: pd.Series) -> pd.Series | None:
    """``column`` as values that hash exactly, or ``None`` when it holds values that are not plain."""
    dtype = column.dtype
    if pd.api.types.is_object_dtype(dtype):
        return column if pd.api.types.infer_dtype(column, skipna=True) in _TEXT_INFERRED else None
    if pd.api.types.is_string_dtype(dtype):
        return column
    if (
        pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
    ):
        # Numbers hash unkeyed in pandas; as text they take the key like every other column.
        return column.astype(str).where(column.notna(), None)
    return None


def chunk_fingerprints(
    chunk: pd.DataFrame, positions: Sequence[int], key: bytes, domain: str
) -> np.ndarray | None:
    """Keyed fingerprints (``int64``) of the columns at ``positions`` of every row, or ``None``."""
    parts: dict[str, pd.Series] = {}
    described: list[str] = []
    for i, pos in enumerate(positions):
        column = chunk.iloc[:, pos]
        hashable = _hashable(column)
        if hashable is None:
            return None
        parts[str(i)] = hashable.reset_index(drop=True)
        described.append(f"{chunk.columns[pos]}:{column.dtype}")
    frame = pd.DataFrame(parts)
    pandas_key = _pandas_key(key, domain + "\x00" + "\x00".join(described))
    hashed = pd.util.hash_pandas_object(frame, index=False, hash_key=pandas_key).to_numpy()
    return hashed.view(np.int64)


def payload_fingerprint(payload_json: str, key: bytes) -> int:
    """Keyed fingerprint of one payload's canonical JSON (rows whose columns cannot be hashed whole)."""
    digest = hashlib.blake2b(payload_json.encode("utf-8"), digest_size=8, key=key[:64]).digest()
    return int.from_bytes(digest, "little", signed=True)
