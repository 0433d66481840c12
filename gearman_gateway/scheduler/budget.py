"""The memory bound on jobs: how many jobs, and how many payload bytes, the server holds across every
function. Past either, a submit is refused with QUEUE_ERROR (``QueueFull``); nothing already queued is ever
dropped, and replayed or requeued jobs are counted but never refused (they were accepted once).

One scheduler attribute (the scheduler keeps at most 29, see ``DiedJobs``). The job count is the scheduler's
own ``len(jobs_by_handle)``; the bytes are counted here as ``room``, the payload bytes still free. Only a
scheduler with a bound counts them (``BoundedScheduler``, bounded.py): an unbounded one pays nothing per job.
"""

from __future__ import annotations

import sys

from gearman_gateway.scheduler.errors import QueueFull

#: What a limit of 0 (unlimited) is kept as: no count ever reaches it.
UNLIMITED = sys.maxsize


class JobBudget:
    """``max_jobs`` jobs in memory (queued or running) and ``max_bytes`` payload bytes; 0: unlimited."""

    __slots__ = ("max_jobs", "max_bytes", "room", "refused_jobs", "refused_bytes")

    def __init__(self, max_jobs: int = 0, max_bytes: int = 0) -> None:
        self.max_jobs = max_jobs or UNLIMITED
        self.max_bytes = max_bytes or UNLIMITED
        self.room = self.max_bytes  # payload bytes that may still be queued (negative after a replay past it)
        self.refused_jobs = 0  # submits refused because max_jobs jobs were in memory
        self.refused_bytes = 0  # submits refused because their payload did not fit in max_bytes

    @property
    def bounded(self) -> bool:
        return self.max_jobs != UNLIMITED or self.max_bytes != UNLIMITED

    @property
    def queued_bytes(self) -> int:
        return self.max_bytes - self.room

    def refusal(self, jobs: int, size: int) -> QueueFull:
        """The error for a submit that does not fit (counted here; the caller raises it)."""
        if jobs >= self.max_jobs:
            self.refused_jobs += 1
            return QueueFull(f"Server is full: {jobs} jobs queued (limit {self.max_jobs})")
        self.refused_bytes += 1
        return QueueFull(
            f"Server is full: {self.queued_bytes} bytes of jobs queued, {size} more would pass the limit of "
            f"{self.max_bytes}"
        )
