"""Issue #22, items 2, 7 and 8, against the sandbox over real HTTP.

* a zero-byte or corrupt ledger or member state stops the sync BEFORE THE FIRST REQUEST, with a
  message naming the file and the way out (counted by the sandbox: not one request);
* two credit syncs in two processes reaching one ledger through two hard links: the second is
  refused at once, each key is credited exactly once (the sandbox's own record), the ledger is sound.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger, LedgerError
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncSummary, sync_credits
from airflow_provider_crowdtwist.sync.members.state import MemberState, StateError, StateInUseError
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.sources import iter_chunks
from airflow_provider_crowdtwist.sync.summary import ThresholdExceededError
from tests.integration.sigkill import ROOT
from tests.integration.test_credit_sync import (
    applied_per_key,
    config,
    create_members,
    credit_requests,
    credit_rows,
    run_sync,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LOG = logging.getLogger("test.broken_files")
WORKER = pathlib.Path(__file__).with_name("credit_worker.py")


def members_frame(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"file{i}@example.com" for i in range(n)],
            "first_name": ["First"] * n,
            "last_name": ["Last"] * n,
            "postal_code": ["10001"] * n,
        }
    )


def member_sync(sandbox: Any, client_for: Any, state: Any, rows: pd.DataFrame) -> Any:
    return sync_members(client_for(sandbox), [rows], MemberSyncConfig(state_path=state, max_workers=8), LOG)


def total_requests(sandbox: Any) -> int:
    return int(sandbox.admin.stats()["total"])


def test_a_zero_byte_ledger_stops_the_credit_sync_before_the_first_request(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    emails = create_members(client, 20)
    rows = credit_rows(100, emails)
    ledger = tmp_path / "ledger.sqlite"
    assert run_sync(client, rows, config(), ledger).count("credited") == 100
    ledger.write_bytes(b"")  # the disk filled, a copy failed: the file is there, its content is not
    before = total_requests(sandbox)
    with pytest.raises(LedgerError) as info:
        run_sync(client, rows, config(run_id="again"), ledger)
    assert f"the credit ledger {ledger} is empty (0 bytes)" in str(info.value)
    assert "rebuild_ledger=True" in str(info.value)
    assert total_requests(sandbox) == before  # not one request
    assert set(applied_per_key(sandbox).values()) == {1}  # today: 200 applied for 100 keys


@pytest.mark.parametrize("damage", ["zero-bytes", "page-overwritten"])
def test_a_broken_member_state_stops_the_member_sync_before_the_first_request(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path, damage: str
) -> None:
    state = tmp_path / "members.sqlite"
    rows = members_frame(1500)
    assert member_sync(sandbox, client_for, state, rows).count("created") == 1500
    if damage == "zero-bytes":
        state.write_bytes(b"")
    else:
        with open(state, "r+b") as handle:  # a page in the middle of the file overwritten
            handle.seek(5 * 4096)
            handle.write(b"\xff" * 4096)
    before = total_requests(sandbox)
    with pytest.raises(StateError) as info:
        member_sync(sandbox, client_for, state, rows)
    text = str(info.value)
    assert f"the member state {state}" in text and "full_refresh=True" in text
    assert ("is empty (0 bytes)" if damage == "zero-bytes" else "is corrupt") in text
    assert "database disk image is malformed" not in text or str(state) in text
    assert total_requests(sandbox) == before  # today: every member sent again, or a crash mid-run


def test_a_member_sync_through_a_hard_link_to_a_held_state_is_refused_before_the_first_request(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    state = tmp_path / "a" / "members.sqlite"
    MemberState(state, id_type="email", secret=sandbox.api_key.encode()).close()
    os.link(state, tmp_path / "b" / "members.sqlite")
    before = total_requests(sandbox)
    with (
        MemberState(state, id_type="email", secret=sandbox.api_key.encode()),  # a sync holding it
        pytest.raises(StateInUseError, match="hard link"),
    ):
        member_sync(sandbox, client_for, tmp_path / "b" / "members.sqlite", members_frame(10))
    assert total_requests(sandbox) == before


def test_two_credit_syncs_through_two_hard_links_credit_each_key_once(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    """The issue's measurement: both ran, 300 keys credited twice, the ledger corrupted."""
    client = client_for(sandbox)
    emails = create_members(client, 50)
    rows = credit_rows(600, emails)
    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "team-a").mkdir()
    (tmp_path / "team-b").mkdir()
    first_name = tmp_path / "team-a" / "ledger.sqlite"
    CreditLedger.open(first_name).close()
    second_name = tmp_path / "team-b" / "ledger.sqlite"
    os.link(first_name, second_name)  # "a copy" that is the same file
    sandbox.admin.set_faults(latency_ms=40)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def worker(ledger: pathlib.Path, run_id: str) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            str(WORKER),
            sandbox.base_url,
            sandbox.api_key,
            str(rows_path),
            str(ledger),
        ]
        command += ["--chunksize", "100", "--run-id", run_id]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    first = worker(first_name, "first")
    try:
        deadline = time.monotonic() + 60
        while credit_requests(sandbox) < 20:
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first sync sent nothing"
            time.sleep(0.02)
        second = worker(second_name, "second")
        _, second_err = second.communicate(timeout=60)
        assert second.returncode != 0
        assert "in use by another running sync" in second_err, second_err
        assert "hard link" in second_err
        _, first_err = first.communicate(timeout=120)
        assert first.returncode == 0, first_err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        sandbox.admin.set_faults(latency_ms=0)
    applied = applied_per_key(sandbox)
    assert len(applied) == 600
    assert set(applied.values()) == {1}  # each key exactly once
    db = sqlite3.connect(second_name)
    assert db.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert db.execute("SELECT count(*) FROM credits WHERE state = 'credited'").fetchone() == (600,)
    db.close()


