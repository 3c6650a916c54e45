"""Apache Airflow provider for Oracle CrowdTwist loyalty programs."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``).

    Kept free of imports so that Airflow can read it without importing the hook.
    """
    from airflow_provider_crowdtwist.provider_info import PROVIDER_INFO

    return {**PROVIDER_INFO, "versions": [__version__]}
