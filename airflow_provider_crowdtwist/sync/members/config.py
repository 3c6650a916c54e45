"""The member sync's settings and its extra outcomes: what ``sync_members`` is asked to do.

``MemberSyncConfig`` is checked field by field against its annotations (``RunConfig.validate``); the
rules its types do not say are in :meth:`MemberSyncConfig.validate_sync`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.members.mapping import (
    MemberMapping,
    MemberMode,
    MemberSyncConfigError,
    NullValues,
    UnmappedPolicy,
)
from airflow_provider_crowdtwist.sync.summary import SyncConfigError

OnRemoved = Literal["ignore", "deactivate", "delete"]


class MemberOutcome(str, Enum):
    """The member sync's outcomes beyond :class:`~.outcomes.Outcome` (declared to the frame)."""

    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    REACTIVATED = "reactivated"

    def __str__(self) -> str:
        return self.value


@dataclass(kw_only=True)
class MemberSyncConfig(RunConfig):
    """Settings of one member sync (the operator's arguments, minus the source and the connection).

    ``id_type=None`` takes the client's (the connection's) default, resolved once by the frame. The
    shared settings (workers, thresholds, rejects, dry run, stop event) are those of ``RunConfig``.
    """

    id_column: str = "user_id"
    field_mapping: Mapping[str, str] | None = None
    unmapped_columns: UnmappedPolicy = "custom_data"
    mode: MemberMode = "upsert"
    state_path: Any = None
    spool_dir: str | None = None
    #: What happens to members the state knows and the (complete) source no longer has.
    on_removed: OnRemoved = "ignore"
    #: With ``on_removed="deactivate"``: also wipe their points (``remove_points: 1``).
    remove_points_on_deactivate: bool = False
    #: The guard: a run that would remove more than this share of the state's members fails.
    max_removed_ratio: float = 0.1
    #: A zero-row source removes nothing unless this is set (an empty query is usually a broken one).
    allow_empty_source_removal: bool = False
    #: Ignore the state's "unchanged" verdict for this run: every row is sent and re-recorded.
    full_refresh: bool = False
    #: ``skip``: a null cell leaves CrowdTwist's value alone; ``clear``: it clears the field.
    null_values: NullValues = "skip"
    #: Keys the state's fingerprints (with a per-state salt). Default: the client's API key or HMAC
    #: private key, so that the secret lives where the connection lives, never in the state file.
    state_key: str | None = None

    def mapping(self) -> MemberMapping:
        """The :class:`MemberMapping` for these settings (validated)."""
        mapping = MemberMapping(
            id_column=self.id_column,
            id_type=self.id_type or "email",
            field_mapping=dict(self.field_mapping)
            if isinstance(self.field_mapping, Mapping)
            else self.field_mapping,
            unmapped_columns=self.unmapped_columns,
            mode=self.mode,
            null_values=self.null_values,
        )
        mapping.validate()
        return mapping

    def validate(self) -> None:
        """Check every setting; raise :class:`MemberSyncConfigError` naming the field."""
        try:
            super().validate()
        except MemberSyncConfigError:
            raise
        except SyncConfigError as exc:
            raise MemberSyncConfigError(str(exc), exc.field) from None

    def validate_sync(self) -> None:
        self.mapping()
        if not 0.0 <= float(self.max_removed_ratio) <= 1.0:
            raise MemberSyncConfigError(
                f"max_removed_ratio must be between 0 and 1, got {self.max_removed_ratio!r}",
                "max_removed_ratio",
            )
        if not self.state_path:
            for name, value, default in (
                ("on_removed", self.on_removed, "ignore"),
                ("full_refresh", self.full_refresh, False),
            ):
                if value != default:
                    raise MemberSyncConfigError(
                        f"{name}={value!r} needs state_path: only the member state knows which members "
                        "earlier syncs wrote",
                        name,
                    )
        if self.remove_points_on_deactivate and self.on_removed != "deactivate":
            raise MemberSyncConfigError(
                "remove_points_on_deactivate=True applies only with on_removed='deactivate' "
                f"(on_removed is {self.on_removed!r})",
                "remove_points_on_deactivate",
            )
