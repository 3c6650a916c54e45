"""The list of who entered and who left: a JSON-lines file beside the rejects file, or the task log.

Why a list and not just counts: "who would leave" is the question a user must answer before raising
``max_exit_ratio`` after the guard stopped a run, and "who entered" is what a dry run is for. A line:
``identifier``, ``change`` (``enter`` / ``exit``), ``outcome`` (what happened; in a dry run what a real
run would do; ``null`` when the guard stopped the run), ``message``, ``dry_run``. The file is
``x.audience.jsonl`` beside ``rejects_path=x.jsonl``; without ``rejects_path`` the identifiers are
logged, 50 a line, up to 1,000 of each kind (a first run of a million members must not flood the
task log; the count of the rest is logged).
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

from airflow_provider_crowdtwist.sync.paths import WorkingCopy

SUFFIX = ".audience.jsonl"
_LOGGED_PER_LINE = 50
_LOGGED_LINES = 20


def changes_target(rejects_path: Any) -> Any:
    """``x.jsonl`` -> ``x.audience.jsonl`` (a string or a path-like with ``with_name``)."""
    if isinstance(rejects_path, str):
        root, ext = os.path.splitext(rejects_path)
        return (root if ext else rejects_path) + SUFFIX
    name = getattr(rejects_path, "name", "")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return rejects_path.with_name(stem + SUFFIX)


class ChangesList:
    """Entries and exits of one run, as they are decided (a context manager)."""

    def __init__(self, rejects_path: Any, log: Any, *, dry_run: bool) -> None:
        self.log = log
        self.dry_run = dry_run
        self.count = 0
        self._lines: dict[str, list[str]] = {"enter": [], "exit": []}
        self._logged: dict[str, int] = {"enter": 0, "exit": 0}
        self._unlogged: dict[str, int] = {"enter": 0, "exit": 0}
        self._copy: WorkingCopy | None = None
        self._handle: IO[str] | None = None
        self.location: str | None = None
        if rejects_path:
            self._copy = WorkingCopy(changes_target(rejects_path), name="audience.jsonl", download=False)
            self.location = self._copy.location
            self._handle = open(self._copy.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def add(self, identifier: str, change: str, outcome: Any = None, message: str | None = None) -> None:
        self.count += 1
        if self._handle is not None:
            record = {
                "identifier": identifier,
                "change": change,
                "outcome": None if outcome is None else str(outcome),
                "message": message,
                "dry_run": self.dry_run,
            }
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            return
        if self._logged[change] >= _LOGGED_LINES:
            self._unlogged[change] += 1
            return
        line = self._lines[change]
        line.append(identifier)
        if len(line) == _LOGGED_PER_LINE:
            self._log(change)

    def _log(self, change: str) -> None:
        names = self._lines[change]
        if not names:
            return
        verb = {"enter": "entering", "exit": "leaving"}[change]
        prefix = "would be " if self.dry_run else ""
        self.log.info("Members %s%s the audience: %s", prefix, verb, ", ".join(names))
        self._lines[change] = []
        self._logged[change] += 1

    def close(self) -> None:
        for change in self._lines:
            self._log(change)
            if self._unlogged[change]:
                self.log.info(
                    "... and %d more %s (set rejects_path for the full list).",
                    self._unlogged[change],
                    {"enter": "entering", "exit": "leaving"}[change],
                )
        if self._handle is not None and self._copy is not None:
            self._handle.close()
            self._handle = None
            try:
                self._copy.upload()
            finally:
                self._copy.close()

    def __enter__(self) -> ChangesList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
