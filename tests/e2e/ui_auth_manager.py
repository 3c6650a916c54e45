"""A test auth manager: Airflow's SimpleAuthManager, except that some users may not read some DAGs.

Airflow 3.3's SimpleAuthManager grants by role only (viewer, user, op, admin) and scopes DAGs only
through multi-team mode, which needs teams on the DAG bundles; the FAB auth manager, which has
per-DAG permissions, is not installed here. So the UI test keeps the simple manager's real login,
tokens and role checks and adds one rule a real per-DAG manager (FAB, Keycloak) would express: the
pairs in ``CROWDTWIST_UI_DENY`` (``user:dag_id,user:dag_id``) are refused every action on that DAG.
The plugin sees only ``is_authorized_dag`` / ``get_authorized_dag_ids``, as with any manager.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def denied() -> set[tuple[str, str]]:
    pairs = (p.split(":", 1) for p in os.environ.get("CROWDTWIST_UI_DENY", "").split(",") if ":" in p)
    return {(user, dag) for user, dag in pairs}


class OneDagDeniedAuthManager(SimpleAuthManager):
    """SimpleAuthManager with the per-DAG denials of ``CROWDTWIST_UI_DENY``."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if details is not None and (user.username, details.id) in denied():
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
