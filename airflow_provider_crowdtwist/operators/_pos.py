"""``CrowdTwistPosOperatorBase``: what the purchase and return operators share.

Both read receipt-shaped lines (one row per item), identify the member the same way, map items the
same way, read offset-less times in one ``timezone`` and keep one kind of ledger; both talk to the
POS host through ``CrowdTwistHook.new_pos_client`` (the connection's ``pos_host`` extra; API key only).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airflow_provider_crowdtwist.assets import pos_asset_uri
from airflow_provider_crowdtwist.client.pos import CrowdTwistPosClient
from airflow_provider_crowdtwist.operators._base import SOURCE_TEMPLATE_FIELDS, CrowdTwistSyncOperatorBase
from airflow_provider_crowdtwist.operators._common import fail_task, parse_time_config
from airflow_provider_crowdtwist.operators._source import resolve_path
from airflow_provider_crowdtwist.operators._synclog import with_run_services
from airflow_provider_crowdtwist.sync.partition import active_partition
from airflow_provider_crowdtwist.sync.purchases.config import PosSyncConfig
from airflow_provider_crowdtwist.sync.purchases.ledger import PosLedgerError
from airflow_provider_crowdtwist.sync.purchases.sync import PosSyncSummary
from airflow_provider_crowdtwist.sync.summary import SyncError

POS_TEMPLATE_FIELDS: tuple[str, ...] = (*SOURCE_TEMPLATE_FIELDS, "ledger_path", "timezone")


class CrowdTwistPosOperatorBase(CrowdTwistSyncOperatorBase):
    """The shared arguments (see :class:`CrowdTwistPurchaseOperator` for their meaning)."""

    template_fields: Sequence[str] = POS_TEMPLATE_FIELDS

    def __init__(
        self,
        *,
        user_id_column: str | None = None,
        user_attributes: Mapping[str, str] | Sequence[str] | None = None,
        item_mapping: Mapping[str, str] | None = None,
        timezone: str = "UTC",
        ledger_path: Any = None,
        max_resends: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.user_id_column = user_id_column
        self.user_attributes = user_attributes
        self.item_mapping = item_mapping
        self.timezone = timezone
        self.ledger_path = ledger_path
        self.max_resends = max_resends

    def _validate_arguments(self) -> None:
        """Fail at DAG parse time on arguments that are not template fields (those wait for execute)."""
        self._validate_shared_arguments()
        parse_time_config(self._sync_config(parse_time=True))

    def _own_config(self, parse_time: bool) -> dict[str, Any]:
        """This operator's own settings for its config (the purchase or return columns)."""
        raise NotImplementedError

    def _config_class(self) -> type[PosSyncConfig]:
        raise NotImplementedError

    def _sync_config(self, *, parse_time: bool = False) -> PosSyncConfig:
        """The engine's config; at parse time without the template fields (not rendered yet)."""
        ledger = self.ledger_path if self.ledger_path not in ("", None) else None
        return self._config_class()(
            **self._own_config(parse_time),
            user_id_column=self.user_id_column,
            user_attributes=self.user_attributes,
            item_mapping=self.item_mapping,
            timezone="UTC" if parse_time else self.timezone,
            ledger_path=None if parse_time or ledger is None else resolve_path(ledger),
            max_resends=self.max_resends,
            rejects_path=resolve_path(self.rejects_path) if self.rejects_path and not parse_time else None,
            **self._run_config_kwargs(parse_time=parse_time),
        )

    def _build_client(self) -> CrowdTwistPosClient:  # type: ignore[override]
        """ONE POS client with ONE rate limiter for all workers; a partition paces at its share."""
        from airflow_provider_crowdtwist.hooks.crowdtwist import CrowdTwistHook

        hook = CrowdTwistHook(crowdtwist_conn_id=self.crowdtwist_conn_id)
        part = active_partition(self.partition)
        given = {} if self.requests_per_minute is None else {"requests_per_minute": self.requests_per_minute}
        client = hook.new_pos_client(
            max_workers=self.max_workers,
            pace=part.share if part is not None else None,
            rate_limit_conn_id=self.rate_limit_conn_id,  # one bucket with the program's other syncs
            **given,
        )
        self._base_url = client.program_url
        return client

    def _run(self, context: Any, engine: Callable[..., PosSyncSummary], what: str) -> dict[str, Any]:
        """Build the client and config, run the engine, end the task the way every sync ends."""
        from airflow_provider_crowdtwist._compat import AirflowException

        self._stop = threading.Event()
        try:
            client = self._build_client()
            config = with_run_services(self, self._sync_config(), client, context, what)
            chunks = self._source_chunks()
        except ValueError as exc:  # CrowdTwistConfigError too: a bad connection fails without retry
            raise fail_task(exc, context) from None
        with client:
            self.log.info(
                "Sending %s to the CrowdTwist POS host %s: max_workers=%d, %s requests/min, ledger %s%s",
                what,
                client.config.base_url,
                self.max_workers,
                client.config.requests_per_minute or "unlimited",
                config.ledger_path or "none",
                ", dry run" if self.dry_run else "",
            )
            try:
                summary = engine(client, chunks, config, self.log)
            except (SyncError, ValueError) as exc:
                raise fail_task(exc, context) from None
            except PosLedgerError as exc:  # busy, or storage briefly down: a retry may help
                raise AirflowException(str(exc)) from None
        return self._complete(summary.to_dict(), context)

    def _asset_uri(self, base_url: str) -> str:
        return pos_asset_uri(base_url, self.asset_object)
