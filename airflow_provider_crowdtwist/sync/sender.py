"""The concurrent sender: run one function over many items with a bounded number in flight.

Why it is built this way: ``docs/sync-design.md``, section ``sync/sender.py``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class SendFailure(Generic[T]):
    """What :func:`send_all` yields in place of a result when ``work`` raised."""

    __slots__ = ("error", "item")

    def __init__(self, item: T, error: BaseException) -> None:
        self.item = item
        self.error = error

    def __repr__(self) -> str:
        return f"SendFailure({type(self.error).__name__}: {self.error})"


#: More threads than this only queue on the rate limiter: at CrowdTwist's 10,000/min cap even a 1.5 s
#: answer needs ~42 requests in flight.
MAX_WORKERS = 256


def check_max_workers(max_workers: object) -> None:
    """``max_workers`` must be a whole number from 1 to :data:`MAX_WORKERS`; the message names it."""
    if (
        isinstance(max_workers, bool)
        or not isinstance(max_workers, int)
        or not 1 <= max_workers <= MAX_WORKERS
    ):
        raise ValueError(f"max_workers must be an integer from 1 to {MAX_WORKERS}, got {max_workers!r}")


def send_all(
    items: Iterable[T],
    work: Callable[[T], R],
    *,
    max_workers: int,
    max_in_flight: int | None = None,
    stop: threading.Event | None = None,
    heartbeat: Callable[[], object] | None = None,
    heartbeat_interval: float = 1.0,
    thread_name_prefix: str = "crowdtwist-sender",
) -> Iterator[tuple[T, R | SendFailure[T]]]:
    """Run ``work(item)`` for each item on ``max_workers`` threads; yield ``(item, result)``."""
    check_max_workers(max_workers)
    limit = max_in_flight if max_in_flight is not None else 2 * max_workers
    if limit < 1:
        raise ValueError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
    iterator = iter(items)
    in_flight: dict[Future[R], T] = {}
    completed: queue.SimpleQueue[Future[R]] = queue.SimpleQueue()
    exhausted = False

    def _submit_more(pool: ThreadPoolExecutor) -> None:
        nonlocal exhausted
        while not exhausted and len(in_flight) < limit and not (stop is not None and stop.is_set()):
            try:
                item = next(iterator)
            except StopIteration:
                exhausted = True
                return
            future = pool.submit(work, item)
            in_flight[future] = item
            future.add_done_callback(completed.put)

    def _next_done() -> list[Future[R]]:
        try:
            done = [completed.get(timeout=heartbeat_interval)]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(completed.get_nowait())
            except queue.Empty:
                return done

    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix) as pool:
        try:
            _submit_more(pool)
            while in_flight:
                done = _next_done()
                if heartbeat is not None:
                    heartbeat()
                for future in done:
                    item = in_flight.pop(future)
                    error = future.exception()
                    if error is not None:
                        yield item, SendFailure(item, error)
                    else:
                        yield item, future.result()
                _submit_more(pool)
        finally:
            # On early close: no new submissions; in-flight items finish when the pool shuts down.
            exhausted = True
