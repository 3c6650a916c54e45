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


# -- adaptive pacing (issue 16): learn the real limit from 429s ------------------------------------


def _per_minute(limiter: RateLimiter) -> float:
    return limiter.rate_per_second * 60.0


def test_first_429_halves_the_pace_and_is_reported() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    ceiling = _per_minute(limiter)
    limiter.acquire()
    limiter.record_rate_limited(None, sent_at=clock.now)
    assert _per_minute(limiter) == pytest.approx(ceiling / 2)
    assert limiter.stats()["rate_limited"] == 1 and limiter.stats()["rate_decreases"] == 1
    assert limiter.learned_requests_per_minute is None  # one 429 measures nothing yet


def test_429s_for_requests_sent_before_the_cut_do_not_cut_again() -> None:
    """A storm's in-flight requests were paced at the old rate: without this guard one storm would
    cut the pace once per 429 down to the floor."""
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    sent = clock.now
    clock.sleep(0.1)
    limiter.record_rate_limited(None, sent_at=sent)
    after_first = _per_minute(limiter)
    for _ in range(20):
        limiter.record_rate_limited(None, sent_at=sent)
    assert _per_minute(limiter) == after_first
    assert limiter.stats()["rate_limited"] == 21 and limiter.stats()["rate_decreases"] == 1
    clock.sleep(0.1)
    limiter.record_rate_limited(None, sent_at=clock.now)  # sent at the new pace: it cuts
    assert _per_minute(limiter) < after_first


def test_cut_goes_just_under_the_rate_the_server_accepted() -> None:
    """Between two 429s the server accepted its real rate: 50/s over 2 s -> pace ~97% of 3,000/min."""
    clock = FakeClock()
    limiter = RateLimiter(10_000, clock=clock, sleep=clock.sleep)
    limiter.record_rate_limited(None, sent_at=clock.now)
    for _ in range(100):  # 100 accepted in 2 s, still inside the episode
        clock.sleep(0.02)
        limiter.record_success()
    limiter.record_rate_limited(None, sent_at=clock.now)
    assert limiter.learned_requests_per_minute == pytest.approx(3000, rel=0.01)
    assert _per_minute(limiter) == pytest.approx(3000 * (1 - limiter.margin), rel=0.01)


def test_pace_climbs_back_slowly_and_never_above_the_ceiling() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep, probe_fraction=0.01)
    ceiling = _per_minute(limiter)
    limiter.record_rate_limited(None, sent_at=clock.now)
    cut = _per_minute(limiter)
    clock.sleep(1.0)
    # additive: 1% of the ceiling (nothing learned yet) per second
    assert _per_minute(limiter) == pytest.approx(cut + 0.01 * ceiling, rel=1e-6)
    clock.sleep(10.0)
    assert _per_minute(limiter) == pytest.approx(cut + 0.11 * ceiling, rel=1e-6)
    clock.sleep(3600.0)
    assert _per_minute(limiter) == pytest.approx(ceiling)
    times = _grant_times(limiter, clock, 12_000)
    assert _max_in_window(times, 60.0) <= 6000  # back at the ceiling, and the cap still holds


def test_retry_after_pauses_everyone_and_the_climb_waits_for_it() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    limiter.record_rate_limited(7.0, sent_at=clock.now)
    cut = _per_minute(limiter)
    start = clock.now
    limiter.acquire()
    assert clock.now - start >= 7.0  # honoured: nobody sent before Retry-After ran out
    assert _per_minute(limiter) == pytest.approx(cut, rel=0.01)  # no climb during the pause
    after = clock.now
    limiter.acquire()
    assert clock.now - after == pytest.approx(60.0 / cut, rel=0.02)  # one at a time, no burst


def test_a_cut_voids_slots_reserved_at_the_old_pace() -> None:
    """A thread that reserved a slot at the old pace and slept must queue again at the new one."""
    clock = FakeClock()
    limiter: RateLimiter

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:  # while the first waiter sleeps, a 429 cuts the pace
            limiter.record_rate_limited(None, sent_at=clock.now)

    limiter = RateLimiter(600, burst=1, clock=clock, sleep=sleep)
    limiter.acquire()
    limiter.acquire()  # reserved 0.1 s ahead at 600/min; the cut to 300/min comes while it sleeps
    assert len(clock.sleeps) == 2
    assert clock.sleeps[1] == pytest.approx(60.0 / 300.0, rel=0.01)


def test_without_a_configured_cap_the_first_429_sets_a_pace() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0, clock=clock, sleep=clock.sleep)
    for _ in range(100):  # 100 requests in the last second
        limiter.acquire()
        clock.now += 0.01
    assert clock.sleeps == []
    limiter.record_rate_limited(None, sent_at=clock.now)
    assert _per_minute(limiter) == pytest.approx(50 * 60, rel=0.02)  # half of what was being sent
    limiter.acquire()
    limiter.acquire()
    assert clock.sleeps and clock.sleeps[-1] == pytest.approx(1 / 50, rel=0.05)


def test_not_adaptive_only_pauses() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep, adaptive=False)
    before = _per_minute(limiter)
    limiter.record_rate_limited(3.0, sent_at=clock.now)
    assert _per_minute(limiter) == before and limiter.paused_until == pytest.approx(clock.now + 3.0)


def test_stats_for_the_summary() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10_000, clock=clock, sleep=clock.sleep)
    assert limiter.stats() == {
        "configured_requests_per_minute": 10_000,
        "learned_requests_per_minute": None,
        "paced_requests_per_minute": pytest.approx(10_000 - limiter.burst, abs=1),
        "rate_limited": 0,
        "rate_decreases": 0,
    }


@pytest.mark.parametrize(
    "kwargs",
    [{"decrease_factor": 1.0}, {"probe_fraction": -0.1}, {"margin": 1.0}, {"min_requests_per_minute": 0}],
)
def test_bad_adaptive_settings_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RateLimiter(100, **kwargs)
