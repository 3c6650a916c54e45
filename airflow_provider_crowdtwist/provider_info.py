"""Static provider metadata; completed by the hook/sensor work (issue 2 and 6)."""

from __future__ import annotations

PROVIDER_INFO: dict = {
    "package-name": "airflow-provider-crowdtwist",
    "name": "CrowdTwist",
    "description": "Sync warehouse rows into Oracle CrowdTwist loyalty programs.",
}
