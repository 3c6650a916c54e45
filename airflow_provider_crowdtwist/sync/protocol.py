"""What the frame needs of a sync plug-in (:class:`Sync`) and of the client (:class:`SyncClient`).

The frame (:meth:`~.run.SyncRun.execute`) owns the loop and the order things open and close in; a
plug-in writes only what is its own: how a chunk becomes work, the work of one item, and what its
state or ledger keeps of each result. The shape follows singer-sdk's ``Sink`` and dlt's load jobs;
``docs/architecture.md`` ("Writing a new sync") says which methods a new sync writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from airflow_provider_crowdtwist.client.observe import CallObserver
from airflow_provider_crowdtwist.sync.outcomes import Outcome, OutcomeLike, RowResult
from airflow_provider_crowdtwist.sync.summary import SyncSummary, threshold_violation

if TYPE_CHECKING:
    import pandas as pd

    from airflow_provider_crowdtwist.sync.config import RunConfig
    from airflow_provider_crowdtwist.sync.run import RowRef, SyncRun

Item = TypeVar("Item")
Summary = TypeVar("Summary", bound=SyncSummary, covariant=True)
#: What a plug-in's ``plan`` and ``after_source`` give the frame: waves of items. Each wave is sent
#: and every result recorded before the next wave is asked for (a generator resumes only then).
Waves = Iterable[Iterable[Item]]


class ClientSettings(Protocol):
    """The client's settings the frame reads: the default ``id_type``, the secrets to redact and the
    shortest member password that is masked (Airflow's ``min_length_masked_secret``)."""

    @property
    def id_type(self) -> str: ...
    @property
    def api_key(self) -> str | None: ...
    @property
    def hmac_private_key(self) -> str | None: ...
    @property
    def min_length_masked_secret(self) -> int: ...


class LimiterStats(Protocol):
    """The rate limiter's figures for the summary (``RateLimiter.stats``)."""

    def stats(self) -> Mapping[str, Any]: ...


class SyncClient(Protocol):
    """What the frame needs of the client (``CrowdTwistClient`` is one); a plug-in extends it with
    the calls its work makes (``MemberClient``, ``CreditClient``)."""

    @property
    def config(self) -> ClientSettings: ...
    @property
    def requests_sent(self) -> int: ...
    @property
    def rate_limiter(self) -> LimiterStats | None: ...
    def redact(self, text: object) -> str: ...
    #: Told of every HTTP attempt (the calls sample, ``sync/calls.py``); None: nobody listens.
    observer: CallObserver | None


class Sync(Protocol[Item, Summary]):
    """A sync plug-in. The frame calls, in this fixed order (``SyncRun.execute``):

    ``open(run)`` once (its state or ledger, from ``config``); per source chunk ``plan(chunk)``, whose
    waves are sent (``work`` on the worker threads) and recorded (``recorded`` on the calling thread);
    ``after_source()`` once the source is read (its waves too); ``close()`` on every exit path;
    ``violation(summary)`` and ``notes()`` for the end. Early outcomes (a rejected row, a duplicate)
    are recorded by the plug-in itself with ``run.record(run.result(...))`` during ``plan``.
    """

    @property
    def config(self) -> RunConfig:
        """Its settings (a :class:`RunConfig` subclass, ``id_type`` resolved); the frame validates them."""

    @property
    def client(self) -> SyncClient:
        """The client its work calls (typed by the plug-in's own protocol, extending SyncClient)."""

    @property
    def summary(self) -> Summary:
        """Its summary (a :class:`SyncSummary` or a subclass with its own fields)."""

    #: The summary table's title, the progress lines' unit and the outcomes it adds to :class:`Outcome`.
    title: str
    #: What the sync log calls a row's request when its outcome does not say (``upsert``, ``credit``).
    operation: str
    label: str
    outcomes: Iterable[OutcomeLike]
    #: The outcome of a request that may have been applied: ``failed`` where resending is safe
    #: (members), ``unknown`` where it is not (credits).
    ambiguous: Outcome

    def open(self, run: SyncRun) -> None: ...
    def plan(self, chunk: pd.DataFrame) -> Waves[Item]: ...
    def ref(self, item: Item) -> RowRef: ...
    def work(self, item: Item) -> RowResult: ...
    def recorded(self, item: Item, result: RowResult) -> RowResult | None: ...
    def after_source(self) -> Waves[Item]: ...
    def close(self) -> None: ...
    def violation(self, summary: SyncSummary) -> str | None: ...
    def notes(self) -> str: ...


class SyncBase:
    """Defaults for the optional methods of :class:`Sync`: subclass it, set ``config`` (resolved
    with ``config.resolved(client.config.id_type)``), ``client`` and ``summary`` in ``__init__``, and
    write ``open``, ``plan``, ``ref`` and ``work`` (and ``recorded`` when a state keeps results)."""

    config: RunConfig
    client: SyncClient
    summary: SyncSummary
    label = "rows"
    operation = "write"
    outcomes: Iterable[OutcomeLike] = ()
    ambiguous = Outcome.FAILED

    def recorded(self, item: Any, result: RowResult) -> RowResult | None:
        """Keep what the state needs of ``result``; return the result to count (None: not yet)."""
        return result

    def after_source(self) -> Waves[Any]:
        """Work that needs the whole source read (removals, settlement); none by default."""
        return ()

    def close(self) -> None:
        """Close what ``open`` opened (also after an ``open`` that raised half-way)."""

    def violation(self, summary: SyncSummary) -> str | None:
        """Why the run fails (the thresholds of :class:`RunConfig` by default), or None."""
        return threshold_violation(summary, self.config.max_failed_rows, self.config.max_failed_ratio)

    def notes(self) -> str:
        """Lines logged under the summary table."""
        return ""
