"""The spool (last wins, flat memory) and the bounded concurrent sender."""

from __future__ import annotations

import os
import threading
import time

import pytest

from airflow_provider_crowdtwist.sync.members.spool import Spool
from airflow_provider_crowdtwist.sync.sender import SendFailure, send_all


def test_spool_last_row_wins_and_losers_are_listed(tmp_path):
    with Spool(str(tmp_path)) as spool:
        spool.add_many([(1, "a", "A", "{}"), (2, "b", "B", "{}"), (3, "a", "a", '{"v":3}')])
        spool.add_many([(4, "c", "C", "{}"), (5, "a", "A", '{"v":5}')])
        assert spool.count_survivors() == 3
        survivors = list(spool.survivors())
        assert [(r.row_number, r.identifier) for r in survivors] == [(2, "B"), (4, "C"), (5, "A")]
        assert survivors[2].payload == {"v": 5}
        lost = list(spool.superseded())
        assert [(r.row_number, r.winner_row_number) for r in lost] == [(1, 5), (3, 5)]
        path = spool.path
        assert os.path.exists(path)
    assert not os.path.exists(path)  # removed on close


def test_spool_handles_many_rows(tmp_path):
    with Spool(str(tmp_path)) as spool:
        spool.add_many((n, f"k{n % 1000}", f"id{n}", "{}") for n in range(1, 5001))
        assert spool.count_survivors() == 1000
        assert sum(1 for _ in spool.superseded()) == 4000
        assert min(r.row_number for r in spool.survivors()) == 4001


def test_sender_runs_every_item_once_and_reports_exceptions():
    seen: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            seen.append(item)
        if item % 10 == 3:
            raise RuntimeError(f"boom {item}")
        return item * 2

    results = dict(send_all(range(100), work, max_workers=8))
    assert sorted(seen) == list(range(100))
    assert len(results) == 100
    failures = {k: v for k, v in results.items() if isinstance(v, SendFailure)}
    assert sorted(failures) == [3, 13, 23, 33, 43, 53, 63, 73, 83, 93]
    assert str(failures[3].error) == "boom 3"
    assert results[4] == 8


def test_sender_keeps_in_flight_bounded_and_uses_the_workers():
    in_flight = 0
    peak = 0
    lock = threading.Lock()
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield i

    def work(item: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.002)
        with lock:
            in_flight -= 1
        return item

    gen = send_all(items(), work, max_workers=4, max_in_flight=8)
    next(gen)
    assert pulled <= 9  # lazily consumed: never more than max_in_flight ahead (+ the one finished)
    rest = list(gen)
    assert len(rest) == 199
    assert 2 <= peak <= 4


def test_sender_stop_leaves_the_rest_in_the_iterator():
    stop = threading.Event()
    source = iter(range(1000))

    def work(item: int) -> int:
        if item == 5:
            stop.set()
        time.sleep(0.001)
        return item

    done = [item for item, _ in send_all(source, work, max_workers=2, max_in_flight=4, stop=stop)]
    remaining = list(source)
    assert len(done) + len(remaining) == 1000
    assert sorted(done + remaining) == list(range(1000))
    assert len(done) < 20


def test_sender_heartbeat_runs_while_waiting():
    beats = []

    def work(item: int) -> int:
        time.sleep(0.25)
        return item

    list(send_all([1], work, max_workers=1, heartbeat=lambda: beats.append(1), heartbeat_interval=0.05))
    assert len(beats) >= 3


@pytest.mark.parametrize("workers", [0, -1, True, 1.5])
def test_sender_refuses_bad_worker_counts(workers):
    with pytest.raises(ValueError, match="max_workers"):
        list(send_all([1], lambda x: x, max_workers=workers))


@pytest.mark.parametrize("bad", [0, -1, 257, 1.5, True, "8", None])
def test_one_max_workers_rule_for_sender_and_both_syncs(bad):
    from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig
    from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig
    from airflow_provider_crowdtwist.sync.sender import check_max_workers

    with pytest.raises(ValueError, match="max_workers must be an integer from 1 to 256"):
        check_max_workers(bad)
    with pytest.raises(ValueError, match="max_workers must be an integer from 1 to 256"):
        MemberSyncConfig(max_workers=bad).validate()
    with pytest.raises(ValueError, match="max_workers must be an integer from 1 to 256"):
        CreditSyncConfig(id_column="email", activity_id="purchase", max_workers=bad).validate()
    check_max_workers(256)


def test_unchanged_rows_take_part_in_last_wins_but_are_never_sent(tmp_path):
    import numpy as np

    from airflow_provider_crowdtwist.sync.members.row_hash import member_keys

    with Spool(str(tmp_path)) as spool:
        spool.add_many([(1, "a", "A", '{"v":1}'), (2, "b", "B", '{"v":2}')])
        k1, k2 = member_keys(["a", "c"])
        spool.add_unchanged(np.array([3, 4]), k1, k2)  # a later unchanged row for "a" wins over row 1
        spool.add_many([(5, "c", "C", '{"v":5}')])  # a later changed row for "c" wins over row 4
        assert spool.count_survivors() == 2 and spool.count_unchanged() == 1
        assert [r.row_number for r in spool.survivors()] == [2, 5]
        lost = list(spool.superseded())
        assert [(r.row_number, r.winner_row_number, r.identifier) for r in lost] == [
            (1, 3, "A"),
            (4, 5, None),
        ]


def test_last_wins_matches_a_plain_dict_on_random_rows(tmp_path):
    import numpy as np

    from airflow_provider_crowdtwist.sync.members.row_hash import member_keys

    rng = np.random.default_rng(7)
    names = [f"k{int(v)}" for v in rng.integers(0, 300, 2000)]
    unchanged = rng.random(2000) < 0.3
    with Spool(str(tmp_path)) as spool:
        for start in range(0, 2000, 250):  # chunks: unchanged rows of a chunk are added before the rest
            part = range(start, start + 250)
            idle = [i for i in part if unchanged[i]]
            k1, k2 = member_keys([names[i] for i in idle])
            spool.add_unchanged(np.array([i + 1 for i in idle], dtype=np.int64), k1, k2)
            spool.add_many((i + 1, names[i], names[i], "{}") for i in part if not unchanged[i])
        last: dict[str, int] = {}
        for i, name in enumerate(names):
            last[name] = i + 1
        expected_sent = sorted(n for n in last.values() if not unchanged[n - 1])
        assert [r.row_number for r in spool.survivors()] == expected_sent
        assert spool.count_unchanged() == sum(1 for n in last.values() if unchanged[n - 1])
        lost = [(r.row_number, r.winner_row_number) for r in spool.superseded()]
        assert lost == [(i + 1, last[name]) for i, name in enumerate(names) if last[name] != i + 1]
