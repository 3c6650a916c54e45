"""A purchase sync in its own process, for the test that kills it with SIGKILL mid-run.

Usage: ``python pos_worker.py API_BASE_URL POS_URL API_KEY LINES_JSONL LEDGER``
"""

from __future__ import annotations

import argparse
import logging
import sys

from airflow_provider_crowdtwist.client.config import ClientConfig
from airflow_provider_crowdtwist.client.pos import CrowdTwistPosClient
from airflow_provider_crowdtwist.sync.purchases import PurchaseSyncConfig, sync_purchases
from airflow_provider_crowdtwist.sync.sources import iter_chunks

WORKER_CONFIG = {"user_attributes": {"email_address": "email"}, "max_workers": 8}


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("base_url", "pos_url", "api_key", "lines", "ledger"):
        parser.add_argument(name)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = ClientConfig(base_url=args.base_url, api_key=args.api_key, backoff_base=0.01, backoff_max=0.05)
    with CrowdTwistPosClient(config, args.pos_url) as client:
        sync_purchases(
            client, iter_chunks(args.lines, 500), PurchaseSyncConfig(**WORKER_CONFIG, ledger_path=args.ledger)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
