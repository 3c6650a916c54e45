"""The audience sync's settings (``AudienceSyncConfig``), checked once before anything is read or sent.

Why ``values`` is a setting: CrowdTwist types custom attributes per program, and whether a boolean
attribute takes JSON ``true``/``false``, ``1``/``0`` or strings is an OPEN point of the contract
(``crowdtwist-api.md``). The values are sent exactly as given; a program that refuses them answers
the first request, and that answer stops the run (:mod:`.sync`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_crowdtwist.client.config import id_type_problem
from airflow_provider_crowdtwist.sync.audience.identifiers import SEGMENT_HEADERS
from airflow_provider_crowdtwist.sync.audience.segment_file import segment_name_problem
from airflow_provider_crowdtwist.sync.config import RunConfig
from airflow_provider_crowdtwist.sync.summary import SyncConfigError, check_ratio

AudienceMode = Literal["traits", "segment_file", "both"]
TRAIT_MODES = ("traits", "both")
SEGMENT_MODES = ("segment_file", "both")


@dataclass(kw_only=True)
class AudienceSyncConfig(RunConfig):
    """What an audience sync does (issue 25; the operator's arguments carry the same names).

    ``sftp`` is how the segment file reaches the SFTP server: a callable returning a context manager
    that yields an SFTP client (the operator builds it from ``sftp_conn_id``; the engine imports no
    Airflow).
    """

    id_column: str
    mode: AudienceMode = "traits"
    attribute: str | None = None
    values: Any = (True, False)
    state_path: Any = None
    max_exit_ratio: float = 0.1
    segment_name: str | None = None
    segment_dir: str = ""
    sftp: Callable[[], Any] | None = None

    @property
    def traits(self) -> bool:
        return self.mode in TRAIT_MODES

    @property
    def segment(self) -> bool:
        return self.mode in SEGMENT_MODES

    @property
    def value_in(self) -> Any:
        return self.values[0]

    @property
    def value_out(self) -> Any:
        return self.values[1]

    def identity(self) -> dict[str, Any]:
        """What a state was written for: the same members sent the same attribute and values."""
        return {
            "id_type": self.id_type,
            "mode": "segment_file" if not self.traits else "traits",
            "attribute": self.attribute if self.traits else None,
            "values": list(self.values) if self.traits else None,
        }

    def validate_sync(self) -> None:
        if not self.id_column.strip():
            raise SyncConfigError(
                "id_column must name the source column holding the identifiers", "id_column"
            )
        # None until SyncRun.execute resolves it (the connection's): an operator's parse-time check
        problem = id_type_problem(self.id_type) if self.id_type is not None else None
        if problem:
            raise SyncConfigError(problem, "id_type")
        try:
            check_ratio("max_exit_ratio", self.max_exit_ratio)
        except ValueError as exc:
            raise SyncConfigError(str(exc), "max_exit_ratio") from None
        if self.traits:
            self._validate_traits()
        if self.segment:
            self._validate_segment()

    def _validate_traits(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute.strip():
            raise SyncConfigError(
                f"mode={self.mode!r} sets a custom attribute: attribute must name one (a custom_data key "
                "configured in the program)",
                "attribute",
            )
        if self.state_path is None:
            raise SyncConfigError(
                f"mode={self.mode!r} needs state_path: only the audience as last synced tells who left "
                "(and keeps members who stay from costing a request)",
                "state_path",
            )
        values = self.values
        if not isinstance(values, (tuple, list)) or len(values) != 2:
            raise SyncConfigError(
                f"values must be two values, what 'in' and 'out' are sent as, got {values!r}", "values"
            )
        for value in values:
            if isinstance(value, float) and value != value:
                raise SyncConfigError("values must not be NaN", "values")
            if value is None or not isinstance(value, (bool, int, float, str)):
                raise SyncConfigError(
                    "values must be JSON scalars (true/false, numbers or strings); None would clear the "
                    f"attribute, which CrowdTwist may ignore (an OPEN point), got {values!r}",
                    "values",
                )
        if json.dumps(values[0]) == json.dumps(values[1]):
            raise SyncConfigError(f"values must differ: 'in' and 'out' are both {values[0]!r}", "values")

    def _validate_segment(self) -> None:
        problem = segment_name_problem(self.segment_name)
        if problem:
            raise SyncConfigError(problem, "segment_name")
        if self.id_type is not None and self.id_type not in SEGMENT_HEADERS:
            raise SyncConfigError(
                f"a Client Defined Segment file identifies members by {', '.join(SEGMENT_HEADERS)}; "
                f"id_type {self.id_type!r} has no column there",
                "id_type",
            )
        if self.sftp is None:
            raise SyncConfigError(
                f"mode={self.mode!r} uploads a segment file: sftp_conn_id is required", "sftp_conn_id"
            )
        if self.part is not None:
            raise SyncConfigError(
                "a segment file holds the whole audience: it cannot be written by a partition", "partition"
            )
        if not isinstance(self.segment_dir, str):
            raise SyncConfigError("segment_dir must be a directory path on the SFTP server", "segment_dir")
