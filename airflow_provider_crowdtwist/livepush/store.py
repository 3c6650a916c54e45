"""The durable buffer: a push is answered 200 only once its line is fsync'd, with one fsync per batch.

An fsync costs milliseconds, so one per push caps a receiver at a few hundred pushes a second. Instead
every push of a feed joins the batch that is waiting (group commit): a single writer thread per feed
writes the whole batch with one ``write`` and one ``fdatasync`` while the event loop keeps accepting the
next batch, and then releases every push of the batch at once. The more pushes arrive together, the
bigger the batches, so throughput grows with load while the latency stays about one fsync.

Files roll by size and age: a full or old spool file (``*.jsonl.part``) is closed and published whole
(see ``output.py``). After a crash, start-up publishes what the spool holds: every line that was
acknowledged is complete there; a torn last line was never acknowledged (its fsync never returned) and
is cut off, as CrowdTwist will resend that push.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from airflow_provider_crowdtwist.livepush.output import Output, fsync_dir

log = logging.getLogger(__name__)
PART_SUFFIX = ".jsonl.part"


@dataclass(frozen=True)
class RollPolicy:
    max_bytes: int = 64 * 1024 * 1024
    max_seconds: float = 60.0
    fsync: bool = True  # False only for the benchmark's baseline: acknowledgements are then not durable
    max_batch: int = 0  # pushes per fsync; 0 = all that wait (group commit); 1 = the benchmark's baseline


def _new_name(feed: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{feed}-{stamp}-{secrets.token_hex(4)}{PART_SUFFIX}"


def recover_part(path: Path) -> int:
    """Cut a spool file back to its last complete line; returns the bytes kept."""
    with open(path, "r+b") as fh:
        data = fh.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
    return keep


class FeedLog:
    """The spool file of one feed, its group-commit writer, and its rolling."""

    def __init__(self, feed: str, spool_dir: Path, output: Output, policy: RollPolicy) -> None:
        self.feed = feed
        self.dir = spool_dir / feed
        self.output = output
        self.policy = policy
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"live-push-{feed}")
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened_at = 0.0
        self._closing = False
        self._unpublished: list[Path] = []
        self.files_published = 0
        self.batches = 0
        self.lines_written = 0

    # ---- lifecycle -----------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Publish every spool file a previous run left behind (after a crash or kill)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        published = []
        for part in sorted(self.dir.glob(f"*{PART_SUFFIX}")):
            if recover_part(part) == 0:
                part.unlink()
                continue
            published.append(self.output.publish(part, self.feed))
            self.files_published += 1
        if published:
            log.info("live push %s: published %d file(s) left in the spool", self.feed, len(published))
        return published

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.recover)
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._committer(), name=f"live-push-{self.feed}-commit")

    async def close(self) -> None:
        """Write what is pending, publish the open file, stop the writer."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self._roll)
        self._executor.shutdown(wait=True)

    # ---- appending -----------------------------------------------------------------------------

    async def append(self, line: bytes) -> None:
        """Returns once ``line`` is durably written; raises if writing failed (the push is not acked)."""
        if self._wakeup is None or self._closing:
            raise RuntimeError(f"live push {self.feed}: the buffer is not accepting pushes")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(line)
        self._waiters.append(waiter)
        self._wakeup.set()
        await waiter

    async def _committer(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        tick = max(0.05, min(1.0, self.policy.max_seconds / 4))
        while True:
            if not self._pending:
                if self._closing:
                    return
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), tick)
                self._wakeup.clear()
            take = self.policy.max_batch or len(self._pending)
            batch, waiters = self._pending[:take], self._waiters[:take]
            del self._pending[:take], self._waiters[:take]
            if batch:
                try:
                    await loop.run_in_executor(self._executor, self._write, b"".join(batch))
                except Exception as exc:  # disk full, I/O error: these pushes get a 503, CrowdTwist retries
                    log.error("live push %s: writing a batch of %d failed: %s", self.feed, len(batch), exc)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
            if self._roll_due():
                try:
                    await loop.run_in_executor(self._executor, self._roll)
                except Exception as exc:  # publishing failed: the file stays in the spool, retried next roll
                    log.error("live push %s: publishing a file failed: %s", self.feed, exc)

    # ---- the writer thread ---------------------------------------------------------------------

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._path = self.dir / _new_name(self.feed)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        fsync_dir(self.dir)
        self._size = 0
        self._opened_at = time.monotonic()

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.policy.fsync:
            os.fdatasync(self._fd)
        self._size += len(data)
        self.batches += 1
        self.lines_written += data.count(b"\n")

    def _roll_due(self) -> bool:
        if self._unpublished:
            return True
        if self._fd is None:
            return False
        return (
            self._size >= self.policy.max_bytes
            or time.monotonic() - self._opened_at >= self.policy.max_seconds
        )

    def _roll(self) -> None:
        if self._fd is not None and self._path is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            path, size = self._path, self._size
            self._fd, self._path, self._size = None, None, 0
            if size == 0:
                path.unlink()
            else:
                self._unpublished.append(path)
        while self._unpublished:
            self.output.publish(self._unpublished[0], self.feed)
            self._unpublished.pop(0)
            self.files_published += 1
