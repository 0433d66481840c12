"""What the scheduler needs from the things it talks to: clients waiting on jobs, workers, a clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gearman_gateway.scheduler.errors import SchedulerError
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.worker import Worker
    from gearman_gateway.stores.base import StoredJob


class JobListener:
    """A submitter: a binary client connection, an HTTP request, a memcached waiter, an XMPP chat.

    A base class whose every event does nothing, so that a listener overrides only the events it needs
    (a new event never breaks an existing frontend). ``job_created`` is called once per submit, when the
    job is acknowledged (at once, or for a durable background job after its store commit). The other calls
    reach only foreground submitters attached to the job; several listeners on one coalesced job all get
    every event, in this order: ``job_started`` each time a worker takes the job (``job_requeued`` if that
    worker lets go of it unfinished), then any ``job_data``/``job_warning``/``job_status``, then exactly one
    of ``job_complete``/``job_fail``/``job_exception``.
    """

    __slots__ = ()

    def job_created(self, job: Job) -> None:
        """The submit was acknowledged (``job.handle`` is its handle)."""

    def job_rejected(self, job: Job, error: SchedulerError) -> None:
        """The submit was refused after all (the durable store could not take the job): no job_created
        came or will come for it."""

    def job_started(self, job: Job) -> None:
        """A worker took the job (``GRAB_JOB`` answered with it): from now on it runs."""

    def job_requeued(self, job: Job) -> None:
        """The worker running the job let go of it unfinished (it died, timed out, or gave it back): the
        job waits in its queue for a worker again."""

    def job_data(self, job: Job, data: bytes) -> None:
        """``WORK_DATA``: part of the result."""

    def job_warning(self, job: Job, data: bytes) -> None:
        """``WORK_WARNING``: a message beside the result."""

    def job_status(self, job: Job, numerator: int, denominator: int) -> None:
        """``WORK_STATUS``: progress."""

    def job_complete(self, job: Job, data: bytes) -> None:
        """``WORK_COMPLETE``: the last part of the result; the job is done."""

    def job_fail(self, job: Job) -> None:
        """The job failed (``WORK_FAIL``, cancelled, or given up on); the job is done."""

    def job_exception(self, job: Job, data: bytes) -> None:
        """``WORK_EXCEPTION``; the job is done."""


#: How a job ended, as ``JobObserver.job_finished`` says it (and the history, the hooks and the JSON show it).
COMPLETE = "complete"  # WORK_COMPLETE
FAIL = "fail"  # WORK_FAIL, or given up on (--job-retries, its workers kept dying)
EXCEPTION = "exception"  # WORK_EXCEPTION
DEAD_LETTER = "dead_letter"  # failed for good and moved to the dead-letter list
CANCELLED = "cancelled"  # admin `cancel job`, `drop function`
DROPPED = "dropped"  # a foreground job whose submitters all went away
OUTCOMES = (COMPLETE, FAIL, EXCEPTION, DEAD_LETTER, CANCELLED, DROPPED)


#: One finished job, as observers get it: (job, outcome, data, worker, now). ``outcome`` is one of
#: ``OUTCOMES``; ``data`` the exception's data (EXCEPTION, and DEAD_LETTER after one), else None (a
#: COMPLETE's result is the client's, not kept); ``worker`` ran it last (None if none did; its ``waker`` is
#: the frontend's connection); ``now`` the scheduler's clock at the end.
Ended = tuple["Job", str, "bytes | None", "Worker | None", float]


class JobObserver:
    """Sees the end of every job, scheduler-wide (``Scheduler.add_observer``): where a listener is one
    submitter's, an observer hears all jobs, foreground and background, whoever submitted them. The
    latency histograms, the job history and the event hooks are observers.

    The scheduler records each end in a ring (scheduler/observing.py) and tells an observer the ends it
    has not heard in one ``jobs_finished`` call: at the end of the reactor turn (at once without a
    ``turn_end``), or, for a ``lazy`` observer, only when the ring is about to overwrite them or when the
    observer asks (``Observing.tell``): the job path pays one ring slot per job, never a call per observer.
    An observer must be quick and never wait (queue its I/O and do it later); an exception it raises is
    logged and does not reach the other observers or the job. ``job.submitted_at`` and
    ``job.started_at`` are the clock at submit and at the last assignment to a worker (0.0: it never ran).
    The jobs are done (a dead letter excepted, their payload is gone): read their fields, keep no
    reference to them."""

    __slots__ = ()

    #: Told only when the ring would overwrite what it has not heard, or when it asks (``Observing.tell``).
    lazy = False

    def attached(self, observing: Any) -> None:
        """Added to a scheduler: ``observing`` (scheduler/observing.py) is its ring of ends."""

    def jobs_finished(self, ended: list[Ended]) -> None:
        """These jobs ended (``Ended``), in the order they ended."""

    def read_ring(self, ring: Any, start: int, end: int) -> None:
        """The ends ``start`` to ``end`` (counted since the ring began) of ``ring`` (scheduler/observing.py's
        ``Ring``, or _stamps.c's): by default their tuples, to ``jobs_finished``. An observer that can read
        the ring without a tuple per end (the latency's counts in C) overrides this."""
        self.jobs_finished(ring.view(start, end))


class Waker(Protocol):
    """The worker side of a connection: the scheduler calls ``wake`` to send it a NOOP, and ``grabbed``
    to answer a grab it held (``Scheduler.grab(worker, hold=True)`` returned ``HELD``): with the job, or None
    for NO_JOB."""

    def wake(self) -> None: ...
    def grabbed(self, job: Job | None) -> None: ...


class DelayedCall(Protocol):
    def cancel(self) -> None: ...
    def active(self) -> bool: ...


class Clock(Protocol):
    """Time and timers; Twisted's reactor (IReactorTime) is one, ``twisted.internet.task.Clock`` another."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, callable: Any, *args: Any) -> DelayedCall: ...  # noqa: N802


class DurableStore(Protocol):
    """Where background jobs become durable (``gearman_gateway.stores.runner.StoreRunner``). Calls are
    batched and written off the reactor thread; ``add`` answers through its callback."""

    #: True: foreground jobs with a unique are told to it (``share_unique``): shared mode's coalescing.
    shares_uniques: bool

    def add(self, row: StoredJob, callback: Callable[[Exception | None], None]) -> None: ...
    def share_unique(self, job: Job) -> bool: ...  # True: PENDING until Scheduler.registered/run_elsewhere
    def remove(self, job_id: int) -> None: ...
    def bury(self, job_id: int, reason: str) -> None: ...
    def revive(self, job_id: int) -> None: ...
