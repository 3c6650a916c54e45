"""A stand-in for the frame's ``SyncRun.execute`` until the frame branch is merged (same order, same calls).

The plug-in (:class:`~.sync.PosSync`) has exactly the methods of the frame's ``Sync`` protocol; this
function calls them in the frame's fixed order on the current ``SyncRun``: validate, rejects, open,
chunks -> plan -> send -> record, after_source, close, the run's files, finish. It goes when the
frame lands (``SyncRun.execute(sync, client, chunks, log)`` is the one loop).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterable
from typing import Any

from airflow_provider_crowdtwist.sync.run import SyncRun


def execute(sync: Any, client: Any, chunks: Iterable[Any], log: logging.Logger | None = None) -> Any:
    sync.config.validate()
    run: SyncRun[Any] = SyncRun(
        client,
        sync.config,
        sync.summary,
        log or logging.getLogger(type(sync).__module__),
        title=sync.title,
        label=sync.label,
        outcomes=sync.outcomes,
    )
    try:
        try:
            sync.open(run)
            for chunk in run.chunks(chunks):
                _deliver(run, sync, sync.plan(chunk))
                if run.stop.is_set():
                    break
            _deliver(run, sync, sync.after_source())
        finally:
            sync.close()
    finally:
        run.close()
    run.finish(sync.violation, sync.notes())
    return run.summary


def _deliver(run: SyncRun[Any], sync: Any, waves: Iterable[Iterable[Any]]) -> None:
    try:
        for wave in waves:
            for item, result in run.send(wave, sync.work, sync.ref, ambiguous=sync.ambiguous):
                kept = sync.recorded(item, result)
                if kept is not None:
                    run.record(kept)
    finally:
        if isinstance(waves, Generator):
            waves.close()
