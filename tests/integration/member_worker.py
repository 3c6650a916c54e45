"""A member sync in its own process, for the test that kills it with SIGKILL mid-run.

Usage: ``python member_worker.py BASE_URL API_KEY ROWS_JSONL`` (the spool goes to ``$TMPDIR``).
"""

from __future__ import annotations

import argparse
import logging

from airflow_provider_crowdtwist.client.client import CrowdTwistClient
from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.sync.members.sync import MemberSyncConfig, sync_members
from airflow_provider_crowdtwist.sync.sources import iter_chunks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("api_key")
    parser.add_argument("rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = ClientConfig(base_url=args.base_url, api_key=args.api_key, requests_per_minute=0)
    with CrowdTwistClient(config) as client:
        sync_members(client, iter_chunks(args.rows, 500), MemberSyncConfig(max_workers=4))


if __name__ == "__main__":
    main()
