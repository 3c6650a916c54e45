"""The audience sync against the sandbox over real HTTP: only changes are written, the guards, the
answers that stop a run, and the segment file on a real SFTP server.

The sandbox counts requests per route, so "exactly 80 writes" is counted by the server, not by us.
The trait tests run under each reading of the boolean custom attribute OPEN point (``values`` set as
the user of such a program would).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from typing import Any

import pandas as pd
import pytest

from airflow_provider_crowdtwist.sync.audience.config import AudienceSyncConfig
from airflow_provider_crowdtwist.sync.audience.sync import sync_audience
from airflow_provider_crowdtwist.sync.summary import SyncAbortedError
from tests.readings import CUSTOM_TYPE_READINGS, by_name

pytestmark = pytest.mark.integration

LOG = logging.getLogger("test.audience")
ATTRIBUTE = "recent_buyer"
PUT = "PUT /v2/users/{user_id}"


def email(i: int) -> str:
    return f"aud{i}@example.com"


def member(i: int) -> dict[str, Any]:
    return {"email_address": email(i), "first_name": "Aud", "last_name": f"M{i}", "postal_code": "10001"}


def create_members(client: Any, ids: range) -> None:
    for i in ids:
        client.create_user(member(i))


def audience(ids: Any) -> list[pd.DataFrame]:
    """The source: the members in the audience, in two chunks (the reader must join them)."""
    emails = [email(i) for i in ids]
    half = len(emails) // 2
    return [pd.DataFrame({"email": emails[:half]}), pd.DataFrame({"email": emails[half:]})]


def config(tmp_path: Any, **overrides: Any) -> AudienceSyncConfig:
    options: dict[str, Any] = {
        "id_column": "email",
        "id_type": "email",
        "attribute": ATTRIBUTE,
        "state_path": str(tmp_path / "audience.sqlite"),
        "rejects_path": str(tmp_path / "rejects.jsonl"),
        "max_workers": 8,
        "progress_interval": 60.0,
    }
    options.update(overrides)
    return AudienceSyncConfig(**options)


def requests(sandbox: Any) -> tuple[int, int]:
    """(every request, the PUTs) the sandbox has counted so far."""
    stats = sandbox.admin.stats()
    return int(stats["total"]), int(stats["by_route"].get(PUT, 0))


def trait_values(sandbox: Any) -> dict[str, Any]:
    """email -> the audience attribute as CrowdTwist holds it (absent: never set)."""
    return {
        m["email_address"]: m.get("custom_data", {}).get(ATTRIBUTE)
        for m in sandbox.admin.members()
        if ATTRIBUTE in (m.get("custom_data") or {})
    }


@pytest.mark.parametrize("reading", CUSTOM_TYPE_READINGS, ids=lambda r: r.name)
def test_only_changes_are_written_and_leavers_hold_the_out_value(reading, sandbox, client_for, tmp_path):
    sandbox.configure(**reading.sandbox)
    client = client_for(sandbox)
    create_members(client, range(1030))
    values = reading.sync["values"]
    cfg = config(tmp_path, values=values)

    before = requests(sandbox)
    first = sync_audience(client, audience(range(1000)), cfg, LOG)
    assert first.counts["entered"] == 1000 and first.rows_read == 1000
    assert requests(sandbox)[1] - before[1] == 1000
    assert set(trait_values(sandbox).values()) == {values[0]}

    # 50 leave, 30 join: exactly 80 writes, and nothing else is asked of CrowdTwist
    before = requests(sandbox)
    second = sync_audience(client, audience([*range(50, 1000), *range(1000, 1030)]), cfg, LOG)
    total, puts = requests(sandbox)
    assert (total - before[0], puts - before[1]) == (80, 80)
    assert (second.counts["entered"], second.counts["exited"], second.counts["unchanged"]) == (30, 50, 950)
    assert (second.rows_read, second.rows_removed, second.entering, second.leaving) == (980, 50, 30, 50)
    assert second.is_consistent()
    held = trait_values(sandbox)
    assert all(held[email(i)] == values[1] for i in range(50))
    assert all(held[email(i)] == values[0] for i in range(50, 1030))

    # an unchanged rerun asks nothing at all
    before = requests(sandbox)
    third = sync_audience(client, audience([*range(50, 1000), *range(1000, 1030)]), cfg, LOG)
    assert requests(sandbox) == before
    assert third.counts["unchanged"] == 980 and third.requests_sent == 0


def test_twenty_percent_leaving_stops_before_any_write(sandbox, client_for, tmp_path):
    client = client_for(sandbox)
    create_members(client, range(100))
    cfg = config(tmp_path)
    sync_audience(client, audience(range(100)), cfg, LOG)
    before = requests(sandbox)
    with pytest.raises(SyncAbortedError) as stopped:
        sync_audience(client, audience([*range(20, 100), 500, 501]), cfg, LOG)
    text = str(stopped.value)
    assert "20 of the 100 member(s) in the audience as last synced (20.0%) would leave" in text
    assert "max_exit_ratio=0.1" in text and "nothing was sent" in text
    assert requests(sandbox) == before  # not one request
    # the preview: every leaver listed beside the rejects file
    listed = [json.loads(line) for line in (tmp_path / "rejects.audience.jsonl").read_text().splitlines()]
    exits = [r for r in listed if r["change"] == "exit"]
    assert sorted(r["identifier"] for r in exits) == sorted(email(i) for i in range(20))
    assert {r["outcome"] for r in exits} == {None}
    # the two who would have entered are listed as not sent
    assert sorted((r["identifier"], r["outcome"]) for r in listed if r["change"] == "enter") == [
        (email(500), "failed"),
        (email(501), "failed"),
    ]
    # the two members who would have entered were not sent, and the state did not move
    summary = stopped.value.summary
    assert summary.counts["failed"] == 2 and summary.counts["unchanged"] == 80
    again = sync_audience(client, audience(range(100)), cfg, LOG)
    assert again.counts["unchanged"] == 100 and requests(sandbox) == before
    # the same departures with the ratio raised for this run go through
    raised = sync_audience(client, audience(range(20, 100)), config(tmp_path, max_exit_ratio=0.25), LOG)
    assert raised.counts["exited"] == 20


def test_an_empty_audience_stops(sandbox, client_for, tmp_path):
    client = client_for(sandbox)
    create_members(client, range(5))
    cfg = config(tmp_path)
    sync_audience(client, audience(range(5)), cfg, LOG)
    before = requests(sandbox)
    with pytest.raises(SyncAbortedError, match=r"the audience is empty \(0 row\(s\) read"):
        sync_audience(client, [pd.DataFrame({"email": []})], cfg, LOG)
    assert requests(sandbox) == before


def test_a_leaver_unknown_to_crowdtwist_is_skipped(sandbox, client_for, tmp_path):
    client = client_for(sandbox)
    create_members(client, range(20))
    cfg = config(tmp_path)
    sync_audience(client, audience(range(20)), cfg, LOG)
    client.delete_user(email(0))  # gone from CrowdTwist since the last sync
    summary = sync_audience(client, audience(range(1, 20)), cfg, LOG)
    assert (summary.counts["skipped"], summary.counts["exited"], summary.counts["failed"]) == (1, 0, 0)
    listed = [json.loads(line) for line in (tmp_path / "rejects.audience.jsonl").read_text().splitlines()]
    (gone,) = listed
    assert gone["identifier"] == email(0) and gone["outcome"] == "skipped"
    assert gone["message"].startswith("leaving member 1: no longer in CrowdTwist (")
    # it left the state: the next run has nobody leaving
    before = requests(sandbox)
    assert sync_audience(client, audience(range(1, 20)), cfg, LOG).leaving == 0
    assert requests(sandbox) == before


def test_an_attribute_the_program_lacks_stops_at_the_first_answer(sandbox, client_for, tmp_path):
    client = client_for(sandbox)
    create_members(client, range(200))
    before = requests(sandbox)
    with pytest.raises(SyncAbortedError) as stopped:
        sync_audience(client, audience(range(200)), config(tmp_path, attribute="no_such_trait"), LOG)
    assert requests(sandbox)[0] - before[0] == 1  # one request, not 200 identical refusals
    text = str(stopped.value)
    assert "Unrecognized attribute name" in text and "'no_such_trait'" in text
    summary = stopped.value.summary
    assert (summary.counts["rejected"], summary.counts["failed"], summary.counts["entered"]) == (1, 199, 0)
    # a value of the wrong type is the same configuration error (the sandbox enforces types)
    with pytest.raises(SyncAbortedError, match=r"custom_data.recent_buyer must be a boolean"):
        sync_audience(
            client,
            audience(range(200)),
            config(tmp_path, values=("yes", "no"), state_path=str(tmp_path / "b.sqlite")),
            LOG,
        )
    assert requests(sandbox)[0] - before[0] == 2


def test_bad_rows_unknown_members_duplicates_and_the_dry_run(sandbox, client_for, tmp_path):
    client = client_for(sandbox)
    create_members(client, range(10))
    rows = [email(0), email(1), "", email(1).upper(), email(2), "nobody@example.com", None]
    source = [pd.DataFrame({"email": rows})]
    # a dry run: nothing sent, nothing stored; the changes listed
    before = requests(sandbox)
    dry = sync_audience(client, source, config(tmp_path, dry_run=True), LOG)
    assert requests(sandbox) == before and not (tmp_path / "audience.sqlite").exists()
    assert dry.counts["entered"] == 4 and dry.dry_run
    listed = [json.loads(line) for line in (tmp_path / "rejects.audience.jsonl").read_text().splitlines()]
    assert [(r["identifier"], r["change"], r["dry_run"]) for r in listed] == [
        (email(0), "enter", True),
        (email(1), "enter", True),
        (email(2), "enter", True),
        ("nobody@example.com", "enter", True),
    ]
    summary = sync_audience(client, source, config(tmp_path), LOG)
    assert summary.counts["entered"] == 3
    assert summary.counts["rejected"] == 3  # two empty identifiers, one member CrowdTwist does not have
    assert summary.counts["skipped"] == 1 and summary.duplicates == 1
    assert summary.is_consistent() and summary.rows_read == 7
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    messages = sorted(r["message"] for r in rejects)
    assert "row 3: email: the identifier is missing" in messages
    assert "row 7: email: the identifier is missing" in messages
    assert any(m.startswith("row 6: member not found") and "(column 'email')" in m for m in messages)
    # the unknown member is not in the state: it is tried again next run (the member sync may add it)
    again = sync_audience(client, source, config(tmp_path), LOG)
    assert again.counts["unchanged"] == 3 and again.counts["rejected"] == 3


@contextlib.contextmanager
def _sftp(server: Any):
    client = server.connect()
    try:
        yield client
    finally:
        client.close()


def test_both_modes_upload_the_whole_audience_and_send_the_changes(sandbox, client_for, tmp_path, sftp):
    client = client_for(sandbox)
    create_members(client, range(12))
    directory = sftp.root / "both"
    directory.mkdir()
    cfg = config(
        tmp_path,
        mode="both",
        segment_name="recent_buyers",
        segment_dir=str(directory),
        sftp=lambda: _sftp(sftp),
        max_exit_ratio=0.5,
    )
    first = sync_audience(client, audience(range(10)), cfg, LOG)
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d")
    assert first.segment_file == f"{directory}/recent_buyers_{day}_0001.csv"
    assert (first.segment_version, first.segment_rows, first.counts["entered"]) == (1, 10, 10)
    expected = "email_address\n" + "".join(f"{email(i)}\n" for i in range(10))
    assert (directory / f"recent_buyers_{day}_0001.csv").read_bytes() == expected.encode()
    second = sync_audience(client, audience([*range(2, 10), 10, 11]), cfg, LOG)
    assert second.segment_file.endswith(f"recent_buyers_{day}_0002.csv")
    expected = "email_address\n" + "".join(f"{email(i)}\n" for i in [*range(2, 10), 10, 11])
    assert (directory / f"recent_buyers_{day}_0002.csv").read_bytes() == expected.encode()
    assert (second.counts["entered"], second.counts["exited"]) == (2, 2)
    assert sorted(p.name for p in directory.iterdir()) == [
        f"recent_buyers_{day}_0001.csv",
        f"recent_buyers_{day}_0002.csv",
    ]


def test_a_segment_file_alone_sends_no_request(sandbox, client_for, tmp_path, sftp):
    client = client_for(sandbox)
    directory = sftp.root / "alone"
    directory.mkdir()
    cfg = config(
        tmp_path,
        mode="segment_file",
        attribute=None,
        segment_name="vip",
        segment_dir=str(directory),
        sftp=lambda: _sftp(sftp),
        id_type="third_party_id",
        id_column="tpid",
    )
    before = requests(sandbox)
    source = [pd.DataFrame({"tpid": ["T1", "T2", "T,3", "T2"]})]
    summary = sync_audience(client, source, cfg, LOG)
    assert requests(sandbox) == before
    assert (summary.counts["entered"], summary.counts["rejected"], summary.counts["skipped"]) == (2, 1, 1)
    (name,) = [p.name for p in directory.iterdir()]
    assert (directory / name).read_bytes() == b"third_party_id\nT1\nT2\n"
    rejects = (tmp_path / "rejects.jsonl").read_text()
    assert "row 3: tpid: 'T,3' holds a comma" in rejects


def test_a_failed_upload_stops_before_the_traits(sandbox, client_for, tmp_path, sftp):
    client = client_for(sandbox)
    create_members(client, range(3))
    cfg = config(
        tmp_path,
        mode="both",
        segment_name="vip",
        segment_dir=str(sftp.root / "missing-dir"),
        sftp=lambda: _sftp(sftp),
    )
    before = requests(sandbox)
    with pytest.raises(SyncAbortedError, match="the segment file was not uploaded: cannot list"):
        sync_audience(client, audience(range(3)), cfg, LOG)
    assert requests(sandbox) == before


def test_the_readings_name_their_values():
    assert by_name("custom_boolean_string").sync["values"] == ("true", "false")


def test_failed_writes_are_resent_next_run_and_a_stop_keeps_what_was_answered(sandbox, client_for, tmp_path):
    import threading

    client = client_for(sandbox)
    create_members(client, range(60))
    cfg = config(tmp_path, max_exit_ratio=1.0)
    sync_audience(client, audience(range(50)), cfg, LOG)
    # CrowdTwist answers every PUT with a 500: the exits and entries fail (resendable), the state holds
    sandbox.admin.set_faults(error_rate=1.0, error_status=500, fault_routes=["update"])
    with pytest.raises(Exception, match="failed"):
        sync_audience(client, audience([*range(5, 50), 50, 51]), cfg, LOG)
    sandbox.admin.set_faults(error_rate=0.0)
    healed = sync_audience(client, audience([*range(5, 50), 50, 51]), cfg, LOG)
    assert (healed.counts["exited"], healed.counts["entered"], healed.counts["unchanged"]) == (5, 2, 45)
    assert {trait_values(sandbox)[email(i)] for i in range(5)} == {False}
    # a stop (on_kill) in the middle: what CrowdTwist answered is kept, the rest is resent next run
    sandbox.admin.set_faults(latency_ms=200)
    stop = threading.Event()
    timer = threading.Timer(0.4, stop.set)
    timer.start()
    with pytest.raises(SyncAbortedError) as stopped:
        sync_audience(
            client, audience([*range(5, 60)]), config(tmp_path, max_workers=2, stop_event=stop), LOG
        )
    timer.cancel()
    sandbox.admin.set_faults(latency_ms=0)
    first = stopped.value.summary
    assert first.counts["entered"] + first.counts["failed"] == 8 and first.counts["failed"] > 0
    rest = sync_audience(client, audience([*range(5, 60)]), cfg, LOG)
    assert (
        rest.counts["entered"] == first.counts["failed"]
        and rest.counts["unchanged"] == 47 + first.counts["entered"]
    )
