"""The durable buffer: a push is answered 200 only once its line is fsync'd, with one fsync per batch.

An fsync costs milliseconds, so one per push caps a receiver at a few hundred pushes a second. Instead
every push of a feed joins the batch that is waiting (group commit): a single writer thread per feed
writes the whole batch with one ``write`` and one ``fdatasync`` while the event loop keeps accepting the
next batch, and then releases every push of the batch at once. The more pushes arrive together, the
bigger the batches, so throughput grows with load while the latency stays about one fsync.

Files roll by size and age: a full or old spool file (``*.jsonl.part``) is closed and published whole
(see ``output.py``). Rolling takes several fsyncs (the file, the directories of a rename), and a disk
can stall each for hundreds of milliseconds, so none of it is on the writer's path: one thread per
feed makes the next spool file ahead of time (and fsyncs its directory, so the file itself is durable
before a line in it is acknowledged), another finishes and publishes the old one while the writer goes
on in the new one. They are separate so that a slow upload never delays the next file. The writer
thread does nothing but ``write`` and ``fdatasync``.

A write that fails part-way (a full disk: ``write`` wrote some bytes, then ENOSPC) leaves a torn
batch in the file. Nothing of that batch was acknowledged, and nothing after it may be appended to
the torn bytes (the next acknowledged line would merge with them and could not be read), so the
writer cuts the file back to its last good offset (``ftruncate`` + ``fdatasync``) at once, and again
before the next batch if that cut failed too: no later batch is written, hence none acknowledged,
until the file ends with a complete, acknowledged line. Meanwhile ``/health`` answers 503.

After a crash, start-up publishes what the spool holds: every line that was acknowledged is complete
there; a torn last line was never acknowledged (its fsync never returned) and is cut off, as
CrowdTwist will resend that push. The spare file made ahead of time is empty and is removed.
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
from typing import Any

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


@dataclass
class _SpoolFile:
    path: Path
    fd: int
    size: int = 0  # bytes of complete, fdatasync'd batches: the last good offset
    opened_at: float = 0.0  # when it became the file being written
    torn: bool = False  # a write failed and the bytes after ``size`` are not cut off yet


class FeedLog:
    """The spool file of one feed, its group-commit writer, and its rolling."""

    def __init__(self, feed: str, spool_dir: Path, output: Output, policy: RollPolicy) -> None:
        self.feed = feed
        self.dir = spool_dir / feed
        self.output = output
        self.policy = policy
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"live-push-{feed}")
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"live-push-{feed}-spool")
        self._publisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"live-push-{feed}-publish")
        self._pending: list[bytes] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._current: _SpoolFile | None = None
        self._next: asyncio.Future[_SpoolFile] | None = None  # the spare file, made ahead of time
        self._publishing: asyncio.Future[None] | None = None
        self._retry_publish_at: float | None = None  # set when a publish failed
        self._started = False
        self._closing = False
        self._unpublished: list[Path] = []  # the publisher thread's
        self.files_published = 0
        self.write_error: str | None = None  # the last batch failed (until one succeeds): unhealthy
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
        await loop.run_in_executor(self._publisher, self.recover)
        self._current = await loop.run_in_executor(self._maker, self._create)
        self._current.opened_at = time.monotonic()
        self._next = loop.run_in_executor(self._maker, self._create)
        self._started = True
        self._task = asyncio.create_task(self._committer(), name=f"live-push-{self.feed}-commit")

    async def close(self) -> None:
        """Write what is pending, publish the open file, remove the spare one, stop the threads."""
        self._closing = True
        self._wake()
        if self._task is not None:
            await self._task
        loop = asyncio.get_running_loop()
        try:
            if self._next is not None:
                with contextlib.suppress(OSError):  # no spare, or one recover() removes next time
                    spare = await self._next
                    await loop.run_in_executor(self._maker, self._discard, spare)
            if self._current is not None:
                current, self._current = self._current, None
                await loop.run_in_executor(self._publisher, self._finish, current)
        finally:
            for executor in (self._writer, self._maker, self._publisher):
                executor.shutdown(wait=True)

    # ---- appending -----------------------------------------------------------------------------

    async def append(self, line: bytes) -> None:
        """Returns once ``line`` is durably written; raises if writing failed (the push is not acked)."""
        if not self._started or self._closing:
            raise RuntimeError(f"live push {self.feed}: the buffer is not accepting pushes")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(line)
        self._waiters.append(waiter)
        self._wake()
        await waiter

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _wait_for_pushes(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """Until a push arrives (or ``timeout``, for rolling by age): one future, not a task per wait."""
        self._wakeup = loop.create_future()
        timer = loop.call_later(timeout, self._wake)
        try:
            await self._wakeup
        finally:
            timer.cancel()
            self._wakeup = None

    async def _committer(self) -> None:
        loop = asyncio.get_running_loop()
        tick = max(0.05, min(1.0, self.policy.max_seconds / 4))
        while True:
            if not self._pending:
                if self._closing:
                    return
                await self._wait_for_pushes(loop, tick)
            take = self.policy.max_batch or len(self._pending)
            batch, waiters = self._pending[:take], self._waiters[:take]
            del self._pending[:take], self._waiters[:take]
            if batch:
                assert self._current is not None
                try:
                    await loop.run_in_executor(self._writer, self._write, self._current, b"".join(batch))
                except Exception as exc:  # disk full, I/O error: these pushes get a 503, CrowdTwist retries
                    log.error("live push %s: writing a batch of %d failed: %s", self.feed, len(batch), exc)
                    self.write_error = f"{type(exc).__name__}: {exc}"
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    self.write_error = None
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_result(None)
            if self._roll_due():
                await self._roll(loop)
            if self._retry_publish_at is not None and time.monotonic() >= self._retry_publish_at:
                self._publish_in_background(loop, self._publish_pending)

    def _roll_due(self) -> bool:
        current = self._current
        if current is None or current.size == 0:
            return False
        return (
            current.size >= self.policy.max_bytes
            or time.monotonic() - current.opened_at >= self.policy.max_seconds
        )

    async def _roll(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write on in the spare file from the next batch on; finish and publish the old one meanwhile."""
        if self._next is None:
            self._next = loop.run_in_executor(self._maker, self._create)
        try:
            new = await self._next  # made long ago, unless files fill faster than one can be made
        except Exception as exc:  # the spool refused a new file: write on in this one, try again later
            log.error("live push %s: could not make the next spool file: %s", self.feed, exc)
            self._next = None
            return
        old, self._current = self._current, new
        new.opened_at = time.monotonic()
        self._next = loop.run_in_executor(self._maker, self._create)
        assert old is not None
        self._publish_in_background(loop, self._finish, old)

    def _publish_in_background(self, loop: asyncio.AbstractEventLoop, job: Any, *args: Any) -> None:
        self._retry_publish_at = None
        self._publishing = loop.run_in_executor(self._publisher, job, *args)
        self._publishing.add_done_callback(self._published)

    def _published(self, future: asyncio.Future[None]) -> None:
        exc = None if future.cancelled() else future.exception()
        if exc is not None:  # the file stays in the spool and is published again a tick later
            log.error("live push %s: publishing a file failed: %s", self.feed, exc)
            self._retry_publish_at = time.monotonic() + max(0.05, min(1.0, self.policy.max_seconds / 4))

    # ---- the writer thread ---------------------------------------------------------------------

    def _write(self, spool: _SpoolFile, data: bytes) -> None:
        """Append one batch durably; on any failure the file is cut back to its last good offset."""
        if spool.torn:  # the cut after an earlier failure failed too: no batch goes after torn bytes
            self._cut(spool)
        view = memoryview(data)
        try:
            while view:
                written = os.write(spool.fd, view)
                view = view[written:]
            if self.policy.fsync:
                os.fdatasync(spool.fd)
        except BaseException:
            spool.torn = True
            with contextlib.suppress(OSError):  # else it is retried before the next batch
                self._cut(spool)
            raise
        spool.size += len(data)
        self.batches += 1
        self.lines_written += data.count(b"\n")

    def _cut(self, spool: _SpoolFile) -> None:
        """Truncate to the last good offset, durably (the torn bytes may already be on disk)."""
        os.ftruncate(spool.fd, spool.size)
        if self.policy.fsync:
            os.fdatasync(spool.fd)
        spool.torn = False
        log.warning("live push %s: %s cut back to %d bytes", self.feed, spool.path.name, spool.size)

    # ---- the spool thread and the publisher thread ---------------------------------------------

    def _create(self) -> _SpoolFile:
        """A new, empty spool file whose directory entry is durable (so a line in it can be acked)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / _new_name(self.feed)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o640)
        fsync_dir(self.dir)
        return _SpoolFile(path, fd)

    def _discard(self, spool: _SpoolFile) -> None:
        os.close(spool.fd)
        spool.path.unlink()

    def _finish(self, spool: _SpoolFile) -> None:
        """Close a file the writer has left, and publish it (with any an earlier failure left behind)."""
        if spool.torn:
            self._cut(spool)
        os.fsync(spool.fd)
        os.close(spool.fd)
        if spool.size == 0:
            spool.path.unlink()
        else:
            self._unpublished.append(spool.path)
        self._publish_pending()

    def _publish_pending(self) -> None:
        while self._unpublished:
            self.output.publish(self._unpublished[0], self.feed)
            self._unpublished.pop(0)
            self.files_published += 1
