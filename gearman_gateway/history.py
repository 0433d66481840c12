"""The job history: a bounded ring of recently finished jobs, in memory (admin `show history`, JSON).

A ``JobObserver`` that is only a view: the scheduler records every end in its ring (scheduler/observing.py,
one ring slot per job, the job path's only cost), which keeps at least ``size`` ends, so memory is bounded by
``size`` entries whatever the rate (the oldest goes when a new one comes). Readers get ``HistoryEntry``
values, newest first, built when read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from gearman_gateway.scheduler.listener import COMPLETE, JobObserver

if TYPE_CHECKING:
    from gearman_gateway.scheduler import Worker
    from gearman_gateway.scheduler.listener import Ended

#: Finished jobs kept by default.
SIZE = 1000
#: Workers whose labels are remembered; past this many the memo starts again (it must not keep every worker
#: that ever connected alive).
LABELS_MAX = 1000
#: Bytes of a job's exception data kept (WORK_EXCEPTION payloads can be whole stack traces).
EXCEPTION_BYTES = 200


class HistoryEntry(NamedTuple):
    """One finished job. Times are the server's clock (seconds since the epoch); ``started`` is 0.0 for a
    job that never ran (cancelled or dropped while queued)."""

    handle: bytes
    function: bytes
    unique: bytes
    priority: int  # 0 high, 1 normal, 2 low
    background: bool
    submitted: float
    started: float
    finished: float
    outcome: str  # scheduler.listener.OUTCOMES
    exception: bytes  # the exception's data, truncated to EXCEPTION_BYTES (b"" if none)
    worker: bytes  # the worker's client id (SET_CLIENT_ID), else its address; b"" if no worker ran it

    @property
    def wait(self) -> float:
        """Seconds from submit to the (last) start; 0.0 if it never ran."""
        return self.started - self.submitted if self.started else 0.0

    @property
    def run(self) -> float:
        return self.finished - self.started if self.started else 0.0


def worker_label(worker: Worker | None) -> bytes:
    """The worker's client id if it set one, else its address (frontends' connections have these)."""
    if worker is None:
        return b""
    waker = worker.waker
    client_id = getattr(waker, "client_id", None)
    if client_id and client_id != b"-":  # the binary frontend's "none set", as admin `workers` shows it
        return client_id
    peer = getattr(waker, "peer", None)
    return peer.encode() if isinstance(peer, str) else b""


class History(JobObserver):
    """The ring (module docstring): a view of the scheduler's ring of ends, which keeps at least ``size``."""

    __slots__ = ("_size", "exception_bytes", "_labels", "_observing")

    lazy = True  # it reads the ring; nothing to be told

    def __init__(self, size: int = SIZE, exception_bytes: int = EXCEPTION_BYTES) -> None:
        self._size = size
        self.exception_bytes = exception_bytes
        self._labels: dict[Worker | None, bytes] = {None: b""}  # worker -> its label (a worker ends many jobs)
        self._observing: Any = None

    def attached(self, observing: Any) -> None:
        observing.reserve(self._size)
        self._observing = observing

    def read_ring(self, ring: Any, start: int, end: int) -> None:
        """Nothing to read: the ends are read where they are, when asked (no tuple per end built for this)."""

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        if self._observing is None:
            return 0
        return min(self._size, self._observing.position())

    def __iter__(self) -> Iterator[HistoryEntry]:
        """Newest first."""
        if self._observing is None:
            return iter(())
        return map(self.entry, self._observing.newest(self._size))

    def entry(self, ended: Ended) -> HistoryEntry:
        """One end of the ring as a ``HistoryEntry``."""
        return HistoryEntry._make(self.rows((ended,))[0])

    def label(self, worker: Worker | None) -> bytes:
        labels = self._labels
        label = labels.get(worker)
        if label is None:
            if len(labels) > LABELS_MAX:
                labels.clear()
            label = labels[worker] = worker_label(worker)
        return label

    def rows(self, ended: Iterable[Ended]) -> list[tuple[Any, ...]]:
        """Ends as plain tuples of ``HistoryEntry``'s fields (the durable history's rows): one comprehension,
        no call per end but for a worker not seen yet."""
        labels, label, cut = self._labels, self.label, self.exception_bytes
        return [
            (
                job.handle,
                job.function.name,
                job.unique,
                job.priority,
                job.background,
                job.submitted_at,
                job.started_at,
                now,
                outcome,
                b"" if outcome is COMPLETE or data is None else data[:cut],
                labels.get(worker) or label(worker),
            )
            for job, outcome, data, worker, now in ended
        ]

    def entries(
        self,
        function: bytes | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[HistoryEntry]:
        """Newest first, those of ``function`` with ``outcome`` finished at ``since`` or later, at most ``limit``."""
        return pick(self, function, outcome, since, limit)


def pick(
    entries: Iterable[HistoryEntry],
    function: bytes | None = None,
    outcome: str | None = None,
    since: float | None = None,
    limit: int | None = None,
) -> list[HistoryEntry]:
    """The filters of ``History.entries`` on any entries given newest first (the durable history's unwritten
    records too)."""
    found: list[HistoryEntry] = []
    if limit is not None and limit <= 0:
        return found
    for entry in entries:
        if since is not None and entry.finished < since:
            break  # newest first: all the rest are older
        if function is not None and entry.function != function:
            continue
        if outcome is not None and entry.outcome != outcome:
            continue
        found.append(entry)
        if limit is not None and len(found) >= limit:
            break
    return found
