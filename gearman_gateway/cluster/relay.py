"""Job relay (issue 21 item 2): a job submitted where no worker can run it runs on another server of the cluster.

Both sides go through the scheduler's own seams, so the scheduler knows nothing of relaying:

* Where the client is (server A), a ``RelayWorker`` is one more worker of A's scheduler. It can do the
  functions that A's own workers cannot and that a peer's workers can (read from the peers' heartbeats), so a
  job stays local, with no database round trip, whenever A has a capable worker. When the scheduler wakes it,
  it grabs every job it may take and inserts each as a relay row (``reply_to`` = A's number) into the shared
  table, where the servers whose workers can do it claim it as they claim background jobs.
* Where the job runs (server B), the claimed relay row becomes a foreground job of B's scheduler with a
  ``RelayBack`` listener, which turns every event (WORK_DATA, WARNING, STATUS, COMPLETE, FAIL, EXCEPTION) into an
  event row for A, written in order in one transaction per reactor turn with a NOTIFY on A's own channel. The
  transaction of the last event also deletes the relay row.
* A reads its event rows (on that NOTIFY, or on its poll) in id order and hands them to its scheduler as the
  ``RelayWorker``'s work results: the client gets them as from a local worker.

A server that dies while running a relayed job has its relay row taken over like any other: the job runs again
elsewhere and the client may see the events of both runs (at least once). If A dies, B's events wait in the
table until A's row in the servers table is cleaned away (their rows are deleted with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gearman_gateway.scheduler.errors import SchedulerError
from gearman_gateway.scheduler.job import Job
from gearman_gateway.scheduler.listener import JobListener

if TYPE_CHECKING:
    from gearman_gateway.scheduler import Scheduler
    from gearman_gateway.scheduler.worker import Worker

log = logging.getLogger("gearman_gateway.cluster")

#: Event kinds in the events table, in the JobListener's words.
DATA, WARNING, STATUS, COMPLETE, FAIL, EXCEPTION = 1, 2, 3, 4, 5, 6
FINAL = (COMPLETE, FAIL, EXCEPTION)

#: One event for a server: (reply_to server, handle there, kind, data, relay row id to delete or 0).
Event = tuple[int, bytes, int, bytes, int]


class RelayWorker:
    """The relay's worker in the client's scheduler (see the module's docstring). ``send(jobs)`` inserts relay
    rows for jobs it grabbed."""

    def __init__(self, scheduler: Scheduler, reactor: Any, send: Callable[[list[Job]], None]) -> None:
        self.scheduler = scheduler
        self.reactor = reactor
        self.send = send
        self.worker: Worker = scheduler.add_worker(self)
        self.functions: set[bytes] = set()  # what it registered (CAN_DO) for
        self.running: dict[bytes, Job] = {}  # handle -> job it relayed and awaits the events of
        self._pumping = False

    def own_workers(self, name: bytes) -> int:
        """Registrations of this server's real workers for a function (the relay's own left out)."""
        fn = self.scheduler.functions.get(name)
        if fn is None:
            return 0
        return fn.registrations - (name in self.functions)

    def serve(self, elsewhere: set[bytes]) -> None:
        """Can do exactly the functions served elsewhere and by no worker here. A job it relayed stays its own
        when it stops offering the function (the peer's worker left, or a worker connected here): it runs where it
        was claimed and its events come back as usual; given back to the queue here, it could run twice, or
        wait here for ever while its result came back to nobody."""
        wanted = {name for name in elsewhere if not self.own_workers(name)}
        for name in self.functions - wanted:
            self.scheduler.cant_do(self.worker, name, keep_running=True)
        for name in wanted - self.functions:
            self.scheduler.can_do(self.worker, name)
        changed = wanted != self.functions
        self.functions = wanted
        if changed and wanted:
            self.wake()

    # -- the Waker protocol

    def wake(self) -> None:
        if not self._pumping:
            self._pumping = True
            self.reactor.callLater(0, self._pump)

    def grabbed(self, job: Job | None) -> None:  # never asked to hold a grab
        if job is not None:
            self._relay([job])

    def _pump(self) -> None:
        self._pumping = False
        jobs = []
        while True:
            job = self.scheduler.grab(self.worker)
            if not isinstance(job, Job):
                break
            jobs.append(job)
        if jobs:
            self._relay(jobs)
        self.scheduler.pre_sleep(self.worker)

    def _relay(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.running[job.handle] = job
        self.send(jobs)

    # -- events back from the server that runs the job

    def deliver(self, handle: bytes, kind: int, data: bytes) -> None:
        """One event of a relayed job, as its worker's result; an event of a job that is gone is dropped."""
        scheduler, worker = self.scheduler, self.worker
        if handle not in self.running:
            return
        if kind in FINAL:
            del self.running[handle]
        try:
            if kind == DATA:
                scheduler.work_data(worker, handle, data)
            elif kind == WARNING:
                scheduler.work_warning(worker, handle, data)
            elif kind == STATUS:
                numerator, _, denominator = data.partition(b"/")
                scheduler.work_status(worker, handle, int(numerator or 0), int(denominator or 0))
            elif kind == COMPLETE:
                scheduler.work_complete(worker, handle, data)
            elif kind == FAIL:
                scheduler.work_fail(worker, handle)
            elif kind == EXCEPTION:
                scheduler.work_exception(worker, handle, data)
        except SchedulerError:
            pass  # cancelled meanwhile


class RelayBack(JobListener):
    """Where a relayed job runs: its events go back to the server of its client (``emit``)."""

    __slots__ = ("emit", "reply_to", "handle", "row")

    def __init__(self, emit: Callable[[Event], None], reply_to: int, handle: bytes, row: int) -> None:
        self.emit = emit
        self.reply_to = reply_to
        self.handle = handle  # the job's handle where its client is
        self.row = row  # its relay row, deleted with the last event

    def _event(self, kind: int, data: bytes = b"") -> None:
        self.emit((self.reply_to, self.handle, kind, data, self.row if kind in FINAL else 0))

    def job_data(self, job: Job, data: bytes) -> None:
        self._event(DATA, data)

    def job_warning(self, job: Job, data: bytes) -> None:
        self._event(WARNING, data)

    def job_status(self, job: Job, numerator: int, denominator: int) -> None:
        self._event(STATUS, b"%d/%d" % (numerator, denominator))

    def job_complete(self, job: Job, data: bytes) -> None:
        self._event(COMPLETE, data)

    def job_fail(self, job: Job) -> None:
        self._event(FAIL)

    def job_exception(self, job: Job, data: bytes) -> None:
        self._event(EXCEPTION, data)

    def job_rejected(self, job: Job, error: SchedulerError) -> None:
        self._event(FAIL)
