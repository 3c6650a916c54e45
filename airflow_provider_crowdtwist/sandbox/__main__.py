"""``python -m airflow_provider_crowdtwist.sandbox``: the same as the ``crowdtwist-sandbox`` command."""

from airflow_provider_crowdtwist.sandbox.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
