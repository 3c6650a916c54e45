"""A local emulator of the CrowdTwist REST API, for testing DAGs without touching a loyalty program.

``SandboxServer`` runs it in this process (a background thread); ``SandboxProcess`` runs it as a child
process that dies with its parent; ``crowdtwist-sandbox --port N`` runs it from a shell. None of it
imports Airflow, and it needs nothing beyond the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_crowdtwist.sandbox.settings import (
    DEFAULT_API_KEY,
    DEFAULT_HMAC_PRIVATE_KEY,
    DEFAULT_HMAC_PUBLIC_KEY,
    ActivityDef,
    SandboxSettings,
)

if TYPE_CHECKING:
    from airflow_provider_crowdtwist.sandbox.admin import SandboxAdmin
    from airflow_provider_crowdtwist.sandbox.process import SandboxProcess
    from airflow_provider_crowdtwist.sandbox.server import SandboxServer

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_HMAC_PRIVATE_KEY",
    "DEFAULT_HMAC_PUBLIC_KEY",
    "ActivityDef",
    "SandboxAdmin",
    "SandboxProcess",
    "SandboxServer",
    "SandboxSettings",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m ...sandbox` imports only what the server needs (fast start).
    if name == "SandboxServer":
        from airflow_provider_crowdtwist.sandbox.server import SandboxServer

        return SandboxServer
    if name == "SandboxProcess":
        from airflow_provider_crowdtwist.sandbox.process import SandboxProcess

        return SandboxProcess
    if name == "SandboxAdmin":
        from airflow_provider_crowdtwist.sandbox.admin import SandboxAdmin

        return SandboxAdmin
    raise AttributeError(name)
