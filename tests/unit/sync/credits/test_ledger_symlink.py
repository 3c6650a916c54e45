"""Finding 6 of issue #14: a ledger opened through a symlink is the same ledger, with the same lock.

The probe opened one ledger by its path and a second time through a symlink: two lock files, so the
second run went ahead, recovered the first run's in-flight ``pending`` credits and marked them
``unknown`` while they were still being sent. The lock is now taken on the resolved real path.
"""

from __future__ import annotations

import pathlib

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import (
    PENDING,
    CreditIntent,
    CreditLedger,
    LedgerInUseError,
)


@pytest.mark.parametrize("alias", ["file-symlink", "directory-symlink", "dot-dot"])
def test_a_second_run_through_another_spelling_of_the_path_cannot_touch_in_flight_credits(
    tmp_path: pathlib.Path, alias: str
) -> None:
    real = tmp_path / "ledgers" / "credits.sqlite"
    real.parent.mkdir()
    if alias == "file-symlink":
        other = tmp_path / "link.sqlite"
        other.symlink_to(real)
    elif alias == "directory-symlink":
        (tmp_path / "alias").symlink_to(real.parent, target_is_directory=True)
        other = tmp_path / "alias" / "credits.sqlite"
    else:
        other = tmp_path / "ledgers" / ".." / "ledgers" / "credits.sqlite"
    with CreditLedger.open(real, run_id="first") as first:
        first.mark_pending([CreditIntent("order-1", "a@example.com", "purchase", 10)])
        with pytest.raises(LedgerInUseError):
            CreditLedger.open(other, run_id="second")
        assert first.lookup(["order-1"])["order-1"].state == PENDING  # still in flight, not 'unknown'
