"""``CrowdTwistAudienceSyncOperator``: a warehouse audience -> a CrowdTwist member trait and/or segment file.

A thin adapter like the other sync operators: it checks arguments, turns the source arguments into
DataFrame chunks, builds ONE rate-limited client, and calls the engine (``sync.audience.sync``), which
has no Airflow import. The segment file travels over the SFTP provider's connection
(``apache-airflow-providers-sftp``, the ``sftp`` extra), imported only when a segment file is written.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from airflow_provider_crowdtwist.assets import AUDIENCES
from airflow_provider_crowdtwist.operators._base import SOURCE_TEMPLATE_FIELDS, CrowdTwistSyncOperatorBase
from airflow_provider_crowdtwist.operators._common import fail_task, parse_time_config
from airflow_provider_crowdtwist.operators._source import resolve_path
from airflow_provider_crowdtwist.operators._synclog import with_run_services
from airflow_provider_crowdtwist.sync.audience.config import SEGMENT_MODES, AudienceSyncConfig
from airflow_provider_crowdtwist.sync.audience.sync import sync_audience
from airflow_provider_crowdtwist.sync.paths import FileInUseError
from airflow_provider_crowdtwist.sync.summary import SyncError

SFTP_EXTRA = "pip install 'airflow-provider-crowdtwist[sftp]' (apache-airflow-providers-sftp)"


@contextlib.contextmanager
def sftp_client(sftp_conn_id: str) -> Iterator[Any]:
    """A paramiko SFTP client from the SFTP provider's connection, closed afterwards."""
    from airflow.providers.sftp.hooks.sftp import SFTPHook

    hook = SFTPHook(ssh_conn_id=sftp_conn_id)
    try:
        yield hook.get_conn()
    finally:
        hook.close_conn()


class CrowdTwistAudienceSyncOperator(CrowdTwistSyncOperatorBase):
    """Keep a warehouse audience in CrowdTwist: as a custom attribute of its members, and/or as a
    Client Defined Segment file on CrowdTwist's SFTP.

    The source (``sql`` + ``sql_conn_id``, ``rows`` or ``source_path``) returns the members IN the
    audience, one identifier a row (``id_column``, ``id_type``). Only changes are sent: members
    entering get ``values[0]``, members leaving get ``values[1]``, members who stay cost nothing.

    :param attribute: the custom_data key that holds the audience (configured in the program).
    :param values: what "in" and "out" are sent as (default ``(True, False)``; ``(1, 0)`` or
        ``("true", "false")`` for programs whose attribute takes those).
    :param state_path: the audience as last synced (SQLite; local or object storage). Required for
        traits; with a segment file only, it lets the guards compare.
    :param max_exit_ratio: the guard: a run in which more than this share of the audience as last
        synced would leave (default 0.1), or an empty audience, stops before any write.
    :param dry_run: read and compare, send and upload nothing; list who would enter and leave.
    :param mode: ``traits`` (default), ``segment_file`` or ``both``.
    :param segment_name: the segment's name: ``[segment_name]_YYYYMMDD_[VERSION].csv``.
    :param sftp_conn_id: the SFTP provider's connection to CrowdTwist's SFTP server.
    :param segment_dir: the program's directory on that server (default: the login directory).

    .. seealso:: docs/audience.md
    """

    template_fields: Sequence[str] = (
        *SOURCE_TEMPLATE_FIELDS,
        "state_path",
        "segment_name",
        "segment_dir",
        "sftp_conn_id",
    )
    ui_color = "#d9e7f7"
    asset_object = AUDIENCES

    def __init__(
        self,
        *,
        attribute: str | None = None,
        values: Sequence[Any] = (True, False),
        state_path: Any = None,
        max_exit_ratio: float = 0.1,
        mode: str = "traits",
        segment_name: str | None = None,
        sftp_conn_id: str | None = None,
        segment_dir: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.attribute = attribute
        self.values = tuple(values) if isinstance(values, (list, tuple)) else values
        self.state_path = state_path
        self.max_exit_ratio = max_exit_ratio
        self.mode = mode
        self.segment_name = segment_name
        self.sftp_conn_id = sftp_conn_id
        self.segment_dir = segment_dir
        self._validate_arguments()

    def _validate_arguments(self) -> None:
        self._validate_shared_arguments()
        parse_time_config(self._sync_config(parse_time=True))

    def _sync_config(self, *, parse_time: bool = False) -> AudienceSyncConfig:
        """The engine's config; at parse time template fields count only as given or not."""

        def path(value: Any) -> Any:
            return None if not value else (value if parse_time else resolve_path(value))

        segment = self.mode in SEGMENT_MODES
        sftp = None
        if self.sftp_conn_id:
            conn_id = self.sftp_conn_id

            def sftp() -> Any:
                return sftp_client(conn_id)

        return AudienceSyncConfig(
            id_column=self.id_column,
            id_type=self.id_type,
            mode=self.mode,  # type: ignore[arg-type]  # checked by the engine
            attribute=self.attribute,
            values=self.values,
            state_path=path(self.state_path),
            max_exit_ratio=self.max_exit_ratio,
            # a template is rendered in execute: at parse time only whether it is given is checked
            segment_name=("segment" if self.segment_name else None) if parse_time else self.segment_name,
            segment_dir="" if parse_time else self.segment_dir,
            sftp=sftp if segment else None,
            rejects_path=None if parse_time else path(self.rejects_path),
            **self._run_config_kwargs(parse_time=parse_time),
        )

    def _asset_uri(self, base_url: str) -> str:
        """``crowdtwist://<host>/audiences/<attribute or segment_name>``."""
        from airflow_provider_crowdtwist.assets import audience_asset_uri

        return audience_asset_uri(base_url, str(self.attribute or self.segment_name))

    def execute(self, context: Any) -> dict[str, Any]:
        """Read the audience, compare, send the changes and/or upload the file; the summary (XCom)."""
        self._stop = threading.Event()
        try:
            if self.mode in SEGMENT_MODES and importlib.util.find_spec("airflow.providers.sftp") is None:
                raise ValueError(f"mode={self.mode!r} uploads a segment file over SFTP: {SFTP_EXTRA}")
            config = self._sync_config()
            client = self._build_client()
            config = with_run_services(self, config, client, context, "audience")
        except ValueError as exc:
            raise fail_task(exc, context) from None
        with client:
            try:
                self.log.info(
                    "Syncing an audience to CrowdTwist: mode=%s, attribute=%s, segment=%s, id_type=%s%s",
                    self.mode,
                    self.attribute,
                    self.segment_name,
                    self.id_type or client.config.id_type,
                    ", dry run" if self.dry_run else "",
                )
                summary = sync_audience(client, self._source_chunks(), config, self.log)
            except (SyncError, FileInUseError, ValueError) as exc:
                raise fail_task(exc, context) from None
        return self._complete(summary.to_dict(), context)
