"""The member sync's per-item work, on the worker threads: one member sent, or one member removed.

Why it is built this way: ``docs/sync-design.md``, section ``sync/members/send.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from airflow_provider_crowdtwist.client.client import split_update_only
from airflow_provider_crowdtwist.client.config import PII_FREE_ID_TYPES
from airflow_provider_crowdtwist.client.errors import (
    CrowdTwistError,
    CrowdTwistNotFoundError,
    CrowdTwistValidationError,
)
from airflow_provider_crowdtwist.sync.members.config import MemberOutcome, MemberSyncConfig
from airflow_provider_crowdtwist.sync.members.mapping import CREATE_REQUIREMENTS, MemberMapping
from airflow_provider_crowdtwist.sync.members.removal import RemovedMember, removal_body
from airflow_provider_crowdtwist.sync.members.spool import SpooledRow
from airflow_provider_crowdtwist.sync.outcomes import Outcome, RowResult
from airflow_provider_crowdtwist.sync.protocol import SyncClient
from airflow_provider_crowdtwist.sync.run import RowRef, SyncRun
from airflow_provider_crowdtwist.sync.validation import check_create

EMAIL_TAKEN = "already taken"


class MemberClient(SyncClient, Protocol):
    """What the member sync calls on the client (``CrowdTwistClient`` is one)."""

    def create_user(self, fields: Mapping[str, Any]) -> Any: ...
    def update_user(self, user_id: str, fields: Mapping[str, Any], id_type: str | None = None) -> Any: ...
    def get_user(self, user_id: str, id_type: str | None = None, *, pii: bool = True) -> Any: ...
    def delete_user(self, user_id: str, id_type: str | None = None) -> Any: ...


class UpsertOrder:
    """Which request an upsert tries first, learned from the answers so far in this run."""

    #: Weight of each new answer in the moving average: about the last 40 rows decide.
    SMOOTHING = 0.05

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.new_share = 0.0
        self._lock = threading.Lock()

    @property
    def create_first(self) -> bool:
        return self.enabled and self.new_share > 0.5

    def observe(self, *, was_new: bool) -> None:
        with self._lock:
            self.new_share += self.SMOOTHING * ((1.0 if was_new else 0.0) - self.new_share)


class MemberSender:
    """The per-row work done on a worker thread: one member, one (or in upsert's 404 case, two) requests."""

    def __init__(self, run: SyncRun, client: MemberClient, mapping: MemberMapping) -> None:
        self.run = run
        self.client = client
        self.mapping = mapping
        self.mode = mapping.mode
        self.id_type = mapping.id_type
        self.dry_run = run.config.dry_run
        self.order = UpsertOrder(enabled=self.id_type == "email")

    def __call__(self, row: SpooledRow) -> RowResult:
        payload = json.loads(row.payload_json)
        if row.reactivate:  # an earlier run deactivated this member; it is back in the source
            payload["is_active"] = 1
        try:
            if self.dry_run:
                return self._dry_run(row, payload)
            if self.mode == "insert":
                self._create(row, payload)
                return self._ok(row, Outcome.CREATED)
            if self.mode == "update":
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, _updated(row))
            return self._upsert(row, payload)
        except Exception as exc:  # every error, a bug included, becomes the row's outcome in one place
            return self.run.error_result(row_ref(row, payload), exc)

    def _create_first(self, row: SpooledRow) -> bool:
        """POST before PUT? With a state: for exactly the members it has never seen (one request a row
        on every run); without one, as the upsert order learned. Email ids only: "already taken" is
        the one documented answer that tells an existing member."""
        if row.known is None:
            return self.order.create_first
        return self.id_type == "email" and not row.known

    def _upsert(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        if self._create_first(row) and self._cannot_create(row, payload) is None:
            return self._create_then_update(row, payload)
        try:
            self.client.update_user(row.identifier, payload, id_type=self.id_type)
            self.order.observe(was_new=False)
            return self._ok(row, _updated(row))
        except CrowdTwistNotFoundError as not_found:
            self.order.observe(was_new=True)
            if self.id_type == "id":
                why = "member not found (id_type 'id': CrowdTwist assigns ids, it cannot be created)"
                return self.run.result(
                    row_ref(row, payload), Outcome.REJECTED, why, code=not_found.code, status=not_found.status
                )
            cannot_create = self._cannot_create(row, payload)
            if cannot_create is not None:
                return cannot_create
        # The PUT said "no such member". Should the POST say "already taken", either our own earlier
        # POST landed without an answer (a dropped connection, retried), or another writer created it
        # meanwhile. Either way the member now exists: update it, once.
        return self._create_then_update(row, payload)

    def _create_then_update(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        """POST; on "email_address already taken" the member exists: one PUT updates it."""
        try:
            self._create(row, payload)
        except CrowdTwistValidationError as exc:
            if self.id_type == "email" and _email_taken(exc.message):
                self.order.observe(was_new=False)
                self.client.update_user(row.identifier, payload, id_type=self.id_type)
                return self._ok(row, _updated(row))
            raise
        self.order.observe(was_new=True)
        return self._ok(row, Outcome.CREATED)

    def _create(self, row: SpooledRow, payload: dict[str, Any]) -> None:
        """POST the member; then PUT what the create does not take (``is_active``, ``remove_points``)."""
        body, update_only = split_update_only(payload)
        # A new member has nothing to clear: nulls (null_values="clear") stay out of the create.
        self.client.create_user({k: v for k, v in body.items() if v is not None})
        if not update_only:
            return
        try:
            self.client.update_user(row.identifier, update_only, id_type=self.id_type)
        except CrowdTwistError as exc:
            exc.message = (
                f"member created, but the update that sets {', '.join(sorted(update_only))} "
                f"failed: {exc.message}"
            )
            raise

    def _dry_run(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult:
        # No writes: find out whether the member exists (a read) to report what would happen.
        if self.mode == "insert":
            return self._ok(row, Outcome.CREATED)
        try:
            # Only existence matters: no personal data is read where CrowdTwist allows it (O:UserProfile).
            pii = self.id_type not in PII_FREE_ID_TYPES
            self.client.get_user(row.identifier, id_type=self.id_type, pii=pii)
            return self._ok(row, _updated(row))
        except CrowdTwistNotFoundError as exc:
            if self.mode == "update" or self.id_type == "id":
                ref = row_ref(row, payload)
                return self.run.result(
                    ref, Outcome.REJECTED, "member not found", code=exc.code, status=exc.status
                )
            cannot_create = self._cannot_create(row, payload)
            if cannot_create is not None:
                return cannot_create
            return self._ok(row, Outcome.CREATED)

    def _cannot_create(self, row: SpooledRow, payload: dict[str, Any]) -> RowResult | None:
        """A member that is not there is created only with the documented create rules met: the names
        and email address, and a postal code that fits (``check_create``). A location that is missing
        is not one of them (OPEN): the create is sent and CrowdTwist's answer is the row's outcome."""
        problem = check_create(payload)
        if not problem:
            return None
        name, reason = problem
        why = f"member not found, and cannot create it: {self.mapping.field_label(name)}: {reason}"
        return self.run.result(row_ref(row, payload), Outcome.REJECTED, why, code=CREATE_REQUIREMENTS)

    @staticmethod
    def _ok(row: SpooledRow, outcome: Outcome | MemberOutcome) -> RowResult:
        return RowResult(row.row_number, row.identifier, outcome)


class MemberRemover:
    """The per-member work for members who left the source: one PUT (deactivate) or one DELETE."""

    def __init__(self, run: SyncRun, client: MemberClient, config: MemberSyncConfig) -> None:
        self.run = run
        self.client = client
        self.id_type = config.id_type
        self.delete = config.on_removed == "delete"
        self.body = removal_body(config.remove_points_on_deactivate)
        self.dry_run = config.dry_run

    @staticmethod
    def ref(member: RemovedMember) -> RowRef:
        return RowRef(0, member.identifier, label=f"member {member.identifier} (left the source)")

    def __call__(self, member: RemovedMember) -> RowResult:
        if self.dry_run:  # what a dry run records: the outcome a real run would try for
            outcome = MemberOutcome.DELETED if self.delete else MemberOutcome.DEACTIVATED
            return self.run.result(self.ref(member), outcome, "dry run: would be removed")
        if self.delete:  # an error raises to the frame, which makes it the member's outcome
            self.client.delete_user(member.identifier, id_type=self.id_type)
            return self.run.result(self.ref(member), MemberOutcome.DELETED, "deletion queued")
        self.client.update_user(member.identifier, dict(self.body), id_type=self.id_type)
        return self.run.result(self.ref(member), MemberOutcome.DEACTIVATED, "deactivated")


def _updated(row: SpooledRow) -> Outcome | MemberOutcome:
    return MemberOutcome.REACTIVATED if row.reactivate else Outcome.UPDATED


def row_ref(row: SpooledRow, payload: dict[str, Any] | None = None) -> RowRef:
    return RowRef(row.row_number, row.identifier, payload if payload is not None else row.payload)


def _email_taken(message: str | None) -> bool:
    """CrowdTwist's answer to a create for an email it has ("email_address already taken")."""
    text = (message or "").lower()
    return EMAIL_TAKEN in text and "email" in text
