"""The live push receiver: CrowdTwist's member and activity feeds, landed durably as JSON-lines files.

CrowdTwist POSTs every changed member profile and every activity completion to an endpoint of the
client's and retries failures for hours; this package is that endpoint (``crowdtwist-live-push serve``)
and the loading engine that turns the landed files into warehouse rows. Nothing here imports Airflow:
the receiver runs as a plain service, and the load operator is a thin adapter over ``load.py``.
"""

from airflow_provider_crowdtwist.livepush.feeds import FEEDS

__all__ = ["FEEDS"]
