"""Partitions: one sync split into ``n`` disjoint parts by a stable hash of the member identifier.

Why it is built this way: ``docs/sync-design.md``, section ``sync/partition.py``.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_crowdtwist.sync.convert import MISSING, ConversionError, to_text

#: More partitions than this is a mistake (each is a task holding a worker slot and a connection pool).
MAX_PARTITIONS = 256


class PartitionError(ValueError):
    """A bad ``partition`` setting or a file layout a partitioned run must not use."""


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count`` (0-based): ``Partition(1, 4)`` is the second of four."""

    index: int
    count: int

    def __post_init__(self) -> None:
        for name, value in (("index", self.index), ("count", self.count)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise PartitionError(f"partition must be (index, count) integers, got {name}={value!r}")
        if not 1 <= self.count <= MAX_PARTITIONS:
            raise PartitionError(f"partition count must be from 1 to {MAX_PARTITIONS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise PartitionError(
                f"partition index must be from 0 to count - 1 = {self.count - 1}, got {self.index}"
            )

    @classmethod
    def parse(cls, value: Any) -> Partition | None:
        """``None``, a :class:`Partition`, or ``(i, n)`` as a tuple or list (XCom turns tuples into lists)."""
        if value is None or isinstance(value, Partition):
            return value
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], value[1])
        raise PartitionError(f"partition must be (index, count), e.g. (0, 4), got {value!r}")

    @property
    def label(self) -> str:
        """``part-1-of-4``: how files and logs name the partition."""
        return f"part-{self.index}-of-{self.count}"

    def owns(self, identifier: str | None) -> bool:
        """True if the member with this (normalised) identifier belongs to this partition."""
        if identifier is None:
            return self.index == 0
        return partition_of(identifier, self.count) == self.index

    def share(self, requests_per_minute: int) -> int:
        """This partition's share of the program's cap; 0 (no cap) stays 0."""
        if requests_per_minute <= 0:
            return requests_per_minute
        return max(1, requests_per_minute // self.count)

    def path(self, location: Any) -> Any:
        """``state.sqlite`` -> ``state.part-1-of-4.sqlite``, for a string, ``pathlib`` or object path."""
        if location is None or self.count == 1:
            return location
        return _with_name(location, self._file_name(_name_of(location)))

    def _file_name(self, name: str) -> str:
        stem, dot, ext = name.rpartition(".")
        return f"{stem}.{self.label}.{ext}" if dot and stem else f"{name}.{self.label}"


def active_partition(value: Any) -> Partition | None:
    """``value`` parsed; None when unpartitioned (None, or one partition of one)."""
    part = Partition.parse(value)
    return part if part is not None and part.count > 1 else None


def partition_of(identifier: str, count: int) -> int:
    """The partition of ``identifier`` among ``count``: the same in every process and on every run."""
    digest = hashlib.blake2b(identifier.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def member_key(value: Any, *, lower: bool) -> str | None:
    """The identifier as the mappings read it (``to_text``), emails lower-cased; None when unusable."""
    try:
        text = to_text(value)
    except ConversionError:
        return None
    if text is MISSING:
        return None
    return text.lower() if lower else text


def partitions(count: int) -> list[tuple[int, int]]:
    """``[(0, n), (1, n), ...]``: the argument of ``.expand(partition=...)``."""
    return [(p.index, p.count) for p in (Partition(i, count) for i in range(count))]


def expand_arguments(count: int, **per_program: Sequence[Any]) -> list[dict[str, Any]]:
    """The argument of ``.expand_kwargs(...)``: every program (``crowdtwist_conn_id=[...]`` and any other
    per-program argument list, all the same length) times every partition."""
    lengths = {name: len(values) for name, values in per_program.items()}
    if len(set(lengths.values())) > 1:
        raise PartitionError(f"per-program argument lists must have the same length, got {lengths}")
    names = list(per_program)
    programs = [dict(zip(names, values, strict=True)) for values in zip(*per_program.values(), strict=True)]
    return [{**program, "partition": part} for program in (programs or [{}]) for part in partitions(count)]


def check_layout(location: Any, partition: Partition | None) -> None:
    """Refuse a ledger already kept under another partition layout (docs/scale-out.md).

    Only local ledgers can be listed; for an object-storage ledger the rule is documented instead.
    """
    from airflow_provider_crowdtwist.sync.paths import is_local  # paths is not needed to parse a DAG

    if location is None or not is_local(location):
        return
    folder, name = os.path.split(os.fspath(location))
    folder = folder or "."
    if not os.path.isdir(folder):
        return
    stem, dot, ext = name.rpartition(".")
    prefix, suffix = (stem, "." + ext) if dot and stem else (name, "")
    mine = partition.path(name) if partition is not None else name
    others = []
    for entry in sorted(os.listdir(folder)):
        if entry == mine:
            continue
        is_base = entry == name
        is_part = entry.startswith(prefix + ".part-") and entry.endswith(suffix)
        if is_part and partition is not None and partition.count > 1:
            is_part = not entry.endswith(f"-of-{partition.count}{suffix}")
        if is_base or is_part:
            others.append(entry)
    if others:
        layout = partition.label if partition is not None and partition.count > 1 else "unpartitioned"
        raise PartitionError(
            f"the credit ledger {name!r} exists under another partition layout ({', '.join(others)}) and "
            f"this run is {layout}: credits recorded there would not be seen and could be awarded twice. "
            "Keep the partition count the ledger was written with."
        )


def combine_summaries(summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One summary for the partitions of one sync (their XComs), whatever sync they come from."""
    items = [dict(s) for s in summaries if s]
    combined: dict[str, Any] = {"partitions": len(items)}
    for item in items:
        for key, value in item.items():
            if key in ("partition", "rows_per_second"):
                continue
            if key == "duration_seconds":
                combined[key] = max(float(combined.get(key, 0.0)), float(value or 0.0))
            elif key in ("aborted", "status_reason"):
                reasons = [r for r in (combined.get(key), value) if r]
                combined[key] = "; ".join(str(r) for r in reasons) or None
            elif key in ("status", "previous_status"):  # the sync is as bad as its worst partition
                combined[key] = _worst([combined.get(key), value])
            elif isinstance(value, bool):
                combined[key] = bool(combined.get(key, False)) or value
            elif isinstance(value, int):
                combined[key] = int(combined.get(key, 0)) + value
            elif key == "rate_limit" and isinstance(value, Mapping):
                combined[key] = _merge_rate_limit(combined.get(key), value)
            elif isinstance(value, Mapping):
                merged = combined.setdefault(key, {})
                for name, number in value.items():
                    merged[name] = _add(merged.get(name), number) if name in merged else number
            elif isinstance(value, list):
                combined.setdefault(key, []).extend(value)
            elif isinstance(value, str) or value is None:
                places = combined.setdefault(f"{key}s", [])
                if value:
                    places.append(value)
    duration = float(combined.get("duration_seconds", 0.0))
    outcomes = sum(int(n) for n in dict(combined.get("counts", {})).values())
    combined["rows_per_second"] = round(outcomes / duration, 2) if duration > 0 else 0.0
    return combined


def combined_violation(
    combined: Mapping[str, Any], *, max_failed_rows: int | None = None, max_failed_ratio: float | None = None
) -> str | None:
    """Why the partitions *together* failed the sync's thresholds (same rule as one sync), or None."""
    from airflow_provider_crowdtwist.sync.summary import SyncSummary, threshold_violation

    return threshold_violation(SyncSummary.from_dict(combined), max_failed_rows, max_failed_ratio)


#: What a shared limiter reports for the whole program, alike in every partition: never added up.
_PROGRAM_FIGURES = (
    "configured_requests_per_minute",
    "learned_requests_per_minute",
    "paced_requests_per_minute",
    "rate_decreases",
    "program_pauses",
)


def _merge_rate_limit(merged: Mapping[str, Any] | None, value: Mapping[str, Any]) -> dict[str, Any]:
    """Two partitions' limiter figures as one. Each partition's own limiter (its share of the cap):
    added up. A shared limiter (``shared_limiter`` present): the program's figures are the largest
    seen, the 429s each task saw add up, and ``shared_limiter`` / ``shared_limiter_fallback`` become
    the lists of the distinct texts (the fallback's None when no task fell back)."""
    out = dict(merged or {})
    shared = "shared_limiter" in value or "shared_limiter" in out
    for name, figure in value.items():
        if shared and name in ("shared_limiter", "shared_limiter_fallback"):
            texts = list(out.get(name) or [])
            if figure and figure not in texts:
                texts.append(figure)
            out[name] = texts or None
        elif name not in out:
            out[name] = figure
        elif shared and name in _PROGRAM_FIGURES:
            known = [f for f in (out[name], figure) if f is not None]
            out[name] = max(known) if known else None
        else:
            out[name] = _add(out[name], figure)
    return out


def _worst(statuses: list[Any]) -> str | None:
    from airflow_provider_crowdtwist.sync.summary import STATUSES, worst_status

    return worst_status(statuses) if any(s in STATUSES for s in statuses) else None


def _add(a: Any, b: Any) -> Any:
    """Sum of two figures where either may be unknown (None): the known one, or None."""
    if a is None or b is None:
        return b if a is None else a
    return a + b


def _name_of(location: Any) -> str:
    if isinstance(location, str):
        return posixpath.basename(location.rstrip("/"))
    return str(location.name)


def _with_name(location: Any, name: str) -> Any:
    if isinstance(location, str):
        head = location.rstrip("/")
        return head[: len(head) - len(posixpath.basename(head))] + name
    return location.with_name(name)


__all__ = [
    "MAX_PARTITIONS",
    "Partition",
    "PartitionError",
    "active_partition",
    "check_layout",
    "combine_summaries",
    "combined_violation",
    "expand_arguments",
    "member_key",
    "partition_of",
    "partitions",
]
