"""What refusing a broken state costs: opening a state of N members, and SQLite's quick check alone.

Run: ``python benchmarks/file_check_cost.py [--members 1000000] [--repeat 3]``

Every run opens its state or ledger with a check that reads every page (``PRAGMA quick_check``, see
``sync/file_guard.py``), so that a file that lost its content is refused before the first request
instead of failing mid-run. This prints the file size, the time to open the state (check included)
and the time of the quick check alone, with the file in the page cache. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time

from airflow_provider_crowdtwist.sync.file_guard import quick_check
from airflow_provider_crowdtwist.sync.members.row_hash import member_keys
from airflow_provider_crowdtwist.sync.members.state import MemberState


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "state.sqlite")
        names = [f"member{i}@example.com" for i in range(args.members)]
        k1, k2 = member_keys(names)
        with MemberState(path, id_type="email", secret=b"benchmark") as state:
            for a, b, name in zip(k1.tolist(), k2.tolist(), names, strict=True):
                state.record_sent(a, b, name, 5)
        size = os.path.getsize(path) / 1e6
        print(f"members {args.members:,}, state file {size:.1f} MB, load average {os.getloadavg()}")
        for _ in range(args.repeat):
            started = time.perf_counter()
            MemberState(path, id_type="email", secret=b"benchmark").close()
            opened = time.perf_counter() - started
            db = sqlite3.connect(path)
            started = time.perf_counter()
            assert quick_check(db) is None
            checked = time.perf_counter() - started
            db.close()
            print(f"open (check included) {opened:.3f} s; quick check alone {checked:.3f} s")


if __name__ == "__main__":
    main()
