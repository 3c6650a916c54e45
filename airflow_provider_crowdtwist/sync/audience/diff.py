"""The audience diff: who enters, who leaves, how many stay; the guards that stop a run before it writes.

Why guards: an audience query that breaks (a dropped join, an empty staging table) looks exactly like
"everybody left", and an audience sync would then set the "out" value on a whole program. So a run
stops, before its first write, when

* more than ``max_exit_ratio`` of the audience as last synced would leave (default 0.1), or
* the audience is empty (unless ``max_exit_ratio >= 1``: the user accepts everybody leaving),

naming the count and listing who would leave (the preview).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_provider_crowdtwist.sync.audience.read import Duplicate, unescape_line
from airflow_provider_crowdtwist.sync.audience.state import AudienceState
from airflow_provider_crowdtwist.sync.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
else:
    np = LazyModule("numpy", globals(), "np")

PREVIEW_COUNT = 10


@dataclass(frozen=True)
class Change:
    """One member whose membership changed: ``entering`` (a source row) or leaving (``number`` counts
    the leavers from 1: they are not source rows)."""

    entering: bool
    number: int
    identifier: str
    key: int
    key2: int


@dataclass
class AudienceDiff:
    """What a complete read found. Built by :meth:`~.read.AudienceReader.finish`."""

    state: AudienceState | None
    spool_path: str
    entering_keys: tuple[np.ndarray, np.ndarray]
    entering_rows: np.ndarray
    entering_lines: np.ndarray
    leaving: np.ndarray
    unchanged: int
    duplicates: list[Duplicate] = field(default_factory=list)
    segment_keep: np.ndarray | None = None

    @property
    def entering_count(self) -> int:
        return len(self.entering_rows)

    @property
    def leaving_count(self) -> int:
        return len(self.leaving)

    @property
    def audience_size(self) -> int:
        """Members in the audience now (each counted once)."""
        return self.unchanged + self.entering_count

    @property
    def last_size(self) -> int:
        """Members in the audience as last synced."""
        return len(self.state) if self.state is not None else 0

    def entering(self) -> Iterator[Change]:
        """The members entering, in source order (identifiers streamed from the spool)."""
        wanted = self.entering_lines
        if len(wanted) == 0:
            return
        order = np.argsort(wanted, kind="stable")
        lines = wanted[order].tolist()
        rows = self.entering_rows[order].tolist()
        k1 = self.entering_keys[0][order].tolist()
        k2 = self.entering_keys[1][order].tolist()
        at = 0
        with open(self.spool_path, encoding="utf-8", newline="\n") as spool:
            for number, line in enumerate(spool):
                if number == lines[at]:
                    yield Change(True, rows[at], unescape_line(line[:-1]), k1[at], k2[at])
                    at += 1
                    if at == len(lines):
                        return

    def leaving_members(self, limit: int | None = None) -> Iterator[Change]:
        """The members who left, read from the state file (in key order)."""
        if self.state is None:
            return
        positions = self.leaving if limit is None else np.sort(self.leaving)[:limit]
        for number, (key, key2, identifier) in enumerate(self.state.members_at(positions), start=1):
            yield Change(False, number, identifier, key, key2)

    def segment_identifiers(self) -> Iterator[str]:
        """The whole audience, each member once, in source order: the segment file's rows."""
        keep = self.segment_keep
        if keep is None:
            raise RuntimeError("this audience was read without segment=True")
        flags = keep.tolist()
        with open(self.spool_path, encoding="utf-8", newline="\n") as spool:
            for flag, line in zip(flags, spool, strict=True):
                if flag:
                    yield unescape_line(line[:-1])

    def guard_violation(self, max_exit_ratio: float, rows_read: int) -> str | None:
        """Why this run must not write, or ``None``; names the count and previews who would leave."""
        if self.audience_size == 0 and max_exit_ratio < 1:
            last = self.last_size
            return (
                f"the audience is empty ({rows_read} row(s) read, none naming a member); nothing was sent. "
                + (
                    f"All {last} member(s) of the audience as last synced would leave{self._preview()}. "
                    if last
                    else ""
                )
                + "If the audience really is empty, set max_exit_ratio=1.0 for this run"
            )
        last = self.last_size
        if not last or not self.leaving_count:
            return None
        ratio = self.leaving_count / last
        if ratio > max_exit_ratio:
            return (
                f"{self.leaving_count} of the {last} member(s) in the audience as last synced "
                f"({ratio:.1%}) would leave, more than max_exit_ratio={max_exit_ratio}; nothing was sent"
                f"{self._preview()}. If the audience is right, raise max_exit_ratio for this run"
            )
        return None

    def _preview(self) -> str:
        names = [change.identifier for change in self.leaving_members(limit=PREVIEW_COUNT)]
        more = self.leaving_count - len(names)
        return f" (who would leave: {', '.join(names)}{f' and {more} more' if more > 0 else ''})"
