"""Reading an audience: who is in it now, against the audience as last synced (the diff).

The source is read to the end before anything is sent, because who *left* is only known then, and
the guards (:mod:`.diff`) must stop a broken query before its first write. Memory stays flat in the
audience's size where it matters, on the rerun where almost nobody changed:

* a member the state already holds costs one bit (``AudienceState.seen``) and a row number in
  ``first_row`` (its first row, for the duplicate message): no identifier is kept;
* a member new to the state (entering) keeps its 128-bit key and row number in arrays, and its
  identifier goes to a spool file on disk, read back once, when the entries are sent;
* for a segment file every identifier goes to the spool (the file lists the whole audience), with a
  keep flag per line: a member listed twice is written once.

A member listed twice counts once: the first row stands for it, the others are ``skipped``
(``duplicate_identifier``) naming that row.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from airflow_provider_crowdtwist.sync.audience.identifiers import (
    BadIdentifier,
    audience_keys,
    check_identifiers,
)
from airflow_provider_crowdtwist.sync.audience.state import AudienceState
from airflow_provider_crowdtwist.sync.lazy import LazyModule

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from airflow_provider_crowdtwist.sync.audience.diff import AudienceDiff
else:
    np = LazyModule("numpy", globals(), "np")
    pd = LazyModule("pandas", globals(), "pd")


@dataclass(frozen=True)
class Duplicate:
    """A row naming a member an earlier row already named: counted once, by ``first_row``."""

    row_number: int
    identifier: str
    first_row: int


def escape_line(text: str) -> str:
    """One identifier as one spool line (a traits-only audience may hold line breaks: kept, escaped)."""
    if "\\" in text or "\n" in text or "\r" in text:
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return text


def unescape_line(line: str) -> str:
    if "\\" not in line:
        return line
    out: list[str] = []
    it = iter(line)
    for char in it:
        if char == "\\":
            nxt = next(it, "")
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
        else:
            out.append(char)
    return "".join(out)


class AudienceReader:
    """Chunks of an audience in, an :class:`~.diff.AudienceDiff` out (:meth:`finish`).

    ``state`` is the audience as last synced (``None``: no state, everybody is entering). ``segment``:
    every identifier is kept for the segment file. ``column`` names the id column in messages.
    """

    def __init__(
        self,
        state: AudienceState | None,
        *,
        id_type: str,
        column: str,
        segment: bool,
        workdir: str | None = None,
    ) -> None:
        self.state = state
        self.id_type = id_type
        self.column = column
        self.segment = segment
        self.duplicates: list[Duplicate] = []
        self.unchanged = 0
        self._first_row = np.zeros(len(state) if state is not None else 0, dtype=np.int64)
        self._new: dict[str, list[np.ndarray]] = {"k1": [], "k2": [], "row": [], "line": []}
        self._keep: list[np.ndarray] = []
        self._lines = 0
        self._dir = tempfile.TemporaryDirectory(prefix="ct-audience-", dir=workdir)
        self.spool_path = os.path.join(self._dir.name, "identifiers.txt")
        self._spool: IO[str] | None = open(  # noqa: SIM115 - closed in finish()/close()
            self.spool_path, "w", encoding="utf-8", newline="\n"
        )

    def add(self, values: pd.Series, row_numbers: np.ndarray) -> list[tuple[int, BadIdentifier]]:
        """Take one chunk's id column and the source row numbers of its rows; return the bad rows."""
        text, good, problems, dedupe = check_identifiers(
            values, id_type=self.id_type, column=self.column, segment=self.segment
        )
        bad = [(int(row_numbers[p.position]), p) for p in problems]
        ids = text[good]
        rows = np.asarray(row_numbers, dtype=np.int64)[good]
        if len(ids) == 0:
            return bad
        k1, k2 = audience_keys(dedupe[good])
        pos = np.full(len(ids), -1, dtype=np.int64) if self.state is None else self.state.lookup(k1, k2)
        known = pos >= 0
        keep = np.ones(len(ids), dtype=bool)
        if known.any():
            keep[known] = self._known(pos[known], rows[known], ids[known])
        new = ~known
        first_line = self._lines
        if self.segment:
            self._write(ids.tolist())
            self._keep.append(keep)
            lines = np.arange(first_line, first_line + len(ids), dtype=np.int64)[new]
        else:
            chosen = ids[new].tolist()
            self._write(chosen)
            lines = np.arange(first_line, first_line + len(chosen), dtype=np.int64)
        if new.any():
            self._new["k1"].append(k1[new])
            self._new["k2"].append(k2[new])
            self._new["row"].append(rows[new])
            self._new["line"].append(lines)
        return bad

    def _known(self, pos: np.ndarray, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Members the state holds: the first row of each is ``unchanged``, later rows duplicates."""
        assert self.state is not None
        _, first_index = np.unique(pos, return_index=True)
        first_in_chunk = np.zeros(len(pos), dtype=bool)
        first_in_chunk[first_index] = True
        fresh = first_in_chunk & ~self.state.seen[pos]
        fresh_pos = pos[fresh]
        self._first_row[fresh_pos] = rows[fresh]
        self.state.seen[fresh_pos] = True
        self.unchanged += int(np.count_nonzero(fresh))
        for index in np.flatnonzero(~fresh).tolist():
            first_row = int(self._first_row[pos[index]])
            self.duplicates.append(Duplicate(int(rows[index]), str(ids[index]), first_row))
        return fresh

    def _write(self, identifiers: list[str]) -> None:
        assert self._spool is not None
        if identifiers:
            self._spool.write("\n".join(escape_line(i) for i in identifiers))
            self._spool.write("\n")
        self._lines += len(identifiers)

    def finish(self) -> AudienceDiff:
        """The source was read to the end: settle duplicates among new members; the diff."""
        from airflow_provider_crowdtwist.sync.audience.diff import AudienceDiff

        assert self._spool is not None
        self._spool.close()
        self._spool = None
        k1, k2, rows, lines = (
            np.concatenate(self._new[name]) if self._new[name] else np.zeros(0, dtype=np.int64)
            for name in ("k1", "k2", "row", "line")
        )
        first = np.ones(len(k1), dtype=bool)
        if len(k1) > 1:
            order = np.lexsort((rows, k2, k1))  # by member, then by row: the first row stands for it
            starts = np.ones(len(order), dtype=bool)
            starts[1:] = (k1[order][1:] != k1[order][:-1]) | (k2[order][1:] != k2[order][:-1])
            if not starts.all():
                group = np.cumsum(starts) - 1
                group_first_row = rows[order][starts]
                later = np.flatnonzero(~starts)
                first[order[later]] = False
                self._new_duplicates(order[later], group_first_row[group[later]], rows, lines)
        keep = np.concatenate(self._keep) if self._keep else np.zeros(0, dtype=bool)
        if self.segment:
            keep[lines[~first]] = False
        self.duplicates.sort(key=lambda d: d.row_number)
        leaving = self.state.unseen() if self.state is not None else np.zeros(0, dtype=np.int64)
        return AudienceDiff(
            state=self.state,
            spool_path=self.spool_path,
            entering_keys=(k1[first], k2[first]),
            entering_rows=rows[first],
            entering_lines=lines[first],
            leaving=leaving,
            unchanged=self.unchanged,
            duplicates=self.duplicates,
            segment_keep=keep if self.segment else None,
        )

    def _new_duplicates(
        self, index: np.ndarray, first_rows: np.ndarray, rows: np.ndarray, lines: np.ndarray
    ) -> None:
        """Members new to the state listed more than once: their identifiers read back from the spool."""
        wanted = dict(
            zip(
                lines[index].tolist(),
                zip(rows[index].tolist(), first_rows.tolist(), strict=True),
                strict=True,
            )
        )
        with open(self.spool_path, encoding="utf-8", newline="\n") as spool:
            for number, line in enumerate(spool):
                if number in wanted:
                    row, first_row = wanted[number]
                    self.duplicates.append(Duplicate(row, unescape_line(line[:-1]), first_row))

    def close(self) -> None:
        """Remove the spool (every exit path)."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._dir.cleanup()
