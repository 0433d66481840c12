"""What the scheduler shows of itself: immutable snapshots of its functions, jobs and workers.

The admin text protocol, the JSON API, the metrics and the binary protocol's GET_STATUS all read the
scheduler through these (``Scheduler.function_snapshots`` and friends), never through its ``Function``,
``Job`` or ``Worker`` objects: those change under the reader, and their fields are the scheduler's to
rename. Each snapshot is a plain ``NamedTuple`` of bytes, ints and bools, taken at once, safe to keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from gearman_gateway.scheduler.job import JobState

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.worker import Worker

_RUNNING = JobState.RUNNING
_DEAD = JobState.DEAD

#: Priorities by number (``JobSnapshot.priority``, ``FunctionSnapshot.queued``), as the JSON views and the
#: metrics name them.
PRIORITY_NAMES = ("high", "normal", "low")


class FunctionSnapshot(NamedTuple):
    """One function, as admin `status` and `prioritystatus`, the JSON status and the metrics show it."""

    name: bytes
    #: Jobs waiting for a worker per priority (high, normal, low), counted as gearmand counts them: epoch
    #: jobs not yet due included, and background jobs whose store commit is under way.
    queued: tuple[int, int, int]
    running: int
    #: Worker registrations (a worker that sent CAN_DO twice counts twice, as in gearmand's `status`).
    workers: int
    #: Jobs in memory: queued and running (gearmand's `status` second column).
    total: int
    submitted: int  # jobs created (a submit that joined an existing job is not counted; replayed jobs are)
    completed: int  # ended with WORK_COMPLETE
    failed: int  # ended with WORK_FAIL / WORK_EXCEPTION, or dropped after --job-retries attempts
    worker_deaths: int  # jobs requeued because their worker died or timed out while running them
    poison_jobs: int  # live jobs whose workers died POISON_DEATHS times or more


class JobSnapshot(NamedTuple):
    """One job, live or in the dead-letter list: GET_STATUS, admin `show ... jobs`, the JSON job view."""

    handle: bytes
    function: bytes
    unique: bytes
    priority: int  # Priority: 0 high, 1 normal, 2 low
    background: bool
    running: bool  # a worker holds it
    numerator: int  # the last WORK_STATUS (0/0 before any, and again after a requeue)
    denominator: int
    waiting_clients: int  # foreground submitters attached to it
    retries: int  # times a worker let go of it unfinished (admin `show jobs`)
    failures: int  # WORK_FAIL / WORK_EXCEPTION answers so far
    worker_deaths: int  # workers that died or timed out while running it
    cancelled: bool  # cancelled while running: its result goes nowhere
    dead: bool  # in the dead-letter list
    reason: str  # why it died (dead letters only)

    @property
    def failed_attempts(self) -> int:
        """What `show dead jobs` counts: every attempt that failed, by WORK_FAIL/WORK_EXCEPTION or by a
        worker lost (died or timed out) while running it."""
        return self.failures + self.worker_deaths


class WorkerSnapshot(NamedTuple):
    """One worker, as admin `workers` lists it."""

    #: Registered function names, newest first and repeated per registration (gearmand's `workers`).
    functions: tuple[bytes, ...]
    jobs: tuple[bytes, ...]  # handles of the jobs it runs


class SchedulerTotals(NamedTuple):
    """Server-wide counts (the metrics, start-up and shutdown logs)."""

    workers: int  # connections that registered as workers
    jobs: int  # jobs in memory, queued and running
    running: int
    dead_letters: int
    poison_jobs: int


def function_snapshot(fn: Function, poison_jobs: int) -> FunctionSnapshot:
    return FunctionSnapshot(
        fn.name,
        (fn.queued(0), fn.queued(1), fn.queued(2)),
        fn.running,
        fn.registrations,
        fn.total,
        fn.submitted,
        fn.completed,
        fn.failed,
        fn.deaths,
        poison_jobs,
    )


def job_snapshot(job: Job, observer: object = None) -> JobSnapshot:
    """``observer``: the scheduler's (the result cache), a listener of the job but no client waiting on it."""
    waiting = len(job.listeners)
    if observer is not None and waiting and observer in job.listeners:
        waiting -= 1
    return JobSnapshot(
        job.handle,
        job.function.name,
        job.unique,
        job.priority,
        job.background,
        job.state == _RUNNING,
        job.numerator,
        job.denominator,
        waiting,
        job.retries,
        job.failures,
        job.deaths,
        job.cancelled,
        job.state == _DEAD,
        job.reason,
    )


def worker_snapshot(worker: Worker) -> WorkerSnapshot:
    return WorkerSnapshot(tuple(worker.function_names()), tuple(worker.jobs))
