"""The settings every sync has (:class:`RunConfig`), checked field by field against their types.

A new setting is a typed field of a sync's config; :func:`validate_config` reads its annotation
(``Literal`` choices, ``bool``, ``int``, ``float``, ``str``, ``X | None``), so it needs no checking code.
"""

from __future__ import annotations

import dataclasses
import threading
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from airflow_provider_crowdtwist.sync.partition import Partition, active_partition
from airflow_provider_crowdtwist.sync.sender import check_max_workers
from airflow_provider_crowdtwist.sync.sources import OnBadLines
from airflow_provider_crowdtwist.sync.summary import (
    DEFAULT_DEGRADED_REJECTED_RATIO,
    SyncConfigError,
    check_ratio,
    validate_thresholds,
)

_C = TypeVar("_C", bound="RunConfig")


@dataclass(kw_only=True)
class RunConfig:
    """Settings every sync has. A sync's config subclasses it and adds its own typed fields.

    ``max_failed_rows`` and ``max_failed_ratio`` both ``None`` means: fail on any failed row,
    tolerate rejected rows. ``stop_event``: set it from another thread (the operator's ``on_kill``)
    to stop sending; rows not sent end as ``failed`` ("not sent") and the report is still written.
    ``on_bad_lines``: a line of a CSV / JSON-lines source that cannot be read fails the sync naming
    the line (``fail``), or is a rejected row and the rest of the file is synced (``reject``).
    ``fail_when_nothing_landed``: a run in which every row (at least one) was rejected or failed
    fails, whatever the thresholds say. ``degraded_rejected_ratio``: a run that succeeds with more than
    this share of its rows rejected (or with failed rows tolerated) has the status ``degraded``
    (``sync/summary.py`` ``judge_run``); ``None`` turns the ratio off.
    """

    max_workers: int = 16
    max_failed_rows: int | None = None
    max_failed_ratio: float | None = None
    rejects_path: Any = None
    dry_run: bool = False
    progress_interval: float = 10.0
    stop_event: threading.Event | None = None
    on_bad_lines: OnBadLines = "fail"
    #: ``(index, count)``: this run syncs only the members that hash to ``index`` of ``count``, with its
    #: own state / ledger / rejects files (docs/scale-out.md). None: the whole source.
    partition: Any = None
    #: What the identifiers are (``email``, ``third_party_id``...); None: the connection's default,
    #: resolved once by :meth:`SyncRun.execute` (:meth:`resolved`).
    id_type: str | None = None
    #: The sync log (``sync/synclog.py``), built by the operator from ``log_conn_id``; None: no log.
    sync_log: Any = None
    #: Where the sample of API calls goes (``sync/calls.py``); None: no sample.
    calls_path: Any = None
    calls_per_class: int = 10
    calls_pii: bool = False
    degraded_rejected_ratio: float | None = DEFAULT_DEGRADED_REJECTED_RATIO
    fail_when_nothing_landed: bool = True

    def resolved(self: _C, default_id_type: str | None) -> _C:
        """This config with ``id_type`` set (None takes ``default_id_type``, else ``email``)."""
        return dataclasses.replace(self, id_type=self.id_type or default_id_type or "email")

    @property
    def part(self) -> Partition | None:
        """``partition`` as a :class:`Partition` (None when unpartitioned); checked by :meth:`validate`."""
        return active_partition(self.partition)

    def partition_path(self, location: Any) -> Any:
        """This partition's file for ``location`` (``name.part-i-of-n.ext``); unchanged when unpartitioned."""
        part = self.part
        return part.path(location) if part is not None else location

    def validate(self) -> None:
        """The shared rules, each field against its type (:func:`validate_config`), the sync's own."""
        for name, check in (
            ("max_workers", lambda: check_max_workers(self.max_workers)),
            ("max_failed_rows", lambda: validate_thresholds(self.max_failed_rows, None)),
            ("max_failed_ratio", lambda: validate_thresholds(None, self.max_failed_ratio)),
            ("partition", lambda: Partition.parse(self.partition)),
            ("degraded_rejected_ratio", self._check_degraded_ratio),
        ):
            try:
                check()
            except ValueError as exc:
                raise SyncConfigError(str(exc), name) from None
        validate_config(self)
        if self.calls_per_class < 0:
            problem = f"calls_per_class must be >= 0, got {self.calls_per_class!r}"
            raise SyncConfigError(problem, "calls_per_class")
        if self.progress_interval <= 0:
            raise SyncConfigError(
                f"progress_interval must be > 0 seconds, got {self.progress_interval!r}", "progress_interval"
            )
        self.validate_sync()

    def _check_degraded_ratio(self) -> None:
        check_ratio("degraded_rejected_ratio", self.degraded_rejected_ratio)

    def validate_sync(self) -> None:
        """The sync's own checks (mapping arguments...); raise :class:`SyncConfigError`."""


def validate_config(config: Any) -> None:
    """Check each dataclass field of ``config`` against its annotation; raise naming the field."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = _type_problem(hints.get(f.name, Any), value)
        if problem is not None and problem.startswith("one of "):
            raise SyncConfigError(f"{f.name} {value!r} is not {problem}", f.name)
        if problem is not None:
            raise SyncConfigError(f"{f.name} must be {problem}, got {value!r}", f.name)


def _type_problem(hint: Any, value: Any) -> str | None:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        problems = [_type_problem(h, value) for h in options if h is not type(None)]
        if any(p is None for p in problems):
            return None
        return " or ".join(p for p in problems if p) + (" or None" if type(None) in options else "")
    if origin is Literal:
        choices = typing.get_args(hint)
        return None if value in choices else "one of " + ", ".join(str(c) for c in choices)
    if hint is bool:
        return None if isinstance(value, bool) else "True or False"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    return None
