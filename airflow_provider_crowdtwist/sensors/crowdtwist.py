"""CrowdTwistApiSensor: wait until the CrowdTwist API answers (and the activities a DAG needs exist).

A sync started during a CrowdTwist maintenance window fails row by row; a sensor in front of it waits
instead. The rules, shared with the trigger through :meth:`CrowdTwistHook.check_api`:

* 200 from ``GET /v2/activities`` (and every requested activity id listed and active): success;
* 5xx, 429, timeouts and connection errors: keep waiting until the sensor's ``timeout``;
* 401/403: fail at once, because waiting will not fix a refused key;
* a requested activity id missing or inactive: fail at once, naming the ids. A typo in a DAG will
  not fix itself, and waiting seven days (the default sensor timeout) to report it helps nobody;
* 404, another 4xx, or an answer that is not CrowdTwist JSON (a wrong base URL), or bad connection
  configuration: fail at once as well.

"Fail at once" raises ``AirflowFailException``, so task retries are skipped too; with ``soft_fail``
the task is skipped instead, as for any sensor.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.providers.common.compat.sdk import BaseSensorOperator

from airflow_provider_crowdtwist._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    conf,
)
from airflow_provider_crowdtwist.hooks.crowdtwist import (
    CHECK_AUTH_ERROR,
    CHECK_ERROR,
    CHECK_MISSING_ACTIVITIES,
    CHECK_SUCCESS,
    CHECK_WAITING,
    ApiCheck,
    CrowdTwistHook,
)
from airflow_provider_crowdtwist.triggers.crowdtwist import STATUS_TIMEOUT, CrowdTwistApiTrigger

_FATAL = (CHECK_AUTH_ERROR, CHECK_MISSING_ACTIVITIES, CHECK_ERROR)


class CrowdTwistApiSensor(BaseSensorOperator):
    """Wait until ``GET /v2/activities`` answers 200 and, optionally, given activity ids are active.

    :param crowdtwist_conn_id: connection of type ``crowdtwist`` (templated).
    :param activity_ids: activity ids that must be listed and active (templated); a comma-separated
        string is accepted too. A missing or inactive id fails the task at once, naming it.
    :param deferrable: poke once, then hand the wait to the triggerer (default: Airflow's
        ``[operators] default_deferrable``). ``mode="reschedule"`` works too when not deferrable.
    """

    template_fields: Sequence[str] = ("crowdtwist_conn_id", "activity_ids")
    ui_color = "#f4a460"

    def __init__(
        self,
        *,
        crowdtwist_conn_id: str = CrowdTwistHook.default_conn_name,
        activity_ids: Sequence[str] | str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.crowdtwist_conn_id = crowdtwist_conn_id
        self.activity_ids = activity_ids
        self.deferrable = deferrable

    def _wanted_ids(self) -> list[str]:
        ids = self.activity_ids
        if ids is None:
            return []
        if isinstance(ids, (str, int)):
            ids = str(ids).split(",")
        wanted: list[str] = []
        for value in ids:
            text = str(value).strip()
            if text and text not in wanted:
                wanted.append(text)
        return wanted

    def _hook(self) -> CrowdTwistHook:
        # The poke interval is the retry: a poke stuck in the client's backoff would blur timeouts.
        return CrowdTwistHook(self.crowdtwist_conn_id, client_overrides={"max_retries": 0})

    def _apply(self, status: str, message: str) -> bool:
        """The one place where a check's status becomes success, waiting or a failure."""
        if status == CHECK_SUCCESS:
            self.log.info("%s", message)
            return True
        if status == CHECK_WAITING:
            self.log.info("CrowdTwist API not ready yet: %s", message)
            return False
        if status in _FATAL:
            raise AirflowFailException(message)
        if status == STATUS_TIMEOUT:
            raise AirflowSensorTimeout(message)
        raise AirflowException(f"Unexpected CrowdTwist check status {status!r}: {message}")

    def poke(self, context: Any) -> bool:
        """One ``GET /v2/activities``; True when ready, False to wait, an exception to fail at once."""
        with self._hook() as hook:
            check: ApiCheck = hook.check_api(self._wanted_ids())
        return self._apply(check.status, check.message)

    def execute(self, context: Any) -> Any:
        """Poke once; when not ready and deferrable, hand the wait to :class:`CrowdTwistApiTrigger`."""
        if not self.deferrable:
            return super().execute(context)
        try:
            if self.poke(context):
                return None
        except (AirflowFailException, AirflowSensorTimeout) as exc:
            if getattr(self, "soft_fail", False) or getattr(self, "never_fail", False):
                raise AirflowSkipException(f"Skipping (soft_fail): {exc}") from exc
            raise
        timeout = float(self.timeout)
        self.defer(
            trigger=CrowdTwistApiTrigger(
                crowdtwist_conn_id=self.crowdtwist_conn_id,
                activity_ids=self._wanted_ids(),
                poke_interval=float(self.poke_interval),
                end_time=time.time() + timeout,
            ),
            method_name="execute_complete",
            # A safety net only: the trigger watches the deadline itself and reports the last answer.
            timeout=timedelta(seconds=timeout + max(60.0, float(self.poke_interval))),
        )
        return None

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        """Resume after the trigger: the same rules as a poke, applied to the trigger's event."""
        if not event or "status" not in event:
            raise AirflowException(f"CrowdTwist trigger returned no usable event: {event!r}")
        if not self._apply(str(event["status"]), str(event.get("message", ""))):
            raise AirflowException(
                f"CrowdTwist trigger ended while the API was still not ready: {event.get('message')}"
            )
