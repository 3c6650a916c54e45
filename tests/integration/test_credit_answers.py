"""Credits answered oddly after CrowdTwist applied them, over real HTTP, with no server-side dedupe.

The sandbox applies each credit and then answers a fraction of them in a way a client could misread
(``odd_answer_rate``): an HTML 200, a 200 without a body, a 202, a 200 compressed as ``x-gzip``, a 200
preceded by ``103 Early Hints``. With the duplicate window off, a credit recorded ``failed`` after such
an answer would be sent again by the next run and awarded twice. The truth is the sandbox's own record
of applied awards, never what the engine says (docs/activity-credits.md, the answer table).
"""

from __future__ import annotations

import collections
import pathlib
from typing import Any

import pytest

from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from tests.integration.test_credit_sync import (
    applied_per_key,
    config,
    create_members,
    credit_requests,
    credit_rows,
    run_sync,
)

pytestmark = pytest.mark.integration

CREDITS = 600


def _states(path: pathlib.Path) -> collections.Counter[str]:
    with CreditLedger.open(path) as ledger:
        return collections.Counter(e.state for e in ledger.entries())


def _two_runs(sandbox: Any, client: Any, tmp_path: pathlib.Path, **faults: Any) -> tuple[Any, Any]:
    emails = create_members(client, 50)
    sandbox.admin.configure(dedupe_window_s=0.0)  # CrowdTwist deduplicating nothing: the hard reading
    sandbox.admin.set_faults(fault_routes=["credit"], seed=20261208, **faults)
    rows = credit_rows(CREDITS, emails)
    ledger = tmp_path / "ledger.sqlite"
    first = run_sync(client, rows, config(run_id="r1", verify_delay=0.2), ledger)
    second = run_sync(client, rows, config(run_id="r2", verify_delay=0.2), ledger)
    awards = applied_per_key(sandbox)
    assert set(awards) == {r["order_id"] for r in rows}, "a credit was lost"
    assert max(awards.values()) == 1, "a dedupe key was awarded twice"
    assert _states(ledger) == {"credited": CREDITS}
    return first, second


@pytest.mark.timeout(180)
def test_html_empty_or_202_answers_are_verified_never_resent_blind(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    first, second = _two_runs(
        sandbox,
        client,
        tmp_path,
        odd_answer_rate=0.05,
        odd_answers=["html_200", "empty_200", "accepted_202"],
    )
    # The odd answers happened, and each was settled by looking in the history, not by believing.
    assert first.verified > 0 and first.history_requests > 0
    assert first.count("credited") == CREDITS and first.count("failed") == 0
    before = credit_requests(sandbox)
    assert second.count("skipped") == CREDITS
    assert credit_requests(sandbox) == before


@pytest.mark.timeout(180)
def test_x_gzip_and_early_hints_answers_are_read_as_the_success_they_are(
    sandbox: Any, client_for: Any, tmp_path: pathlib.Path
) -> None:
    client = client_for(sandbox)
    first, second = _two_runs(
        sandbox, client, tmp_path, odd_answer_rate=0.2, odd_answers=["x_gzip", "early_hints"]
    )
    # Decoded and skipped in the transport: credited on the answer itself, no look-up needed.
    assert first.count("credited") == CREDITS and first.verified == 0 and first.history_requests == 0
    assert sandbox.admin.stats()["by_route"]  # the sandbox served them
    assert second.count("skipped") == CREDITS
