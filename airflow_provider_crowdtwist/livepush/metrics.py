"""Counts of pushes by feed and outcome, served as Prometheus text on ``/metrics``.

Every request to a push path ends in exactly one outcome, so the counts add up to the requests.
"""

from __future__ import annotations

from collections import Counter

OUTCOMES = (
    "accepted",  # durably written, answered 200
    "unauthorized",  # 401
    "bad_json",  # 400: not JSON
    "bad_shape",  # 400: JSON, but not the feed's object
    "too_large",  # 413
    "timeout",  # 408: the body did not arrive in time
    "write_failed",  # 503: could not be written; CrowdTwist retries
    "disconnected",  # the client went away before its body arrived; nothing answered
)


class Metrics:
    def __init__(self) -> None:
        self.pushes: Counter[tuple[str, str]] = Counter()

    def count(self, feed: str, outcome: str) -> None:
        self.pushes[(feed, outcome)] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for (feed, outcome), n in sorted(self.pushes.items()):
            out.setdefault(feed, {})[outcome] = n
        return out

    def render(self, files_published: dict[str, int]) -> str:
        lines = [
            "# HELP crowdtwist_live_push_pushes_total Pushes received, by feed and outcome.",
            "# TYPE crowdtwist_live_push_pushes_total counter",
        ]
        for (feed, outcome), n in sorted(self.pushes.items()):
            lines.append(f'crowdtwist_live_push_pushes_total{{feed="{feed}",outcome="{outcome}"}} {n}')
        lines += [
            "# HELP crowdtwist_live_push_files_published_total JSON-lines files landed, by feed.",
            "# TYPE crowdtwist_live_push_files_published_total counter",
        ]
        for feed, n in sorted(files_published.items()):
            lines.append(f'crowdtwist_live_push_files_published_total{{feed="{feed}"}} {n}')
        return "\n".join(lines) + "\n"
