"""Partitions: disjoint and complete, stable across processes, files and caps per partition."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from airflow_provider_crowdtwist.sync.partition import (
    Partition,
    PartitionError,
    active_partition,
    check_layout,
    combine_summaries,
    combined_violation,
    expand_arguments,
    member_key,
    partition_of,
    partitions,
)


def _owned(part: Partition, values: list[object], *, lower: bool = True) -> list[object]:
    return [v for v in values if part.owns(member_key(v, lower=lower))]


def test_partitions_are_disjoint_complete_and_roughly_even() -> None:
    ids = [f"Member{i}@Example.com" for i in range(4000)]
    parts = [set(_owned(Partition(i, 4), ids)) for i in range(4)]
    assert sum(len(s) for s in parts) == 4000 and set().union(*parts) == set(ids)
    assert all(len(s) > 800 for s in parts)  # 1000 expected each


def test_the_same_member_lands_in_the_same_partition_whatever_its_case_or_type() -> None:
    assert member_key(" A@B.com ", lower=True) == member_key("a@b.com", lower=True)
    owner = Partition(partition_of("a@b.com", 7), 7)
    assert _owned(owner, ["A@B.COM", "a@b.com"]) == ["A@B.COM", "a@b.com"]
    # third_party_id read as a number in one source and as text in another: one partition
    assert member_key(12345, lower=False) == member_key("12345", lower=False)
    assert member_key(12345.0, lower=False) == member_key("12345", lower=False)


def test_hash_is_stable_across_processes() -> None:
    """Not Python's salted hash(): another interpreter puts every member in the same partition."""
    code = (
        "from airflow_provider_crowdtwist.sync.partition import partition_of;"
        "print([partition_of(f'm{i}@x.com', 5) for i in range(50)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([partition_of(f"m{i}@x.com", 5) for i in range(50)])


def test_rows_without_an_identifier_belong_to_partition_zero_only() -> None:
    values = [None, "", float("nan")]
    assert [len(_owned(Partition(i, 3), values)) for i in range(3)] == [3, 0, 0]


def test_file_per_partition_and_share_of_the_cap() -> None:
    part = Partition(1, 4)
    assert part.path("/data/state.sqlite") == "/data/state.part-1-of-4.sqlite"
    assert part.path("s3://bucket/ledgers/credits.sqlite") == "s3://bucket/ledgers/credits.part-1-of-4.sqlite"
    assert part.path(pathlib.Path("/x/rejects.jsonl")) == pathlib.Path("/x/rejects.part-1-of-4.jsonl")
    assert part.path("/x/ledger") == "/x/ledger.part-1-of-4"
    assert part.path(None) is None
    assert Partition(0, 1).path("/x/a.sqlite") == "/x/a.sqlite"  # one partition = no partitioning
    assert part.share(10_000) == 2_500 and part.share(0) == 0 and Partition(0, 3).share(2) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((4, 4), "index"),
        ((0, 0), "count"),
        ((True, 2), "integers"),
        ("0/4", "index, count"),
        ((0, 1000), "count"),
    ],
)
def test_bad_partition_is_refused_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(PartitionError, match=message):
        Partition.parse(value)


def test_parse_accepts_what_xcom_hands_back() -> None:
    assert Partition.parse([2, 3]) == Partition(2, 3) == Partition.parse((2, 3))
    assert Partition.parse(None) is None
    assert active_partition([0, 1]) is None and active_partition(None) is None
    assert active_partition([1, 2]) == Partition(1, 2)


def test_expand_helpers() -> None:
    assert partitions(3) == [(0, 3), (1, 3), (2, 3)]
    assert expand_arguments(2, crowdtwist_conn_id=["eu", "us"], requests_per_minute=[100, 200]) == [
        {"crowdtwist_conn_id": "eu", "requests_per_minute": 100, "partition": (0, 2)},
        {"crowdtwist_conn_id": "eu", "requests_per_minute": 100, "partition": (1, 2)},
        {"crowdtwist_conn_id": "us", "requests_per_minute": 200, "partition": (0, 2)},
        {"crowdtwist_conn_id": "us", "requests_per_minute": 200, "partition": (1, 2)},
    ]
    assert expand_arguments(2) == [{"partition": (0, 2)}, {"partition": (1, 2)}]
    with pytest.raises(PartitionError, match="same length"):
        expand_arguments(2, crowdtwist_conn_id=["a"], requests_per_minute=[1, 2])


