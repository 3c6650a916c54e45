"""Members who left the source: who they are, the guard, the preview, and the request that removes one.

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/removal.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sync.lazy import LazyModule
from airflow_provider_crowdtwist.sync.members.state import DEACTIVATED, MemberState
from airflow_provider_crowdtwist.sync.paths import WorkingCopy

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: parsing a DAG must not pay for numpy/pandas (see sync/lazy.py)
    np = LazyModule("numpy", globals(), "np")


ON_REMOVED = ("ignore", "deactivate", "delete")
PREVIEW_SUFFIX = ".removals.jsonl"
_LOGGED_PER_LINE = 50


@dataclass(frozen=True)
class RemovedMember:
    """A member to remove. ``number`` counts removals from 1 (they are not source rows)."""

    number: int
    identifier: str
    key: int
    key2: int
    deactivated: bool


def removed_members(state: MemberState, on_removed: str) -> tuple[int, Callable[[], Iterator[RemovedMember]]]:
    """How many members left the source, and a way to list them (read from the state file lazily)."""
    positions = state.unseen(include_deactivated=on_removed == "delete")

    def members() -> Iterator[RemovedMember]:
        for number, (key, key2, identifier, status) in enumerate(state.members_at(positions), start=1):
            yield RemovedMember(number, identifier, key, key2, status == DEACTIVATED)

    return len(positions), members


def guard_violation(
    count: int,
    state_size: int,
    rows_read: int,
    *,
    on_removed: str,
    max_removed_ratio: float,
    allow_empty_source_removal: bool,
) -> str | None:
    """Why this run must not remove ``count`` members, or ``None``."""
    if count == 0:
        return None
    if rows_read == 0 and not allow_empty_source_removal:
        return (
            f"the source returned 0 rows, so on_removed={on_removed!r} would {on_removed} all {count} "
            "member(s) the state knows; an empty source removes nothing unless "
            "allow_empty_source_removal=True (and max_removed_ratio allows it)"
        )
    ratio = count / state_size if state_size else 1.0
    if ratio > max_removed_ratio:
        return (
            f"{count} of the {state_size} member(s) in the state ({ratio:.1%}) are no longer in the "
            f"source, more than max_removed_ratio={max_removed_ratio}; nothing was sent. If the "
            "source is right, raise max_removed_ratio for this run"
        )
    return None


def preview_target(rejects_path: Any) -> Any:
    """Where the dry-run preview goes: beside the rejects file (``x.jsonl`` -> ``x.removals.jsonl``)."""
    if isinstance(rejects_path, str):
        root, ext = os.path.splitext(rejects_path)
        return (root if ext else rejects_path) + PREVIEW_SUFFIX
    name = getattr(rejects_path, "name", "")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return rejects_path.with_name(stem + PREVIEW_SUFFIX)


class RemovalsList:
    """The members a run removed -- or a dry run would remove -- one JSON line each, in a file beside the
    rejects file (``x.jsonl`` -> ``x.removals.jsonl``); without ``rejects_path``, in the task log."""

    def __init__(self, rejects_path: Any, action: str, log: Any, *, dry_run: bool) -> None:
        self.action = action
        self.log = log
        self.dry_run = dry_run
        self.count = 0
        self._line: list[str] = []
        self._copy: WorkingCopy | None = None
        self._handle: IO[str] | None = None
        self.location: str | None = None
        if rejects_path:
            self._copy = WorkingCopy(preview_target(rejects_path), name="removals.jsonl", download=False)
            self.location = self._copy.location
            self._handle = open(self._copy.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, member: RemovedMember, outcome: Any = None, message: str | None = None) -> None:
        """List ``member`` with what happened to it (``outcome``: an outcome or ``None``)."""
        self.count += 1
        if self._handle is not None:
            record = {
                "identifier": member.identifier,
                "action": self.action,
                "outcome": None if outcome is None else str(outcome),
                "message": message,
                "deactivated_before": member.deactivated,
                "dry_run": self.dry_run,
            }
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        self._line.append(member.identifier)
        if len(self._line) == _LOGGED_PER_LINE:
            self._log_line()

    def _log_line(self) -> None:
        verb = f"would {self.action}" if self.dry_run else f"{self.action}d"
        self.log.info("Members who left the source, %s: %s", verb, ", ".join(self._line))
        self._line = []

    def close(self) -> None:
        """Write out the list (upload it, for object storage)."""
        if self._line:
            self._log_line()
        if self._handle is not None and self._copy is not None:
            self._handle.close()
            self._handle = None
            try:
                self._copy.upload()
            finally:
                self._copy.close()

    def __enter__(self) -> RemovalsList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def removal_body(remove_points: bool) -> dict[str, int]:
    """The PUT body that deactivates a member (``remove_points`` is a 0/1 flag sent with it)."""
    return {"is_active": 0, "remove_points": 1} if remove_points else {"is_active": 0}


def count_unseen(state: MemberState) -> int:
    """Active members the source did not mention (for the log of an ``ignore`` run)."""
    return int(np.count_nonzero(~state.seen & (state.statuses != DEACTIVATED)))
