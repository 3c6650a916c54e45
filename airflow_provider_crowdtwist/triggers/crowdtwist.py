"""CrowdTwistApiTrigger: the deferred half of :class:`CrowdTwistApiSensor`.

The triggerer runs many triggers on one event loop, so nothing here may block it. The check itself
is the hook's synchronous :meth:`CrowdTwistHook.check_api` (the same client, auth, redaction and
classification as the sensor's poke), run in a worker thread with :func:`asyncio.to_thread`; only the
sleeping between checks happens on the loop. Re-implementing the request with an async HTTP library
would mean a second copy of HMAC signing and secret redaction, which is where bugs hide.

The trigger's state is only the connection id, the activity ids, the interval and the deadline: no
secret is ever serialized into the metadata database, and events carry only classified messages.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_crowdtwist.hooks.crowdtwist import (
    CHECK_ERROR,
    CHECK_SUCCESS,
    CHECK_WAITING,
    ApiCheck,
    CrowdTwistHook,
)

#: Event status when the deadline passed while the API was still not ready.
STATUS_TIMEOUT = "timeout"


class CrowdTwistApiTrigger(BaseTrigger):
    """Ask ``GET /v2/activities`` every ``poke_interval`` seconds until the answer is final.

    Yields exactly one ``TriggerEvent`` whose payload has ``status`` = ``success``, ``auth_error``,
    ``missing_activities``, ``error`` or ``timeout``, plus a ``message`` without secrets.

    :param crowdtwist_conn_id: the Airflow connection of type ``crowdtwist``.
    :param activity_ids: ids that must be listed and active for ``success``.
    :param poke_interval: seconds between checks.
    :param end_time: UNIX time after which the trigger gives up with ``timeout`` (None: never).
    """

    def __init__(
        self,
        crowdtwist_conn_id: str,
        activity_ids: Iterable[str] | None = None,
        poke_interval: float = 60.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.crowdtwist_conn_id = crowdtwist_conn_id
        self.activity_ids = [str(a) for a in (activity_ids or [])]
        self.poke_interval = float(poke_interval)
        self.end_time = None if end_time is None else float(end_time)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and plain JSON kwargs; nothing secret (the connection is read again on resume)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "crowdtwist_conn_id": self.crowdtwist_conn_id,
                "activity_ids": list(self.activity_ids),
                "poke_interval": self.poke_interval,
                "end_time": self.end_time,
            },
        )

    def _hook(self) -> CrowdTwistHook:
        # No retries inside a check: the poke interval is the retry, and a check stuck in backoff
        # would overrun the deadline.
        return CrowdTwistHook(self.crowdtwist_conn_id, client_overrides={"max_retries": 0})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Check, sleep, check again; one event at the first final answer or at the deadline."""
        hook = self._hook()
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    check = await asyncio.to_thread(hook.check_api, self.activity_ids)
                except Exception as exc:  # e.g. connection id unknown: report it, do not crash
                    check = ApiCheck(CHECK_ERROR, hook.scrub(f"Check failed: {type(exc).__name__}: {exc}"))
                if check.status != CHECK_WAITING:
                    if check.status == CHECK_SUCCESS:
                        self.log.info("CrowdTwist API ready after %d check(s): %s", attempt, check.message)
                    yield TriggerEvent(check.to_event())
                    return
                self.log.info("CrowdTwist API not ready (check %d): %s", attempt, check.message)
                now = time.time()
                if self.end_time is not None and now >= self.end_time:
                    event = check.to_event()
                    event["status"] = STATUS_TIMEOUT
                    event["message"] = (
                        f"Gave up waiting for the CrowdTwist API after {attempt} check(s); "
                        f"last answer: {check.message}"
                    )
                    yield TriggerEvent(event)
                    return
                wait = self.poke_interval
                if self.end_time is not None:
                    wait = max(0.0, min(wait, self.end_time - now))
                await asyncio.sleep(wait)
        finally:
            await asyncio.to_thread(hook.close)
