"""SharedRateLimiter against a real redis-server: one pace for several limiters, pauses, 429s, fallback.

Each ``SharedRateLimiter`` here has its own Redis client, as each task process would; they share the
program's key. Timing assertions leave room for a loaded machine: they check bounds a broken limiter
would miss by far (an unpaced limiter, a pause seen by one limiter only).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from airflow_provider_crowdtwist.client.ratelimit import Pacer, RateLimiter
from airflow_provider_crowdtwist.client.shared_limit import SharedRateLimiter, program_key

pytestmark = pytest.mark.redis

KEY = program_key("https://acme.crowdtwist.test/v2")


def shared(server: Any, rpm: float, *, fallback_rpm: float | None = None, **kw: Any) -> SharedRateLimiter:
    return SharedRateLimiter(
        server.client(),
        KEY,
        rpm,
        fallback=RateLimiter(fallback_rpm if fallback_rpm is not None else rpm),
        where=server.url,
        fallback_note="test share",
        **kw,
    )


def take(limiter: Pacer, n: int, threads: int = 4) -> list[float]:
    """``n`` slots taken on ``threads`` threads; the monotonic times they were granted."""
    times: list[float] = []
    lock = threading.Lock()
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

    def work(count: int) -> None:
        for _ in range(count):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    workers = [threading.Thread(target=work, args=(c,)) for c in per]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return sorted(times)


def test_program_key_is_the_host() -> None:
    assert program_key("https://Acme.CrowdTwist.test/v2") == "crowdtwist:rate:acme.crowdtwist.test"
    assert program_key("https://acme.crowdtwist.test/v2/") == program_key("https://acme.crowdtwist.test")
    assert program_key("http://127.0.0.1:8080/v2") == "crowdtwist:rate:127.0.0.1:8080"
    with pytest.raises(ValueError, match="host"):
        program_key("/v2")


def test_satisfies_the_pacer_interface(redis_db: Any) -> None:
    assert isinstance(shared(redis_db, 600), Pacer)
    assert isinstance(RateLimiter(600), Pacer)


def test_two_limiters_share_one_pace(redis_db: Any) -> None:
    # 600/min = 10/s for the program: two limiters of 600/min each must still make 10/s together.
    a, b = shared(redis_db, 600), shared(redis_db, 600)
    started = time.monotonic()
    results: list[list[float]] = []
    ts = [threading.Thread(target=lambda lim=lim: results.append(take(lim, 15, 3))) for lim in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    assert sum(len(r) for r in results) == 30
    # burst 1: 30 slots at 10/s take 2.9 s; two independent limiters would take 1.4 s.
    assert elapsed >= 2.6, elapsed
    assert elapsed < 8.0, elapsed
    assert a.shared and b.shared


def test_retry_after_from_one_limiter_pauses_the_other(redis_db: Any) -> None:
    a, b = shared(redis_db, 6000), shared(redis_db, 6000)
    a.acquire()
    a.record_rate_limited(retry_after=1.5)
    started = time.monotonic()
    b.acquire()
    waited = time.monotonic() - started
    assert 1.2 <= waited < 4.0, waited
    assert a.pauses == 1
    assert b.stats()["program_pauses"] == 1


def test_429s_of_requests_in_flight_do_not_stretch_the_pause(redis_db: Any) -> None:
    a, b, c = (shared(redis_db, 6000) for _ in range(3))
    a.acquire()
    b.acquire()  # both in flight
    a.record_rate_limited(retry_after=2.0)
    time.sleep(1.0)
    b.record_rate_limited(retry_after=2.0)  # sent before the pause began: says the same, later
    started = time.monotonic()
    c.acquire()
    assert time.monotonic() - started < 1.6  # the first pause's end (~1 s), not b's (~2 s)
    assert c.stats()["program_pauses"] == 1
    # a request sent after the pause gets a pause of its own
    c.record_rate_limited(retry_after=1.0)
    assert c.stats()["program_pauses"] == 2


def test_a_sleeping_slot_is_voided_by_a_pause(redis_db: Any) -> None:
    # 60/min: the second slot is ~1 s ahead; a 2 s pause that comes meanwhile must hold it back.
    a, b = shared(redis_db, 60, adaptive=False), shared(redis_db, 60, adaptive=False)
    a.acquire()
    done: list[float] = []
    started = time.monotonic()
    t = threading.Thread(target=lambda: (a.acquire(), done.append(time.monotonic() - started)))
    t.start()
    time.sleep(0.3)
    b.record_rate_limited(retry_after=2.0)
    t.join(timeout=20)
    assert done and done[0] >= 2.1, done


def test_a_429_cuts_the_pace_of_every_limiter(redis_db: Any, caplog: pytest.LogCaptureFixture) -> None:
    a, b = shared(redis_db, 6000), shared(redis_db, 6000)
    before = b.stats()["paced_requests_per_minute"]
    a.acquire()
    with caplog.at_level(logging.WARNING):
        a.record_rate_limited()
    after = b.stats()
    assert before == 5990  # the cap less the burst (as RateLimiter)
    assert after["paced_requests_per_minute"] == pytest.approx(2995, abs=5)  # halved, first time
    assert after["rate_decreases"] == 1
    assert b.stats()["rate_limited"] == 0 and a.stats()["rate_limited"] == 1
    assert "shared pace is now 2995" in caplog.text
    # a 429 for a slot taken before the cut is counted but does not cut again
    a.record_rate_limited()
    assert b.stats()["rate_decreases"] == 1


def test_learns_the_real_rate_from_successes_of_every_limiter(redis_db: Any) -> None:
    # probe 50%/s of the learned rate, hold 1.5 s: the climb back and the hold show within seconds
    a, b = (shared(redis_db, 6000, probe_fraction=0.5, hold_seconds=1.5) for _ in range(2))
    a.acquire()
    a.record_rate_limited()  # first episode: halves, marks the start
    time.sleep(0.1)
    # 6 s later (the episode's quiet period is 5 s), 60 successes from the two: 10/s accepted.
    time.sleep(5.2)
    for lim in (a, b):
        for _ in range(30):
            lim.record_success()
    b.acquire()  # b's successes go to Redis with its next call
    a.acquire()
    a.record_rate_limited()
    learned = b.stats()["learned_requests_per_minute"]
    assert learned is not None and 500 <= learned <= 700, learned  # 60 in ~5.3 s = ~680/min
    # cut to 97% of it; climbing back at 50%/s of it, it stops at that hold level...
    assert b.stats()["paced_requests_per_minute"] == pytest.approx(learned * 0.97, rel=0.03)
    time.sleep(0.6)
    assert b.stats()["paced_requests_per_minute"] == pytest.approx(learned * 0.97, rel=0.03)
    # ...until the hold ends, then probes above it
    time.sleep(1.5)
    assert b.stats()["paced_requests_per_minute"] > learned * 1.1


def test_keys_expire(redis_db: Any) -> None:
    limiter = shared(redis_db, 600, ttl_seconds=30)
    limiter.acquire()
    ttl = redis_db.client().ttl(KEY)
    assert 0 < ttl <= 30


def test_unreachable_at_start_falls_back_to_the_share(caplog: pytest.LogCaptureFixture) -> None:
    import redis

    from tests.redis_server import _free_port

    client = redis.Redis(host="127.0.0.1", port=_free_port(), socket_connect_timeout=1, socket_timeout=1)
    with caplog.at_level(logging.WARNING):
        limiter = SharedRateLimiter(client, KEY, 6000, fallback=RateLimiter(600), fallback_note="6000 / 10")
    assert not limiter.shared
    assert "unreachable at start" in caplog.text and "600 requests/min (6000 / 10)" in caplog.text
    started = time.monotonic()
    take(limiter, 12, 2)
    assert time.monotonic() - started >= 0.9  # paced at 10/s by the fallback, never unpaced
    stats = limiter.stats()
    assert stats["shared_limiter_fallback"].startswith("Redis")
    assert "paced alone at 600 requests/min" in stats["shared_limiter_fallback"]


def test_redis_killed_mid_run_falls_back(own_redis_server: Any, caplog: pytest.LogCaptureFixture) -> None:
    limiter = shared(own_redis_server, 6000, fallback_rpm=600)
    take(limiter, 10, 2)
    assert limiter.shared
    own_redis_server.kill()
    with caplog.at_level(logging.WARNING):
        started = time.monotonic()
        take(limiter, 12, 3)
        elapsed = time.monotonic() - started
    assert not limiter.shared
    assert "unreachable mid-run" in caplog.text
    assert caplog.text.count("paces on its own") == 1  # said once, not by every thread
    assert elapsed >= 0.9, elapsed  # the fallback's 10/s, not unpaced
    limiter.record_rate_limited(retry_after=0.5)  # goes to the fallback
    assert limiter.fallback.rate_limited == 1
    assert limiter.stats()["rate_limited"] == 1


def test_no_cap_is_refused(redis_db: Any) -> None:
    with pytest.raises(ValueError, match="requests_per_minute above 0"):
        shared(redis_db, 0)
