"""Health checks: one ``GET /v2/activities``, its answer classified for the sensor, trigger and UI test.

The three callers apply the same rules because they share :func:`check_api`. The classification
switches on the client's error TYPES (and, for connection errors, the client's ``problem``, itself
decided from the ``requests`` exception type), never on exception text; activities come parsed by
the client (:class:`~..client.models.Activity`); messages are scrubbed with the connection's
:class:`~..client.redact.Redactor`. No Airflow import: the hook passes what it knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from airflow_provider_crowdtwist.client import errors as ct
from airflow_provider_crowdtwist.formats import TextEnum


class CheckStatus(TextEnum):
    """What a check found. ``waiting`` is transient (5xx, 429, network); the others are final:
    waiting longer will not fix a refused key, a missing activity or a wrong URL."""

    SUCCESS = "success"
    WAITING = "waiting"
    AUTH_ERROR = "auth_error"
    MISSING_ACTIVITIES = "missing_activities"
    ERROR = "error"


#: How each connection problem the client reports reads in a check message.
_CONNECTION_PROBLEMS = {
    "timeout": "the request timed out (host unreachable or too slow; see extras 'timeout'/'connect_timeout')",
    "dns": "the host name does not resolve (DNS); check the host",
    "refused": "connection refused (nothing listens there); check the host and port",
    "closed": "the server closed the connection without an answer",
    "reset": "the connection was reset by the server",
    "tls": "TLS handshake failed; check the host and extra 'verify'",
}


@dataclass(frozen=True)
class ApiCheck:
    """What one ``GET /v2/activities`` said about the API.

    ``message`` is safe to log and to put in a trigger event: it never holds a secret.
    """

    status: CheckStatus
    message: str
    http_status: int | None = None
    activity_count: int | None = None
    missing_activity_ids: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        """True when asking again will give the same answer (no point in waiting)."""
        return self.status is not CheckStatus.WAITING

    def to_event(self) -> dict[str, Any]:
        """A JSON-serializable dict for a ``TriggerEvent`` (no secret in it)."""
        return {
            "status": self.status.value,
            "message": self.message,
            "http_status": self.http_status,
            "activity_count": self.activity_count,
            "missing_activity_ids": list(self.missing_activity_ids),
        }


@dataclass(frozen=True)
class CheckTarget:
    """What a check needs to know about the connection to word its messages (no secrets in it)."""

    scrub: Callable[[str], str]
    base_url: Callable[[], str]
    key_kind: str  # "API key" or "HMAC public/private key"


def error_text(exc: BaseException) -> str:
    """The error's own message (CrowdTwist's), else its text."""
    message = getattr(exc, "message", None)
    return str(message) if message else str(exc)


def check_api(client: Any, target: CheckTarget, activity_ids: Iterable[str] | None = None) -> ApiCheck:
    """Ask ``GET /v2/activities`` once through ``client`` and classify the answer; never raises for
    API answers (a bug still does). A configuration error is an ``error`` check."""
    wanted = [str(a).strip() for a in (activity_ids or [])]
    scrub = target.scrub
    try:
        activities = client.list_activities()
    except ct.CrowdTwistConfigError as exc:
        return ApiCheck(CheckStatus.ERROR, scrub(f"Bad configuration: {error_text(exc)}"))
    except ct.CrowdTwistError as exc:
        return classify_error(exc, target)
    except ValueError as exc:  # a body that is not JSON: not the CrowdTwist API
        return ApiCheck(
            CheckStatus.ERROR,
            scrub(
                "The server answered GET /v2/activities with something that is not CrowdTwist JSON "
                f"({type(exc).__name__}); check the host (API base URL)"
            ),
        )
    active = {a.id for a in activities if a.active}
    count = len(active)
    missing = tuple(a for a in wanted if a not in active)
    if missing:
        inactive = {a.id for a in activities} - active
        detail = [f"{a!r} ({'inactive' if a in inactive else 'not found'})" for a in missing]
        return ApiCheck(
            CheckStatus.MISSING_ACTIVITIES,
            scrub(
                f"Activity id(s) not active in the program: {', '.join(detail)}; "
                f"{count} active activities exist"
            ),
            http_status=200,
            activity_count=count,
            missing_activity_ids=missing,
        )
    return ApiCheck(CheckStatus.SUCCESS, f"Connected: {count} active activities", 200, count)


def classify_error(exc: ct.CrowdTwistError, target: CheckTarget) -> ApiCheck:
    """A client error -> a check, by the error's type."""
    status, text, scrub = exc.status, error_text(exc), target.scrub
    if exc.credential_failure or isinstance(exc, ct.CrowdTwistForbiddenError):
        message = (
            f"Authentication failed (HTTP {status}): CrowdTwist refused the {target.key_kind}; check the "
            f"connection's password/login and extra 'auth_type'. Server said: {text}"
        )
        return ApiCheck(CheckStatus.AUTH_ERROR, scrub(message), http_status=status)
    if isinstance(exc, ct.CrowdTwistRateLimitError):
        return ApiCheck(CheckStatus.WAITING, scrub(f"Rate limited (HTTP 429): {text}"), http_status=status)
    if isinstance(exc, ct.CrowdTwistServerError):
        message = f"CrowdTwist server error (HTTP {status}), maybe maintenance: {text}"
        return ApiCheck(CheckStatus.WAITING, scrub(message), http_status=status)
    if isinstance(exc, ct.CrowdTwistConnectionError) or status is None:
        problem = getattr(exc, "problem", "other")
        why = _CONNECTION_PROBLEMS.get(problem, f"network error ({text})")
        return ApiCheck(CheckStatus.WAITING, scrub(f"Cannot reach {target.base_url()}: {why}"))
    if isinstance(exc, ct.CrowdTwistNotFoundError):
        message = (
            f"Wrong base URL: {target.base_url()}/v2/activities answered 404; the host must be the API "
            f"root, e.g. https://sbapi123.crowdtwist.com. Server said: {text}"
        )
        return ApiCheck(CheckStatus.ERROR, scrub(message), http_status=status)
    if 200 <= status < 400:
        message = (
            f"Wrong base URL: {target.base_url()} answered HTTP {status} with something that is not the "
            f"CrowdTwist API ({text})"
        )
        return ApiCheck(CheckStatus.ERROR, scrub(message), http_status=status)
    message = f"CrowdTwist rejected GET /v2/activities (HTTP {status}): {text}"
    return ApiCheck(CheckStatus.ERROR, scrub(message), http_status=status)
