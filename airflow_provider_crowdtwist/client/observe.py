"""What the client tells an observer about each HTTP attempt: the raw material of the calls sample.

The client stays ignorant of what is done with it (``sync/calls.py`` keeps a sample per class of
answer); it only hands over one :class:`Call` per attempt, after the attempt ended, from the thread
that made it. Bodies are the bytes as sent and received (already decoded from gzip); the observer
removes secrets and personal data before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    """One HTTP attempt and how it ended."""

    method: str
    path: str  # path and query as sent (a query ``api_key`` is removed by the observer)
    request_body: bytes | None
    status: int | None  # None: no answer (connection failure, timeout)
    response_body: bytes | None
    latency_s: float
    attempt: int  # 1 for the first try of a request, 2 for its first retry...
    ambiguous: bool  # the request may have been applied although no usable answer came back
    error_code: str | None = None  # CrowdTwist's "error" field, or the transport problem


CallObserver = Callable[[Call], None]
