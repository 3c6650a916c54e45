"""SIGKILL of the receiver mid-stream: every push answered 200 landed, and the load holds each once.

Eight pushers stream activities and profile versions; the receiver is killed with SIGKILL while they
do (nothing flushed, nothing published), then restarted on the same output. The pushers resend what
was not acknowledged, as CrowdTwist does, so some pushes land twice in the files; the load must still
give one row per activity and each member's newest acknowledged version.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from pathlib import Path

import requests

from airflow_provider_crowdtwist.livepush.dialects import SQLITE
from airflow_provider_crowdtwist.livepush.load import LiveFeedLoader
from airflow_provider_crowdtwist.livepush.process import ReceiverProcess
from airflow_provider_crowdtwist.livepush.samples import sample_activity, sample_profile
from tests.integration.livepush._helpers import landed

KEY = "kill-test-key"
MEMBERS = 20


class Pusher:
    """Counts what the receiver acknowledged; keeps what it did not, to resend."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked_activities: set[int] = set()
        self.acked_versions: dict[int, int] = {}
        self.unacked: list[tuple[str, dict]] = []
        self.ids = itertools.count(1)

    def push(self, url: str, feed: str, body: dict, session: requests.Session) -> bool:
        try:
            ok = (
                session.post(
                    f"{url}/push/{feed}", data=json.dumps(body), headers={"x-api-key": KEY}, timeout=5
                ).status_code
                == 200
            )
        except requests.RequestException:
            ok = False
        with self.lock:
            if not ok:
                self.unacked.append((feed, body))
            elif feed == "activity":
                self.acked_activities.add(body["userActivityId"])
            else:
                member = body["id"]
                self.acked_versions[member] = max(
                    self.acked_versions.get(member, -1), body["dateLastUpdated"]
                )
        return ok

    def stream(self, url: str, stop: threading.Event) -> None:
        with requests.Session() as session:
            while not stop.is_set():
                n = next(self.ids)
                ok = self.push(url, "activity", sample_activity(n), session)
                ok = self.push(url, "profile", sample_profile(n % MEMBERS, version=n), session) and ok
                if not ok:
                    return


def test_sigkill_mid_stream_loses_no_acknowledged_push(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--roll-seconds", "0.3"]
    pusher = Pusher()
    rx = ReceiverProcess(out, api_key=KEY, extra_args=args).start()
    stop = threading.Event()
    threads = [threading.Thread(target=pusher.stream, args=(rx.url, stop)) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(pusher.acked_activities) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    rx.kill()  # SIGKILL, mid-stream
    stop.set()
    for t in threads:
        t.join(10)
    acked_before_kill = len(pusher.acked_activities)
    assert acked_before_kill >= 400
    assert any((out / "_spool").rglob("*.part")), "the kill should leave an open spool file"

    with ReceiverProcess(out, api_key=KEY, extra_args=args) as rx2, requests.Session() as session:
        resend, pusher.unacked = pusher.unacked, []
        assert resend  # pushes were in flight when the receiver died
        for feed, body in resend:
            assert pusher.push(rx2.url, feed, body, session)
    assert not list((out / "_spool").rglob("*.part"))  # SIGTERM published everything

    activities = [x["push"]["userActivityId"] for x in landed(out, "activity")]
    assert pusher.acked_activities <= set(activities)
    profiles = landed(out, "profile")
    landed_versions: dict[int, int] = {}
    for x in profiles:
        member = x["push"]["id"]
        landed_versions[member] = max(landed_versions.get(member, -1), x["push"]["dateLastUpdated"])
    for member, version in pusher.acked_versions.items():
        assert landed_versions[member] >= version

    db = sqlite3.connect(tmp_path / "warehouse.db")
    for feed, table in (("activity", "activities"), ("profile", "profiles")):
        LiveFeedLoader(db, SQLITE, feed=feed, table=table).load(out / feed)
    rows = [r[0] for r in db.execute("SELECT user_activity_id FROM activities")]
    assert len(rows) == len(set(rows)) == len(set(activities))  # none twice
    assert {int(r) for r in rows} == set(activities)
    newest = dict(
        db.execute("SELECT member_id, CAST(strftime('%s', date_last_updated) AS INTEGER) FROM profiles")
    )
    assert newest == landed_versions
    db.close()
