"""Reading member rows into the spool: map and validate, or -- with a state -- skip what did not change.

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/read.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError, to_text
from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.members.mapping import MappedRow, MemberMapping
from airflow_provider_crowdtwist.sync.members.row_hash import (
    chunk_fingerprints,
    member_keys,
    payload_fingerprint,
)
from airflow_provider_crowdtwist.sync.members.spool import RowState, Spool
from airflow_provider_crowdtwist.sync.members.state import ACTIVE, DEACTIVATED, MemberState
from airflow_provider_crowdtwist.sync.outcomes import RowResult
from airflow_provider_crowdtwist.sync.sources import chunk_records

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:  # imported on first use: parsing a DAG must not pay for numpy/pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")
    pd = LazyModule("pandas", globals(), "pd")


#: Bumped when the meaning of a fingerprint changes: every row is then sent once more.
FINGERPRINT_VERSION = "1"


def canonical_json(payload: dict) -> str:
    """The payload as the spool stores it and the fingerprint of a row hashes it (sorted keys)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def mapping_domain(mapping: MemberMapping) -> str:
    """Everything besides the row that decides its payload: part of every fingerprint's key."""
    return json.dumps(
        {
            "v": FINGERPRINT_VERSION,
            "id_column": mapping.id_column,
            "id_type": mapping.id_type,
            "field_mapping": sorted((mapping.field_mapping or {}).items()),
            "unmapped_columns": mapping.unmapped_columns,
            "mode": mapping.mode,
            "null_values": mapping.null_values,
        },
        sort_keys=True,
    )


@dataclass
class MemberReader:
    """Reads chunks into ``spool``; ``reject`` receives each row rejected by mapping or validation."""

    mapping: MemberMapping
    spool: Spool
    reject: Callable[[RowResult], None]
    take: Callable[[pd.DataFrame], tuple[pd.DataFrame, np.ndarray]]
    state: MemberState | None = None
    full_refresh: bool = False

    def __post_init__(self) -> None:
        self._domain = mapping_domain(self.mapping)

    def read(self, chunk: pd.DataFrame) -> None:
        """Read one chunk: its columns checked (even when empty), its rows spooled or rejected."""
        plan = self.mapping.plan([str(c) for c in chunk.columns])
        chunk, numbers = self.take(chunk)
        if len(chunk) == 0:
            return
        if self.state is None:
            self._read_plain(chunk, numbers, plan)
        else:
            self._read_with_state(chunk, numbers, plan, self.state)

    # ------------------------------------------------------------------ without a state

    def _read_plain(self, chunk: pd.DataFrame, numbers: np.ndarray, plan: Any) -> None:
        batch: list[tuple[int, str, str, str]] = []
        for number, record in zip(numbers.tolist(), chunk_records(chunk), strict=True):
            mapped = self.mapping.map_record(number, record, plan)
            if isinstance(mapped, MappedRow):
                batch.append(
                    (mapped.row_number, mapped.dedupe_key, mapped.identifier, canonical_json(mapped.payload))
                )
            else:
                self.reject(mapped)
        self.spool.add_many(batch)

    # ------------------------------------------------------------------ with a state

    def _read_with_state(
        self, chunk: pd.DataFrame, numbers: np.ndarray, plan: Any, state: MemberState
    ) -> None:
        columns = [str(c) for c in chunk.columns]
        id_position = columns.index(self.mapping.id_column)
        dedupe = dedupe_keys(chunk.iloc[:, id_position], self.mapping)
        has_id = dedupe.notna().to_numpy()
        keys, keys2 = member_keys(dedupe.fillna(""))
        positions = np.where(has_id, state.lookup(keys, keys2), -1)
        state.mark_seen(positions)
        known = positions >= 0
        safe = np.where(known, positions, 0)
        stored = np.where(known, state.fingerprints[safe] if len(state) else 0, 0)
        status = np.where(known, state.statuses[safe] if len(state) else ACTIVE, ACTIVE)
        active = known & (status == ACTIVE)
        judge = not (self.full_refresh or state.key_changed)

        used = [id_position, *sorted({columns.index(t.column) for t in plan.targets} - {id_position})]
        fingerprints = chunk_fingerprints(chunk, used, state.fingerprint_key, self._domain)
        if fingerprints is not None and judge:
            unchanged = active & (fingerprints == stored)
            self.spool.add_unchanged(numbers[unchanged], keys[unchanged], keys2[unchanged])
            todo = np.flatnonzero(~unchanged)
        else:
            todo = np.arange(len(chunk))
        if len(todo) == 0:
            return

        batch: list[tuple[int, str, str, str]] = []
        kept: list[int] = []
        prints: list[int] = []
        late_unchanged: list[int] = []
        rows = chunk.iloc[todo] if len(todo) < len(chunk) else chunk
        for i, record in zip(todo.tolist(), chunk_records(rows), strict=True):
            mapped = self.mapping.map_record(int(numbers[i]), record, plan)
            if not isinstance(mapped, MappedRow):
                self.reject(mapped)
                continue
            payload_json = canonical_json(mapped.payload)
            if fingerprints is None:  # columns that do not hash whole: fingerprint the payload
                fingerprint = payload_fingerprint(payload_json, state.fingerprint_key)
                if judge and active[i] and fingerprint == stored[i]:
                    late_unchanged.append(i)
                    continue
            else:
                fingerprint = int(fingerprints[i])
            batch.append((mapped.row_number, mapped.dedupe_key, mapped.identifier, payload_json))
            kept.append(i)
            prints.append(fingerprint)
        if late_unchanged:
            index = np.asarray(late_unchanged, dtype=np.int64)
            self.spool.add_unchanged(numbers[index], keys[index], keys2[index])
        index = np.asarray(kept, dtype=np.int64)
        self.spool.add_many(
            batch,
            RowState(
                keys=keys[index],
                keys2=keys2[index],
                fingerprints=np.asarray(prints, dtype=np.int64),
                known=known[index],
                reactivate=known[index] & (status[index] == DEACTIVATED),
            ),
        )


#: What Python's ``str.strip()`` removes from ASCII text (``str.isspace`` in the ASCII range).
_ASCII_WHITESPACE = " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def dedupe_keys(column: pd.Series, mapping: MemberMapping) -> pd.Series:
    """Each row's dedupe key exactly as the mapping computes it (``None``/NaN: no usable identifier)."""
    if pd.api.types.is_string_dtype(column.dtype) and not pd.api.types.is_object_dtype(column.dtype):
        ascii_only = column.str.isascii().fillna(True).astype(bool).all()
        if ascii_only:
            text = column.str.strip(_ASCII_WHITESPACE)
            text = text.where(text.str.len() > 0)
            return text.str.lower() if mapping.id_type == "email" else text
    keys: list[str | None] = []
    for value in column.to_numpy(dtype=object):
        try:
            plain = to_text(value)
        except ConversionError:
            plain = MISSING
        keys.append(None if plain is MISSING else mapping.dedupe_key(plain))
    return pd.Series(keys, dtype=object)