def test_a_rejects_path_that_is_the_ledger_by_another_name_stops_the_sync_before_the_first_request(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    """The rejects file is rewritten on every run; pointed at the ledger (here: a hard link) it emptied it."""
    client = client_for(sandbox)
    emails = create_members(client, 20)
    rows = credit_rows(50, emails)
    ledger = tmp_path / "ledger.sqlite"
    assert run_sync(client, rows, config(), ledger).count("credited") == 50
    rejects = tmp_path / "reports" / "rejects.jsonl"
    rejects.parent.mkdir()
    os.link(ledger, rejects)
    before = total_requests(sandbox)
    with pytest.raises(ValueError, match="is a SQLite database"):
        run_sync(client, rows, config(run_id="again", rejects_path=str(rejects)), ledger)
    assert total_requests(sandbox) == before
    assert run_sync(client, rows, config(run_id="third"), ledger).count("skipped") == 50  # intact
    assert set(applied_per_key(sandbox).values()) == {1}


# ---------------------------------------------------------------------- recovery (explicit)


def engine_run(client: Any, rows: Any, cfg: Any, ledger: pathlib.Path) -> CreditSyncSummary:
    """A run whose engine opens the ledger itself (``ledger_path``), as the operator's does."""
    cfg.ledger_path = ledger
    try:
        return sync_credits(client, iter_chunks(pd.DataFrame(rows), 50), cfg)
    except ThresholdExceededError as exc:  # unknown credits: the summary is what is asserted
        assert isinstance(exc.summary, CreditSyncSummary)
        return exc.summary


def test_rebuild_ledger_over_a_zero_byte_ledger_credits_each_key_exactly_once(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    """100 credited, the ledger emptied; a rebuild run over those 100 and 50 new ones sends only the new."""
    client = client_for(sandbox)
    emails = create_members(client, 30)
    ledger = tmp_path / "ledger.sqlite"
    assert run_sync(client, credit_rows(100, emails), config(), ledger).count("credited") == 100
    ledger.write_bytes(b"")
    before = credit_requests(sandbox)
    summary = engine_run(
        client,
        credit_rows(150, emails),
        config(run_id="rebuild", rebuild_ledger=True, verify_delay=1),
        ledger,
    )
    assert summary.count("skipped") == 100  # found in the histories: recorded credited, not sent
    assert summary.count("credited") == 50
    assert credit_requests(sandbox) - before == 50
    rebuild = summary.ledger_rebuild
    assert rebuild["broken"] == "is empty (0 bytes)" and rebuild["found"] == 100 and rebuild["unproven"] == 0
    assert rebuild["members_read"] == 30  # one history per member
    assert pathlib.Path(rebuild["set_aside"]).stat().st_size == 0  # the broken file, kept
    applied = applied_per_key(sandbox)
    assert len(applied) == 150 and set(applied.values()) == {1}
    again = run_sync(client, credit_rows(150, emails), config(run_id="after"), ledger)
    assert again.count("skipped") == 150 and credit_requests(sandbox) - before == 50


def test_rebuild_ledger_with_unreadable_histories_sends_nothing_blind_and_the_next_run_settles(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    emails = create_members(client, 10)
    ledger = tmp_path / "ledger.sqlite"
    assert run_sync(client, credit_rows(40, emails), config(), ledger).count("credited") == 40
    ledger.write_bytes(b"")
    before = credit_requests(sandbox)
    sandbox.admin.set_faults(error_rate=1.0, error_status=500, fault_routes=["history"])
    try:
        rows = credit_rows(60, emails)  # 40 applied before, 20 new
        summary = engine_run(
            client, rows, config(run_id="rebuild", rebuild_ledger=True, verify_delay=0.2), ledger
        )
    finally:
        sandbox.admin.set_faults(error_rate=0.0, fault_routes=[])
    assert credit_requests(sandbox) == before  # no history, no proof: not one credit sent
    assert summary.count("unknown") == 60
    assert summary.ledger_rebuild["members_unreadable"] == 10 and summary.ledger_rebuild["unproven"] == 60
    settled = run_sync(client, rows, config(run_id="next", verify_delay=0.2), ledger)
    assert settled.reconciled == {"credited": 60}  # 40 found in the histories, 20 verified absent and sent
    applied = applied_per_key(sandbox)
    assert len(applied) == 60 and set(applied.values()) == {1}


def test_full_refresh_over_a_zero_byte_member_state_sends_every_row_once_and_rebuilds_the_state(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    state = tmp_path / "members.sqlite"
    rows = members_frame(300)
    assert member_sync(sandbox, client_for, state, rows).count("created") == 300
    state.write_bytes(b"")
    config_ = MemberSyncConfig(state_path=state, max_workers=8, full_refresh=True)
    summary = sync_members(client_for(sandbox), [rows], config_, LOG)
    assert summary.count("created") + summary.count("updated") == 300  # every row sent once, none lost
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("members.sqlite.broken-")]
    assert [p.stat().st_size for p in kept] == [0]
    before = total_requests(sandbox)
    again = member_sync(sandbox, client_for, state, rows)
    assert again.count("unchanged") == 300 and total_requests(sandbox) == before  # the state is whole again
