"""The POS ledger (states across runs, the lock, object storage) and the line spool (grouping, sealing)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.purchases.ledger import PosLedger, PosLedgerError, PosLedgerInUseError
from airflow_provider_crowdtwist.sync.purchases.mapping import Line
from airflow_provider_crowdtwist.sync.purchases.spool import LineSpool


def test_ledger_keeps_states_across_opens_and_forgets(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sub" / "pos.sqlite"
    with PosLedger.open(path, run_id="a") as ledger:
        ledger.record("document", "R1", "recorded")
        ledger.record("document", "R2", "unknown", "unresolved")
        ledger.record("void", "R1", "voided")
    with PosLedger.open(path) as ledger:
        assert ledger.states("document", ["R1", "R2", "R3"]) == {"R1": "recorded", "R2": "unknown"}
        assert ledger.states("void", ["R1"]) == {"R1": "voided"}
        ledger.forget("document", "R2")
        ledger.record("document", "R1", "recorded")
        assert ledger.counts() == {"document:recorded": 1, "void:voided": 1}


def test_ledger_is_locked_against_a_second_run(tmp_path: pathlib.Path) -> None:
    with PosLedger.open(tmp_path / "pos.sqlite"), pytest.raises(PosLedgerInUseError):
        PosLedger.open(tmp_path / "pos.sqlite")


def test_ledger_refuses_a_directory_a_url_and_a_non_ledger(tmp_path: pathlib.Path) -> None:
    with pytest.raises(PosLedgerError, match="is a directory"):
        PosLedger.open(tmp_path)
    with pytest.raises(PosLedgerError, match="is a URL"):
        PosLedger.open("s3://bucket/pos.sqlite")
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PosLedgerError, match="cannot open the POS ledger"):
        PosLedger.open(bad)


class Remote:
    """An object-storage stand-in reached only through ``.open()``."""

    def __init__(self, target: pathlib.Path) -> None:
        self.target = target

    def open(self, mode: str = "rb") -> Any:
        return self.target.open(mode)

    def exists(self) -> bool:
        return self.target.exists()

    def __str__(self) -> str:
        return f"remote://{self.target.name}"


def test_ledger_in_object_storage_is_uploaded(tmp_path: pathlib.Path) -> None:
    remote = Remote(tmp_path / "remote.sqlite")
    with PosLedger.open(remote) as ledger:
        ledger.record("document", "R1", "recorded")
    with PosLedger.open(remote) as ledger:
        assert ledger.states("document", ["R1"]) == {"R1": "recorded"}


def test_spool_groups_lines_by_id_in_source_order_per_phase(tmp_path: pathlib.Path) -> None:
    with LineSpool(str(tmp_path)) as spool:
        for n, key in enumerate(["B", "A", "B", "C", "A"], start=1):
            spool.add(Line(key, 0, n, {"total": n}, {"sku": f"s{n}"}, None))
        spool.add(Line("A", 1, 6, {}, None, "row 6: x"))
        assert spool.count_documents() == 4
        groups = {key: [line.row_number for line in lines] for key, lines in spool.documents(0)}
        assert groups == {"A": [2, 5], "B": [1, 3], "C": [4]}
        ((key, (void,)),) = list(spool.documents(1))
        assert key == "A" and void.problem == "row 6: x"
        raw = pathlib.Path(spool.path).read_bytes()
        assert b"sku" not in raw and b"s1" not in raw  # sealed at rest
        directory = pathlib.Path(spool.path).parent
    assert not directory.exists()
