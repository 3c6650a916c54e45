"""Settling ``unknown`` credits: wait, look in the activity history, resend only what is verified absent.

Why it is built this way: ``docs/sync-design.md``, section ``sync/credits/settle.py``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from airflow_provider_crowdtwist.sync.credits.ledger import CREDITED, UNKNOWN, CreditLedger
from airflow_provider_crowdtwist.sync.credits.mapping import CreditRequest
from airflow_provider_crowdtwist.sync.credits.verify import CreditVerifier, SettleQueue, Verdict
from airflow_provider_crowdtwist.sync.outcomes import Answer, Outcome

__all__ = [
    "DEFAULT_VERIFY_DELAY",
    "DEFAULT_VERIFY_RESENDS",
    "CreditSettler",
    "SendAnswer",
    "Settled",
    "Unsettled",
    "check_verify_settings",
]

#: Seconds from an ambiguous answer to the look-up: Oracle says awards land "generally within seconds".
DEFAULT_VERIFY_DELAY = 30.0
#: Resends of one credit verified absent, per run.
DEFAULT_VERIFY_RESENDS = 3
_MAX_VERIFY_RESENDS = 100


def check_verify_settings(verify_delay: object, verify_resends: object) -> None:
    """``verify_delay``: seconds >= 0; ``verify_resends``: a whole number 0..100. Raise naming the field."""
    if (
        isinstance(verify_delay, bool)
        or not isinstance(verify_delay, (int, float))
        or not math.isfinite(verify_delay)
        or verify_delay < 0
    ):
        raise ValueError(f"verify_delay must be a number of seconds >= 0, got {verify_delay!r}")
    if (
        isinstance(verify_resends, bool)
        or not isinstance(verify_resends, int)
        or not 0 <= verify_resends <= _MAX_VERIFY_RESENDS
    ):
        raise ValueError(
            f"verify_resends must be a whole number from 0 to {_MAX_VERIFY_RESENDS}, got {verify_resends!r}"
        )


@dataclass(frozen=True)
class Unsettled:
    """A credit waiting to be settled. ``row`` is its source row in this run (0: an earlier run's key)."""

    req: CreditRequest
    row: int = 0
    resends: int = 0
    message: str = "unresolved"
    blind: bool = False  # cannot be verified (no key in extra_data): only resend_unknown may resend it


@dataclass(frozen=True)
class SendAnswer(Answer):
    """What one send of a credit ended in (the credit sync classifies the client's answer)."""

    already_processed: bool = False
    not_awarded: bool = False


@dataclass(frozen=True)
class Settled:
    """A credit's final state for this run."""

    item: Unsettled
    outcome: Outcome
    message: str
    code: str | None = None
    status: int | None = None
    verified: bool = False


@dataclass(frozen=True)
class _Step:
    settled: Settled | None = None
    again: Unsettled | None = None  # sent again and ambiguous once more: the next cycle
    resent: bool = False
    already_processed: bool = False


class CreditSettler:
    """Settles ``unknown`` credits in bounded verify-then-resend cycles (``docs/sync-design.md``)."""

    def __init__(
        self,
        ledger: CreditLedger,
        verifier: CreditVerifier,
        send: Callable[[CreditRequest], SendAnswer],
        parallel: Callable[[Iterable[Unsettled], Callable[[Unsettled], _Step]], Iterator[tuple[Any, Any]]],
        *,
        verify_delay: float,
        verify_resends: int,
        resend_unknown: bool,
        stop: threading.Event,
        log: logging.Logger | logging.LoggerAdapter,
        clock: Callable[[], float] = time.time,
        sleep_until: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        self.ledger = ledger
        self.verifier = verifier
        self._send = send
        self._parallel = parallel
        self.verify_delay = verify_delay
        self.verify_resends = verify_resends
        self.resend_unknown = resend_unknown
        self.stop = stop
        self.log = log
        self._clock = clock
        self.queue: SettleQueue[Unsettled] = SettleQueue(clock=clock, sleep_until=sleep_until)
        self.verified = 0
        self.resent = 0
        self.already_processed = 0

    def __len__(self) -> int:
        return len(self.queue)

    def add(self, item: Unsettled, unknown_since: float | None = None) -> None:
        """Queue a credit; it is looked up ``verify_delay`` after ``unknown_since`` (default: now)."""
        since = self._clock() if unknown_since is None else unknown_since
        self.queue.add(item, since + self.verify_delay)

    def settle(self, *, wait: bool) -> Iterator[Settled]:
        """Settle queued credits; yield each final state. ``wait=False``: only those already due."""
        while len(self.queue) and not self.stop.is_set():
            if not wait and self.queue.due_in() > 0:
                return
            batch = self.queue.next_batch(self.stop)
            if not batch:
                continue
            for item, result in self._parallel(batch, self._step):
                if not isinstance(result, _Step):  # the work raised: the key stays unknown
                    yield Settled(item, Outcome.UNKNOWN, f"not verified: {result}", "verify_error")
                    continue
                self.resent += result.resent
                self.already_processed += result.already_processed
                if result.again is not None:
                    self.add(result.again)
                elif result.settled is not None:
                    self.verified += result.settled.verified
                    yield result.settled
        if wait or self.stop.is_set():
            for item in self.queue.drain():
                why = "the task was stopped" if self.stop.is_set() else "the run ended"
                yield Settled(item, Outcome.UNKNOWN, f"{item.message}; not verified: {why}", "unknown")

    # ------------------------------------------------------------------ one cycle of one credit

    def _step(self, item: Unsettled) -> _Step:
        req = item.req
        entry = self.ledger.get(req.dedupe_key)
        if entry is None or entry.state != UNKNOWN:
            # Changed meanwhile by another writer of a shared (remote) ledger: not this run's to settle.
            state = entry.state if entry is not None else "absent"
            message = f"{item.message}; the ledger says {state!r} now, not settled by this run"
            return _Step(Settled(item, Outcome.UNKNOWN, message, "ledger"))
        if item.blind or req.dedupe_extra_key is None:
            if self.resend_unknown and item.resends < self.verify_resends:
                return self._resend(item, "resent without proof (resend_unknown=True)", checked=False)
            return self._stays(item, f"{item.message}; cannot be verified: the credit does not carry its key")
        check = self.verifier.check(
            req.user_id,
            req.id_type,
            req.dedupe_extra_key,
            req.dedupe_key,
            first_sent_at=entry.first_sent_at,
            activity_date=req.activity_date,
        )
        if check.verdict is Verdict.FOUND:
            self.ledger.record(req.dedupe_key, CREDITED, check.message, checked=True)
            return _Step(Settled(item, Outcome.CREDITED, check.message, verified=True))
        if check.verdict is Verdict.UNREACHABLE:
            if self.resend_unknown and item.resends < self.verify_resends:
                return self._resend(
                    item, f"{check.message}; resent without proof (resend_unknown=True)", checked=True
                )
            return self._stays(item, f"{item.message}; {check.message}", checked=True)
        if item.resends >= self.verify_resends:
            return self._stays(
                item,
                f"{check.message} after {item.resends + 1} send(s); not sent again in this run "
                f"(verify_resends={self.verify_resends})",
                checked=True,
            )
        return self._resend(item, f"{check.message} {self.verify_delay:g} s after the ambiguous answer")

    def _stays(self, item: Unsettled, message: str, *, checked: bool = False) -> _Step:
        self.ledger.record(item.req.dedupe_key, UNKNOWN, message, checked=checked)
        return _Step(Settled(item, Outcome.UNKNOWN, message, "unknown"))

    def _resend(self, item: Unsettled, why: str, *, checked: bool = True) -> _Step:
        if not self.ledger.mark_resend(item.req.dedupe_key, checked=checked):
            return _Step(Settled(item, Outcome.UNKNOWN, f"{why}; the ledger changed, not resent", "ledger"))
        answer = self._send(item.req)
        processed = answer.already_processed
        if answer.outcome is Outcome.UNKNOWN:
            again = replace(item, resends=item.resends + 1, message=answer.message or "unresolved")
            return _Step(again=again, resent=True, already_processed=processed)
        message = f"{why}; sent again: {answer.message or answer.outcome.value}"
        settled = Settled(item, answer.outcome, message, answer.code, answer.status)
        return _Step(settled, resent=True, already_processed=processed)
