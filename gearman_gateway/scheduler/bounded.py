"""The scheduler under a memory bound (``--max-queued-jobs``, ``--max-queued-bytes``): the same scheduler,
whose new jobs are checked against its ``JobBudget`` and whose jobs' payload bytes are counted as they
come and go. ``Scheduler.__init__`` makes an instance this class only when a bound is set, so that the job
path of an unbounded server (the default) runs no check and counts nothing (the observed scheduler's class
is swapped in the same way, ``Scheduler.add_observer``)."""

from __future__ import annotations

from collections.abc import Iterable

from gearman_gateway.ratelog import limits_log
from gearman_gateway.scheduler.core import Scheduler
from gearman_gateway.scheduler.job import Job, JobState, Priority
from gearman_gateway.scheduler.listener import JobListener
from gearman_gateway.scheduler.text import printable
from gearman_gateway.stores.base import StoredJob

_DONE = JobState.DONE


class BoundedScheduler(Scheduler):
    # Scheduler.submit's signature, called without super() or argument packing (each costs per job)
    def submit(self, function: bytes, data: bytes, unique: bytes = b"", priority: int = Priority.NORMAL,
               background: bool = False, when: int = 0, reducer: bytes | None = None,
               listener: JobListener | None = None) -> Job:  # fmt: skip
        """Refused with QUEUE_ERROR when a new job would pass the bound; a submit that joins a job already in
        memory (same unique) is never refused: it costs nothing."""
        budget = self.budget
        size = len(data)
        if (size > budget.room or len(self.jobs_by_handle) >= budget.max_jobs) and not self._joins(
            function, data, unique
        ):
            refusal = budget.refusal(len(self.jobs_by_handle), size)
            limits_log.warning("submit", "refusing a job for %s: %s", printable(function), refusal.text)
            raise refusal
        seq = self._seq
        job = Scheduler.submit(self, function, data, unique, priority, background, when, reducer, listener)
        if self._seq != seq:  # a new job (not joined)
            budget.room -= size
        return job

    def _joins(self, function: bytes, data: bytes, unique: bytes) -> bool:
        """Whether a submit would join a job in memory (``Scheduler.submit``'s coalescing)."""
        fn = self.functions.get(function)
        if fn is None or not unique:
            return False
        key = ((b"-", data) if data else None) if unique == b"-" else unique
        return key is not None and key in fn.by_unique

    def _free(self, job: Job, keep_row: bool = False) -> None:
        if job.state != _DONE:
            self.budget.room += len(job.data)
            if self._observing is not None and not keep_row:
                # the observers' ring keeps the ended job, not its payload: dropped here, once counted (the
                # ring drops it itself when no bound counts it, observing.py)
                job.data = b""
        Scheduler._free(self, job, keep_row)

    def replay(self, rows: Iterable[StoredJob]) -> int:
        """Replayed jobs are counted, never refused: they were accepted once."""
        count = super().replay(rows)
        self.budget.room = self.budget.max_bytes - sum(len(job.data) for job in self.jobs_by_handle.values())
        return count

    def requeue_dead(self, handle: bytes) -> bool:
        """An operator's decision: counted, not refused."""
        job = self.dead_letters.get(handle)
        if not super().requeue_dead(handle):
            return False
        assert job is not None
        self.budget.room -= len(job.data)
        return True