def test_a_ledger_under_another_layout_is_refused(tmp_path: pathlib.Path) -> None:
    ledger = tmp_path / "credits.sqlite"
    check_layout(ledger, Partition(0, 4))  # nothing there yet
    Partition(0, 4).path(ledger).write_bytes(b"")
    Partition(1, 4).path(ledger).write_bytes(b"")
    check_layout(ledger, Partition(2, 4))  # same layout: fine
    with pytest.raises(PartitionError, match="another partition layout"):
        check_layout(ledger, Partition(0, 2))
    with pytest.raises(PartitionError, match="unpartitioned"):
        check_layout(ledger, None)
    other = tmp_path / "other"
    other.mkdir()
    (other / "credits.sqlite").write_bytes(b"")
    with pytest.raises(PartitionError, match=r"credits\.sqlite"):
        check_layout(other / "credits.sqlite", Partition(0, 2))
    check_layout(other / "credits.sqlite", None)


def test_combine_summaries_adds_up() -> None:
    a = {
        "counts": {"created": 3, "rejected": 1},
        "rows_read": 4,
        "rows_removed": 0,
        "requests_sent": 5,
        "duration_seconds": 2.0,
        "rows_per_second": 2.0,
        "rejects_path": "/r.part-0-of-2.jsonl",
        "rejects_written": 1,
        "dry_run": False,
        "aborted": None,
        "partition": [0, 2],
        "unknown_keys": ["k1"],
        "rate_limit": {"configured_requests_per_minute": 50, "learned_requests_per_minute": None},
    }
    b = {
        "counts": {"created": 2, "updated": 4},
        "rows_read": 6,
        "rows_removed": 0,
        "requests_sent": 6,
        "duration_seconds": 4.0,
        "rows_per_second": 1.5,
        "rejects_path": None,
        "rejects_written": 0,
        "dry_run": False,
        "aborted": "stopped",
        "partition": [1, 2],
        "unknown_keys": ["k2"],
        "rate_limit": {"configured_requests_per_minute": 50, "learned_requests_per_minute": 40},
    }
    combined = combine_summaries([a, b])
    assert combined["counts"] == {"created": 5, "rejected": 1, "updated": 4}
    assert combined["rows_read"] == 10 == sum(combined["counts"].values())
    assert combined["requests_sent"] == 11 and combined["duration_seconds"] == 4.0
    assert combined["rows_per_second"] == 2.5 and combined["partitions"] == 2
    assert combined["rejects_paths"] == ["/r.part-0-of-2.jsonl"] and combined["rejects_written"] == 1
    assert combined["dry_run"] is False and combined["aborted"] == "stopped"
    assert combined["unknown_keys"] == ["k1", "k2"] and "partition" not in combined
    assert combined["rate_limit"] == {
        "configured_requests_per_minute": 100,
        "learned_requests_per_minute": 40,
    }


def test_combine_summaries_does_not_add_up_a_shared_limiter_s_program_figures() -> None:
    def shared(rate_limited: int, fallback: str | None) -> dict:
        return {
            "rate_limit": {
                "configured_requests_per_minute": 10_000,  # the program's whole cap, in every partition
                "learned_requests_per_minute": 2_963 if fallback is None else None,
                "paced_requests_per_minute": 2_874,
                "rate_decreases": 3,
                "program_pauses": 2,
                "rate_limited": rate_limited,  # this task's own 429s
                "shared_limiter": "redis://r:6379/0 crowdtwist:rate:acme",
                "shared_limiter_fallback": fallback,
            }
        }

    gone = "Redis redis://r:6379/0 unreachable mid-run (ConnectionError: refused); paced alone at 2500"
    combined = combine_summaries([shared(4, None), shared(1, gone), shared(2, None), shared(0, gone)])
    assert combined["rate_limit"] == {
        "configured_requests_per_minute": 10_000,
        "learned_requests_per_minute": 2_963,
        "paced_requests_per_minute": 2_874,
        "rate_decreases": 3,
        "program_pauses": 2,
        "rate_limited": 7,
        "shared_limiter": ["redis://r:6379/0 crowdtwist:rate:acme"],
        "shared_limiter_fallback": [gone],
    }
    healthy = combine_summaries([shared(1, None), shared(1, None)])["rate_limit"]
    assert healthy["shared_limiter_fallback"] is None and healthy["rate_limited"] == 2


def test_thresholds_are_judged_on_the_combined_summary() -> None:
    one = {"counts": {"created": 94, "rejected": 6}, "rows_read": 100}  # 6% alone
    other = {"counts": {"created": 100}, "rows_read": 100}
    combined = combine_summaries([one, other])  # 3% together
    assert combined_violation(combined, max_failed_ratio=0.05) is None
    assert "6 of 200" in (combined_violation(combined, max_failed_ratio=0.02) or "")
    failed = combine_summaries([other, {"counts": {"failed": 1}, "rows_read": 1}])
    assert "failed" in (combined_violation(failed) or "")  # default rule: any failed row fails
