"""Everything one receiver is configured with, checked before it listens (bad configuration never serves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_crowdtwist.livepush.auth import PushAuth
from airflow_provider_crowdtwist.livepush.store import RollPolicy

DEFAULT_MAX_BODY_BYTES = 1024 * 1024  # a profile is ~2 KB; custom data keeps it far below 1 MiB
DEFAULT_BODY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ReceiverSettings:
    output: str
    auth: PushAuth = field(default_factory=PushAuth)
    spool_dir: Path | None = None
    roll: RollPolicy = field(default_factory=RollPolicy)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # The whole body must arrive within this time: a client trickling bytes gets a 408, not a worker.
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    # Dotted path in the profile (``thirdPartyId``, ``customData.crm_id``) answered as ``third_party_id``.
    third_party_id_field: str | None = None

    def validate(self) -> None:
        if not self.output:
            raise ValueError("--output is required")
        if self.max_body_bytes < 1024:
            raise ValueError("--max-body-bytes must be at least 1024")
        if self.body_timeout_s <= 0:
            raise ValueError("--body-timeout must be > 0")
        if self.roll.max_batch < 0:
            raise ValueError("--max-batch must be >= 0 (0 = group commit)")
        if self.roll.max_bytes < 1 or self.roll.max_seconds <= 0:
            raise ValueError("--roll-bytes and --roll-seconds must be > 0")
        if self.third_party_id_field is not None:
            if self.auth.enabled:
                raise ValueError(
                    "--third-party-id-field works only without authentication: CrowdTwist reads "
                    "third_party_id from the response only when the endpoint has no authentication"
                )
            if not self.third_party_id_field.strip() or any(
                not part for part in self.third_party_id_field.split(".")
            ):
                raise ValueError(f"--third-party-id-field: invalid field path {self.third_party_id_field!r}")
