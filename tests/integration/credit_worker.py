"""A credit sync in its own process, for the test that kills the worker with SIGKILL mid-run.

Usage: ``python credit_worker.py BASE_URL API_KEY ROWS_JSONL LEDGER [--remote] [--chunksize N]
[--remote-batch N]``

``--remote`` treats LEDGER as an object-storage file (reached only through ``.open()``), so the
remote code path (chunk intents uploaded before sending) is what gets killed.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
from typing import Any

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.sync.credits.ledger import CreditLedger
from airflow_provider_crowdtwist.sync.credits.sync import CreditSyncConfig, sync_credits
from airflow_provider_crowdtwist.sync.sources import iter_chunks

WORKER_CONFIG: dict[str, Any] = {
    "id_column": "email",
    "activity_id_column": "activity",
    "points_column": "points",
    "activity_date_column": "ordered_at",
    "extra_data_columns": ["order_id"],
    "dedupe_key_column": "order_id",
    "max_workers": 8,
}


class FileRemote:
    """Object-storage stand-in: a file reached only through ``.open()`` (not a pathlib path)."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = pathlib.Path(target)

    def open(self, mode: str = "rb") -> Any:
        if "r" in mode and not self.target.exists():
            raise FileNotFoundError(self.target)
        if "w" in mode:
            # Write then rename, as object stores do: a reader never sees half an upload.
            return _AtomicWriter(self.target)
        return open(self.target, mode)

    def __str__(self) -> str:
        return f"remote://{self.target}"


class _AtomicWriter:
    def __init__(self, target: pathlib.Path) -> None:
        self.target = target
        self.tmp = target.with_name(target.name + ".upload")
        self.handle = open(self.tmp, "wb")  # noqa: SIM115 - closed in __exit__

    def write(self, data: bytes) -> int:
        return self.handle.write(data)

    def __enter__(self) -> _AtomicWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()
        if exc[0] is None:
            os.replace(self.tmp, self.target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("rows")
    parser.add_argument("ledger")
    parser.add_argument("--remote", action="store_true")
    parser.add_argument("--chunksize", type=int, default=250)
    parser.add_argument("--run-id", default="worker")
    parser.add_argument("--remote-batch", type=int, default=1000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = ClientConfig(base_url=args.base_url, api_key=args.api_key, backoff_base=0.01, backoff_max=0.05)
    location: Any = FileRemote(args.ledger) if args.remote else args.ledger
    with CrowdTwistClient(config) as client, CreditLedger.open(location, run_id=args.run_id) as ledger:
        summary = sync_credits(
            client,
            iter_chunks(args.rows, args.chunksize),
            CreditSyncConfig(**WORKER_CONFIG, run_id=args.run_id, remote_ledger_batch=args.remote_batch),
            ledger,
        )
    print(summary.to_dict(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
