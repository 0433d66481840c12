"""Jobs whose worker died (or timed out) while running them: they wait behind every job that has not failed.

Each function keeps its own in ``Function.died``; this object keeps what spans the functions: the order of
the deaths (a worker of several functions takes the job that died first) and how many such jobs wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import takewhile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.job import Job


class DiedJobs:
    """One scheduler attribute, not three: CPython 3.11 keeps an instance's attributes inline (and reads them
    fastest) only up to 29 of them, and the ``Scheduler`` is read on every packet."""

    __slots__ = ("at", "last", "queued")

    def __init__(self) -> None:
        self.at: dict[Job, int] = {}  # live jobs whose worker died: the order of their last death
        self.last = 0
        self.queued = 0  # jobs in the functions' ``died`` queues: 0 keeps a grab off this path

    def died(self, job: Job) -> None:
        """It died again (or is retried after WORK_FAIL): behind every job that died before."""
        self.last += 1
        self.at[job] = self.last

    def forget(self, job: Job) -> None:
        """It left memory."""
        self.at.pop(job, None)

    def put(self, job: Job, front: bool) -> None:
        """Into its function's ``died`` queue: at the tail, or (``front``: its worker gave it back) ahead
        of the jobs that died after it, so the queue stays in the order of the deaths."""
        fn = job.function
        queue = fn.died
        queue[job] = None
        if front:
            at = self.at
            mine = at[job]
            older = list(takewhile(lambda other: at[other] < mine, queue))
            queue.move_to_end(job, last=False)
            for other in reversed(older):
                queue.move_to_end(other, last=False)
        fn.died_counts[job.priority] += 1
        self.queued += 1

    def take(self, job: Job) -> None:
        """Out of its function's ``died`` queue (to a worker, or cancelled)."""
        fn = job.function
        del fn.died[job]
        fn.died_counts[job.priority] -= 1
        self.queued -= 1

    def first(self, functions: Iterable[Function]) -> Job | None:
        """Of these functions' queued died jobs, the one that died first (left in its queue)."""
        best: Job | None = None
        best_at = 0
        at = self.at
        for fn in functions:
            if fn.died:
                head = next(iter(fn.died))
                if best is None or at[head] < best_at:
                    best, best_at = head, at[head]
        return best
