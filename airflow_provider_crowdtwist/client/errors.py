"""Typed errors of the CrowdTwist client.

Callers decide a row's outcome from the error's *type* and ``ambiguous``, never from its text. Texts
are built from redacted parts; an error never keeps the answer, request or library exception behind
it, which may carry the API key (header or URL) into ``repr``, ``__cause__`` or ``__context__``.
"""

from __future__ import annotations

from typing import Any, Literal

_STATE = ("status", "code", "method", "path", "ambiguous", "retry_after")


class CrowdTwistError(Exception):
    """Base of every client error; ``str(e)`` never holds a secret. ``ambiguous``: the request may
    have been applied though no success came back; an ambiguous credit must never be resent blind."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        method: str | None = None,
        path: str | None = None,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.method, self.path = message, status, code, method, path
        self.ambiguous, self.retry_after = ambiguous, retry_after

    @property
    def credential_failure(self) -> bool:
        """True when the credentials were refused: 401, or a 403 naming the key ("Invalid API key").

        Every further request would fail the same way, so a sync stops instead of burning its source.
        """
        return False

    def __str__(self) -> str:
        parts = [f"{self.method or ''} {self.path or ''}".strip()]
        head = " ".join(str(p) for p in (self.status, self.code) if p is not None and p != "")
        parts.append(f"-> {head}" if head else "")
        prefix = " ".join(p for p in parts if p)
        text = f"{prefix}: {self.message}" if prefix else self.message
        if self.ambiguous:
            text += " (ambiguous: the request may have been applied)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, method={self.method!r}, path={self.path!r}, "
            f"ambiguous={self.ambiguous!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break the default exception pickling; Airflow may
        # pickle exceptions (e.g. across a process boundary), so rebuild from the full state.
        return (_rebuild, (type(self), self.message, self._state()))

    def _state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _STATE}


def _rebuild(cls: type[CrowdTwistError], message: str, state: dict[str, Any]) -> CrowdTwistError:
    return cls(message, **state)


class CrowdTwistConfigError(CrowdTwistError, ValueError):
    """Bad configuration, found before the first request; the message names the field."""


class CrowdTwistAuthError(CrowdTwistError):
    """401: the API key or the HMAC signature was refused."""

    @property
    def credential_failure(self) -> bool:
        return True


class CrowdTwistForbiddenError(CrowdTwistError):
    """403: "User is inactive." (a row problem) or, on some endpoints, "Invalid API key" (credentials).

    The contract documents both messages under one status, so here alone the message decides; see
    :attr:`CrowdTwistError.credential_failure`.
    """

    @property
    def credential_failure(self) -> bool:
        text = (self.message or "").lower().replace("_", " ")
        return "api key" in text or "apikey" in text


class CrowdTwistNotFoundError(CrowdTwistError):
    """404, e.g. "User does not exist."."""


class CrowdTwistValidationError(CrowdTwistError):
    """400/422 and any other 4xx: the server refused the content; resending will not help."""


class CrowdTwistAlreadyProcessedError(CrowdTwistValidationError):
    """A credit answered "Event already processed": CrowdTwist saw an *identical* credit before, maybe
    another with the same body, within an undocumented window. So it is ``ambiguous``: the credit sync
    looks for the key in the member's activity history before it counts it credited."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs["ambiguous"] = True
        super().__init__(message, **kwargs)


class CrowdTwistRateLimitError(CrowdTwistError):
    """429 after the retries ran out; ``retry_after`` holds the server's last hint, if any."""


class CrowdTwistServerError(CrowdTwistError):
    """5xx after the retries ran out."""


#: What went wrong on the wire, decided by the client from the exception TYPE (``client/retry.py``).
ConnectionProblem = Literal[
    "refused", "dns", "timeout", "closed", "reset", "tls", "deadline", "too_large", "other"
]


class CrowdTwistConnectionError(CrowdTwistError):
    """Failures below HTTP after the retries ran out (``status`` None); ``problem`` says which."""

    def __init__(self, message: str, *, problem: ConnectionProblem = "other", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.problem: ConnectionProblem = problem

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "problem": self.problem}


#: O:UserDelete's documented refusals (message, lower case) -> the reason callers switch on.
DELETION_REASONS: dict[str, str] = {
    "unable to initiate deletion": "deletion_not_initiated",
    "member is inactive but has redeemable points": "inactive_with_redeemable_points",
    "member not found": "member_not_found",
    "member id is invalid": "member_id_invalid",
}


class _DeletionReason:
    """Mixin: ``reason`` names which documented deletion refusal the message is (None: another one)."""

    message: str

    @property
    def reason(self) -> str | None:
        text = (self.message or "").strip().rstrip(".").lower()
        return next((reason for known, reason in DELETION_REASONS.items() if known in text), None)


class CrowdTwistDeletionRefusedError(_DeletionReason, CrowdTwistValidationError):
    """400 to ``DELETE /v2/users/{id}``: "Unable to initiate deletion" or "Member is inactive but has
    redeemable points" (O:UserDelete); a row outcome with its ``reason``, not a crash."""


class CrowdTwistDeletionNotFoundError(_DeletionReason, CrowdTwistNotFoundError):
    """404 to ``DELETE /v2/users/{id}``: "Member not found" or "Member ID is invalid" (O:UserDelete)."""


def error_class_for_status(status: int) -> type[CrowdTwistError]:
    """Map an HTTP status to the error class the callers switch on."""
    exact = {401: CrowdTwistAuthError, 403: CrowdTwistForbiddenError, 404: CrowdTwistNotFoundError}
    if status in exact or status == 429:
        return exact.get(status, CrowdTwistRateLimitError)
    if status >= 500:
        return CrowdTwistServerError
    return CrowdTwistValidationError if 400 <= status < 500 else CrowdTwistError


__all__ = [
    "DELETION_REASONS",
    "ConnectionProblem",
    "CrowdTwistAlreadyProcessedError",
    "CrowdTwistAuthError",
    "CrowdTwistConfigError",
    "CrowdTwistConnectionError",
    "CrowdTwistDeletionNotFoundError",
    "CrowdTwistDeletionRefusedError",
    "CrowdTwistError",
    "CrowdTwistForbiddenError",
    "CrowdTwistNotFoundError",
    "CrowdTwistRateLimitError",
    "CrowdTwistServerError",
    "CrowdTwistValidationError",
    "error_class_for_status",
]
