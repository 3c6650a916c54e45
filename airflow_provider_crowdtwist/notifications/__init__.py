"""Notifiers for CrowdTwist syncs (Airflow's ``BaseNotifier`` family)."""

from airflow_provider_crowdtwist.notifications.alert import CrowdTwistAlertNotifier

__all__ = ["CrowdTwistAlertNotifier"]
