"""Apache Airflow provider for Oracle CrowdTwist loyalty programs."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe the provider to Airflow (entry point ``apache_airflow_provider``).

    Kept free of heavy imports so that Airflow can read it without importing the hook or the client.
    A deep copy is returned because Airflow keeps (and may annotate) the dict it gets, and the
    connection-field definitions inside it are shared with the hook's Airflow 2 form widgets.
    """
    import copy

    from airflow_provider_crowdtwist.provider_info import PROVIDER_INFO

    return {**copy.deepcopy(PROVIDER_INFO), "versions": [__version__]}
