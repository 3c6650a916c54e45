"""RateLimiter: a small burst, the cap held over any 60-second window, pause shared by all threads."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_provider_crowdtwist.client import RateLimiter

from .conftest import FakeClock


def _grant_times(limiter: RateLimiter, clock: FakeClock, n: int) -> list[float]:
    times = []
    for _ in range(n):
        limiter.acquire()
        times.append(clock.now)
    return times


def _max_in_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_default_burst_is_small_and_free() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    assert limiter.burst == 10
    _grant_times(limiter, clock, 10)
    assert clock.sleeps == []
    limiter.acquire()
    assert len(clock.sleeps) == 1 and clock.sleeps[0] == pytest.approx(60 / (6000 - 10))


@pytest.mark.parametrize(("rpm", "burst"), [(600, None), (600, 50), (10_000, None), (90, 1)])
def test_never_more_than_the_cap_in_any_minute(rpm: int, burst: int | None) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm, burst=burst, clock=clock, sleep=clock.sleep)
    times = _grant_times(limiter, clock, int(rpm * 2.5))
    assert _max_in_window(times, 60.0) <= rpm
    # ... and not much less: the sustained rate only gives up the burst.
    assert _max_in_window(times, 60.0) >= rpm - limiter.burst - 1
    elapsed = times[-1] - times[0]
    assert elapsed == pytest.approx((len(times) - limiter.burst) / limiter.rate_per_second, rel=0.01)


def test_pause_blocks_everyone_then_restarts_without_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.pause(5.0)
    start = clock.now
    limiter.acquire()
    assert clock.now - start >= 5.0
    after_pause = clock.now
    limiter.acquire()
    assert clock.now - after_pause == pytest.approx(limiter._interval)


def test_shorter_pause_does_not_shorten_a_longer_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    limiter.pause(10)
    limiter.pause(2)
    limiter.pause(0)
    limiter.acquire()
    assert clock.now == pytest.approx(1010.0)


def test_unlimited_never_sleeps_but_honours_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    _grant_times(limiter, clock, 1000)
    assert clock.sleeps == []
    limiter.pause(3)
    limiter.acquire()
    assert clock.sleeps == [3]


def test_reservation_overtaken_by_pause_waits_for_the_pause() -> None:
    """A thread that reserved a slot and slept must not send if a 429 paused everyone meanwhile."""
    clock = FakeClock()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:  # while the first waiter sleeps, someone gets a 429
            limiter.pause(30)

    limiter = RateLimiter(60, burst=1, clock=clock, sleep=sleep)
    limiter.acquire()
    limiter.acquire()
    assert limiter.paused_until <= clock.now
    assert clock.now >= 1000.0 + 30


def test_bad_burst_rejected() -> None:
    with pytest.raises(ValueError):
        RateLimiter(100, burst=0)


def test_threads_share_the_budget() -> None:
    """8 threads, 480 tokens at 1000/s with a burst of 100: never faster than the bucket allows."""
    limiter = RateLimiter(60_000, burst=100)
    per_thread, threads = 60, 8
    done: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_thread):
            limiter.acquire()
            with lock:
                done.append(1)

    start = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=30)
    elapsed = time.monotonic() - start
    assert len(done) == per_thread * threads
    minimum = (per_thread * threads - limiter.burst) / limiter.rate_per_second
    assert elapsed >= minimum * 0.98
