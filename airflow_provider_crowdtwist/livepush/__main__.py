"""``python -m airflow_provider_crowdtwist.livepush``: the same as the ``crowdtwist-live-push`` command."""

from airflow_provider_crowdtwist.livepush.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
