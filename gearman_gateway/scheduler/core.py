"""The scheduler: jobs, per-function priority queues, workers, coalescing, retries, wake-ups.

No I/O and no wire formats: frontends call it with bytes and Python values, and it answers through the
``JobListener`` and ``Waker`` objects they hand in. Time comes from a ``Clock`` (Twisted's reactor in the
server, a fake clock in unit tests).

Invariants kept here (the unit tests check them):
- every job is in exactly one place: a priority queue, its function's ``died`` queue, the epoch heap, a
  worker's ``jobs``, or claimed by a held grab (``_claims``); a background job whose store commit is
  under way (PENDING) already has its place in its priority queue (or is claimed), so workers see jobs in
  priority and submission order whatever the store; only a future epoch job waits for its commit outside
  any queue;
- a grab whose best job is PENDING is held until that job's commit (it claims it), never answered with a
  job that comes after it;
- a queued job whose worker ever died (``deaths``) waits in its function's ``died`` queue (or the epoch
  heap), never in a priority queue: a grab takes it only when no job that has not failed is there for the
  worker, in any priority or function; among themselves such jobs go in the order of their last death
  (``_died``), which is the order of each ``died`` queue;
- a job leaves ``jobs_by_handle`` the moment it is done, and nothing keeps a reference to it afterwards;
- no runnable job waits while a worker able to run it sleeps without a NOOP on its way (gearmand #343),
  checked at the end of every reactor turn when wake-ups wait for it (``turn_end``).
"""

from __future__ import annotations

import heapq
import logging
import socket
from collections.abc import Callable, Iterable
from itertools import dropwhile, islice, takewhile
from typing import Any

from gearman_gateway.scheduler.budget import JobBudget
from gearman_gateway.scheduler.died import DiedJobs
from gearman_gateway.scheduler.errors import ArgumentTooLarge, JobNotFound, QueueFull, StoreUnavailable
from gearman_gateway.scheduler.function import Function
from gearman_gateway.scheduler.job import Job, JobState, Priority
from gearman_gateway.scheduler.listener import (
    CANCELLED,
    DEAD_LETTER,
    DROPPED,
    EXCEPTION,
    FAIL,
    Clock,
    DelayedCall,
    DurableStore,
    JobListener,
    JobObserver,
    Waker,
)
from gearman_gateway.scheduler.observing import Observing, observed_methods
from gearman_gateway.scheduler.retry import RetryPolicies
from gearman_gateway.scheduler.snapshots import (
    FunctionSnapshot,
    JobSnapshot,
    SchedulerTotals,
    WorkerSnapshot,
    function_snapshot,
    job_snapshot,
    worker_snapshot,
)
from gearman_gateway.scheduler.text import printable
from gearman_gateway.scheduler.worker import HELD, NO_JOBS, ONCE, Ability, Held, RegistrationTables, Worker, WorkerState
from gearman_gateway.stores.base import HandedOff, StoredJob

log = logging.getLogger("gearman_gateway.scheduler")

#: gearmand accepts uniques of up to 64 bytes and answers ARGUMENT_TOO_LARGE beyond.
MAX_UNIQUE_SIZE = 64
#: Longest CAN_DO_TIMEOUT honoured (about 24 days); larger values are clamped, never an error.
MAX_TIMEOUT_MS = 2**31

#: Job handles live in a 64-byte buffer in gearmand and its clients (63 characters and a NUL).
MAX_HANDLE_SIZE = 63

#: A job whose worker died (or timed out) this many times is called poison: logged once, listed by admin
#: `show poison jobs`, counted in the JSON status and the metrics. Two deaths can be bad luck (a deploy, an
#: OOM kill of a busy worker); a third in a row rarely is.
POISON_DEATHS = 3

_QUEUED = JobState.QUEUED
_RUNNING = JobState.RUNNING
_DONE = JobState.DONE
_PENDING = JobState.PENDING
_DEAD = JobState.DEAD
_AWAKE = WorkerState.AWAKE
_SLEEPING = WorkerState.SLEEPING
_NOOP_SENT = WorkerState.NOOP_SENT


def default_handle_prefix() -> bytes:
    return b"H:" + socket.gethostname().encode()


class Scheduler:
    #: The job observers' state: None (a class attribute) while nobody observes; ``add_observer`` gives the
    #: instance a class of its own (a subclass of ``ObservedScheduler``) that holds it, so it costs no
    #: instance attribute (at most 29, see ``DiedJobs``) and the unobserved job path does not test it.
    _observing: Observing | None = None
    #: What a worker's ``jobs`` is made as at its first job: an observed scheduler's class may hold a dict that
    #: stamps starts and records WORK_COMPLETE's ends as they are stored and deleted (scheduler/observing.py).
    _worker_jobs: Callable[[], dict[bytes, Job]] = dict

    def __init__(
        self,
        clock: Clock,
        *,
        handle_prefix: bytes | None = None,
        job_retries: int = 0,
        worker_wakeup: int | None = None,
        max_unique_size: int = MAX_UNIQUE_SIZE,
        store: DurableStore | None = None,
        retry_policies: RetryPolicies | None = None,
        turn_end: Callable[[Callable[[], None]], None] | None = None,
        max_jobs: int = 0,
        max_bytes: int = 0,
    ) -> None:
        """``job_retries``: attempts before a job whose worker keeps failing is dropped (0 or less:
        unlimited, as gearmand 1.1). ``worker_wakeup``: None wakes as many sleepers as there are
        runnable jobs; 0 wakes every sleeper (gearmand's default); N caps the NOOPs per wake-up.
        ``store``: where background jobs are made durable before they are acknowledged (None: nowhere).
        ``turn_end``: schedules a callback for the end of the current batch of I/O events (the server's
        reactor turn). With it, wake-ups wait for the end of the turn, when it is known which new jobs
        workers already grabbed, and a grab that finds nothing may be held until then (``grab``).
        ``max_jobs``, ``max_bytes``: jobs and payload bytes in memory, across every function, past which a
        submit gets QUEUE_ERROR (0: unlimited; ``JobBudget``)."""
        self.clock = clock
        self.handle_prefix = (handle_prefix if handle_prefix is not None else default_handle_prefix()) + b":"
        if len(self.handle_prefix) + 10 > MAX_HANDLE_SIZE:
            raise ValueError(f"job handle prefix is too long ({len(self.handle_prefix) - 1} bytes, max 52)")
        self.job_retries = job_retries
        self.worker_wakeup = worker_wakeup
        self.max_unique_size = max_unique_size
        self.functions: dict[bytes, Function] = {}
        self.jobs_by_handle: dict[bytes, Job] = {}
        self.worker_count = 0  # connections that registered as workers (a count: no per-worker entry)
        self.registrations = RegistrationTables()
        self._listener_jobs: dict[JobListener, set[Job]] = {}
        self._next_handle = 1
        self._seq = 0
        self._future: list[tuple[int, int, Job]] = []  # epoch jobs not yet due: (when, seq, job)
        self._epoch_timer: DelayedCall | None = None  # due at the first of ``_future``'s times, or earlier
        self.draining = False
        self._drained: Callable[[], None] | None = None
        self.running_jobs = 0
        self.store = store
        self.retry_policies = retry_policies or RetryPolicies()
        self.dead_letters: dict[bytes, Job] = {}
        self.budget = JobBudget(max_jobs, max_bytes)  # the memory bound on all jobs (``BoundedScheduler``)
        self._turn_end = turn_end
        self._turn_end_armed = False
        self._holding: dict[Worker, None] = {}  # workers whose empty grab is answered at the end of the turn
        self._claims: dict[Job, Worker] = {}  # PENDING jobs a held grab waits for, answered at their commit
        self.poison_jobs: dict[Job, None] = {}  # live jobs whose workers died POISON_DEATHS times or more
        self._wake_due: dict[Function, None] = {}  # functions whose new jobs want sleepers woken
        # jobs whose worker died: the order of their deaths. Keep this class's attributes at 29 or fewer
        # (DiedJobs says why); tests/unit/test_scheduler.py checks it.
        self._died = DiedJobs()
        #: Hears every background job with a unique, whoever submitted it (the result cache, results.py).
        self.observer: JobListener | None = None

    def __new__(cls, *args: Any, max_jobs: int = 0, max_bytes: int = 0, **kwargs: Any) -> Scheduler:
        """A ``BoundedScheduler`` when a memory bound is set: made so from the start (swapping the class of a
        made instance would cost CPython its fast attribute reads on every ``self.x`` of the job path)."""
        if cls is Scheduler and (max_jobs or max_bytes):
            cls = _bounded_class()
        return super().__new__(cls)

    def _unobserved_class(self) -> type[Scheduler]:
        """The class of this scheduler while nobody observes its jobs: with a memory bound, the subclass that
        keeps it (``BoundedScheduler``), so that an unbounded server's job path pays nothing for it."""
        return _bounded_class() if self.budget.bounded else Scheduler

    # ------------------------------------------------------------------ functions

    def function(self, name: bytes) -> Function:
        """The named function, created on first mention (CAN_DO, submit, `create function`)."""
        fn = self.functions.get(name)
        if fn is None:
            fn = self.functions[name] = Function(name)
        return fn

    def drop_function(self, name: bytes) -> tuple[bool, str]:
        """Remove a function that nobody serves; its queued jobs fail (never left dangling)."""
        fn = self.functions.get(name)
        if fn is None:
            lowered = name.lower()
            fn = next((f for f in self.functions.values() if f.name.lower() == lowered), None)
        if fn is None:
            return False, "function not found"
        if fn.registrations or fn.running:
            return False, "there are still connected workers or executing clients"
        for job in [job for job in self.jobs_by_handle.values() if job.function is fn]:
            self._cancel_queued(job)
        del self.functions[fn.name]
        return True, "OK"

    def set_maxqueue(self, name: bytes, limits: tuple[int, int, int]) -> None:
        self.function(name).maxqueue = [max(0, limit) for limit in limits]

    # ------------------------------------------------------------------ client side

    def submit(
        self,
        function: bytes,
        data: bytes,
        unique: bytes = b"",
        priority: int = Priority.NORMAL,
        background: bool = False,
        when: int = 0,
        reducer: bytes | None = None,
        listener: JobListener | None = None,
    ) -> Job:
        """Create a job, or join the job with the same (function, unique). ``listener.job_created`` is
        called before any other event of the job; a foreground listener then gets all of its events."""
        if len(unique) > self.max_unique_size:
            raise ArgumentTooLarge("Unique value too large")
        fn = self.function(function)
        if unique == b"-":
            key: Any = (b"-", data) if data else None
        else:
            key = unique or None
        if key is not None:
            job = fn.by_unique.get(key)
            if job is not None:
                return self._join(job, background, listener)
        limit = fn.maxqueue[priority]
        if limit and fn.total >= limit:
            raise QueueFull("Job queue is full")
        handle = self.handle_prefix + b"%d" % self._next_handle
        self._next_handle += 1
        self._seq += 1
        job = Job(handle, fn, unique, data, priority, background, when, reducer, key, self._seq)
        self.jobs_by_handle[handle] = job
        if key is not None:
            fn.by_unique[key] = job
            if background:
                if self.observer is not None:
                    self._attach(job, self.observer)
            elif self.store is not None and self.store.shares_uniques and self.store.share_unique(job):
                return self._registering(job, listener)  # shared mode: its unique is the cluster's first
        fn.total += 1
        fn.submitted += 1
        if background and self.store is not None:
            # acknowledged and runnable only once its row is committed: nothing acknowledged is lost. It takes
            # its place in its queue now (before the store can answer), so no later job overtakes it.
            job.state = _PENDING
            self._place_pending(job)
            self._persist(job, listener)
            return job
        if listener is not None:
            if not background:
                self._attach(job, listener)
            listener.job_created(job)
        self._enqueue(job)
        return job

    def _join(self, job: Job, background: bool, listener: JobListener | None) -> Job:
        if not background and listener is not None:
            self._attach(job, listener)
        if job.acks is not None and (background or job.state == _PENDING):
            if listener is not None:  # its commit is under way: acknowledged with it
                job.acks.append(listener)
            return job
        if background and not job.background:
            # gearmand leaves the job foreground and loses it when its clients leave; a background
            # submitter was promised it would run, so the job becomes background (and durable).
            job.background = True
            if self.observer is not None and job.key is not None:
                self._attach(job, self.observer)
            if self.store is not None and not job.stored:
                self._persist(job, listener)
                return job
        if listener is not None:
            listener.job_created(job)
            if not background and job.state == _RUNNING:
                listener.job_started(job)  # it joined a job that a worker already runs
        return job

    # ------------------------------------------------------------------ durability

    def _persist(self, job: Job, listener: JobListener | None) -> None:
        assert self.store is not None
        job.acks = [listener] if listener is not None else []
        self.store.add(self._row(job), lambda error: self._committed(job, error))

    def _row(self, job: Job) -> StoredJob:
        return StoredJob(job.seq, job.handle, job.function.name, job.unique, job.priority, job.data, int(job.when))

    def _committed(self, job: Job, error: Exception | None) -> None:
        acks, job.acks = job.acks or [], None
        if error is None:
            if job.state == _DONE:  # cancelled or dropped while the commit was under way
                self._store_remove(job, force=True)
            else:
                job.stored = True
                if job.state == _DEAD:  # it failed for good while its row was being written
                    self.store.bury(job.seq, job.reason)
            for listener in acks:
                listener.job_created(job)
            if job.state == _PENDING:
                self._runnable_now(job)
            return
        if isinstance(error, HandedOff):
            self._handed_off(job, acks, error.handle)
            return
        refusal = StoreUnavailable(f"Job could not be stored: {error}")
        if job.state == _PENDING:  # never acknowledged: for its submitters it never existed
            self._unqueue(job)
            self._free(job)
        else:  # a promotion to background failed: the job goes on for its foreground clients
            job.background = False
        for listener in acks:
            listener.job_rejected(job, refusal)

    def _handed_off(self, job: Job, acks: list[JobListener], handle: bytes) -> None:
        """A shared store committed the job for the cluster (no worker here can run it), or found the cluster
        already holds a job with its unique (``handle``): its submitters are acknowledged and this server keeps
        no copy; the server that claims it runs it. A foreground job promoted to background stays here."""
        if job.state == _PENDING:
            self._unqueue(job)
            self._free(job, keep_row=True)
            if handle:
                job.handle = handle
        elif job.state == _DONE and not handle:  # cancelled while its row was written: nobody may claim it
            self._store_remove(job, force=True)
        for listener in acks:
            listener.job_created(job)

    # ------------------------------------------------------------------ shared mode: foreground uniques

    def _registering(self, job: Job, listener: JobListener | None) -> Job:
        """A foreground job whose unique a shared store registers across gateways before it may run here
        (``share_unique`` said so): acknowledged now, PENDING in its place (grabs wait for it as for a
        background job's commit) until ``registered`` or ``run_elsewhere``."""
        fn = job.function
        fn.total += 1
        fn.submitted += 1
        job.state = _PENDING
        self._place_pending(job)
        if listener is not None:
            self._attach(job, listener)
            listener.job_created(job)
        return job

    def registered(self, job: Job) -> None:
        """The job's unique is registered for this gateway: it runs here. A PENDING job becomes runnable
        (dropped if its clients left meanwhile); one that stood on another worker for a job elsewhere that
        ended unseen (``run_elsewhere``) leaves it for the head of its queue."""
        if job.state is _PENDING:
            if not job.listeners and not job.background:
                self._unqueue(job)
                self._finished(job, DROPPED)
                self._free(job)
                return
            self._runnable_now(job)
        elif job.state is _RUNNING and job.worker is not None:
            self._release(job)
            self._enqueue(job, front=True)

    def run_elsewhere(self, job: Job, worker: Worker) -> bool:
        """The job's unique is held by a live job elsewhere in the cluster: this PENDING job runs nowhere
        here; it stands on ``worker`` (the shared store's relay), whose results are the other job's events.
        False: the job is no longer PENDING (it ended meanwhile)."""
        if job.state is not _PENDING:
            return False
        self._unqueue(job)
        job.state = _RUNNING
        job.worker = worker
        if worker.jobs is NO_JOBS:
            worker.jobs = {}
        worker.jobs[job.handle] = job
        job.function.running += 1
        self.running_jobs += 1
        for listener in job.listeners:
            listener.job_started(job)
        return True

    def status_elsewhere(self, handle: bytes, answer: Callable[[bool, bool], None]) -> bool:
        """GET_STATUS of a job this scheduler does not hold: a shared store that handed it to the cluster
        reads it (True: ``answer(known, running)`` comes later, never within this call); False: unknown."""
        ask = getattr(self.store, "status_elsewhere", None) if self.store is not None else None
        return ask is not None and ask(handle, answer)

    def _store_remove(self, job: Job, force: bool = False) -> None:
        if self.store is not None and (job.stored or force):
            job.stored = False
            self.store.remove(job.seq)

    def replay(self, rows: Iterable[StoredJob]) -> int:
        """Start-up replay: the durable store's rows become jobs again, with their handles, uniques,
        priorities and run times; dead ones go back to the dead-letter list. Returns how many rows were
        replayed (dead ones included). New handles and job ids continue after the highest replayed ones."""
        count = 0
        prefix = self.handle_prefix
        for row in rows:
            self._seq = max(self._seq, row.job_id)
            handle = row.handle or self.handle_prefix + b"%d" % row.job_id
            if handle.startswith(prefix) and handle[len(prefix) :].isdigit():
                self._next_handle = max(self._next_handle, int(handle[len(prefix) :]) + 1)
            if handle in self.jobs_by_handle or handle in self.dead_letters:
                handle = self.handle_prefix + b"r%d" % row.job_id
            self._take_on(row, handle, row.job_id)
            count += 1
        return count

    def adopt(self, row: StoredJob, ahead: bool = False) -> int:
        """A background job this server claimed from a queue it shares with other servers (its row stays the
        cluster's, under the cluster's id): it joins its queue with the handle it was given where it was
        submitted, and a job id of this server's own sequence, which is returned (the store's calls name it).
        ``ahead``: it is older than the jobs whose commits are under way (``adopt_ahead``)."""
        self._seq += 1
        handle = row.handle
        if not handle or handle in self.jobs_by_handle or handle in self.dead_letters:
            handle = self.handle_prefix + b"a%d" % self._seq
        self._take_on(row, handle, self._seq, ahead)
        return self._seq

    def adopt_ahead(self, rows: list[StoredJob]) -> list[int]:
        """Claimed jobs older than this server's PENDING ones (shared mode's FIFO across servers): each waits
        ahead of the first PENDING job of its queue, and a held grab that claimed a PENDING job of their
        functions takes the best job again. Their job ids, in order."""
        names = {row.function for row in rows}
        held = [worker for job, worker in self._claims.items() if job.function.name in names] if self._claims else []
        for worker in held:
            self._unhold(worker)  # its PENDING job goes back to its place
        seqs = [self.adopt(row, ahead=True) for row in rows]
        for worker in held:
            if worker.holding is False:
                self._regrab(worker)
        return seqs

    def _enqueue_ahead(self, job: Job) -> None:
        """``_enqueue``, but ahead of the PENDING jobs of its queue (``adopt_ahead``)."""
        fn = job.function
        if fn.holders or (job.when and job.when > self.clock.seconds()):
            self._enqueue(job)  # a grab waits for any job, or it is not due
            return
        queue = fn.queues[job.priority]
        behind = list(dropwhile(lambda other: other.state is not _PENDING, queue))
        job.state = _QUEUED
        queue[job] = None
        for other in behind:
            queue.move_to_end(other)
        if fn.sleepers:
            self._wake_for(fn)

    def _take_on(self, row: StoredJob, handle: bytes, seq: int, ahead: bool = False) -> None:
        """A stored row becomes a live (or dead-letter) job of this scheduler: replay and adopt."""
        fn = self.function(row.function)
        if row.unique == b"-":
            key: Any = (b"-", row.data) if row.data else None
        else:
            key = row.unique or None
        if key is not None and key in fn.by_unique:
            key = None  # two stored jobs with one unique (imported): keep both, coalesce with the first
        priority = row.priority if row.priority in (0, 1, 2) else Priority.NORMAL
        job = Job(handle, fn, row.unique, row.data, priority, True, row.when, None, key, seq)
        if self._observing is not None:
            self._observing.stamp(job)
        job.stored = True
        if row.dead:
            job.state = _DEAD
            job.reason = row.reason
            self.dead_letters[handle] = job
            return
        self.jobs_by_handle[handle] = job
        if key is not None:
            fn.by_unique[key] = job
            if self.observer is not None:
                self._attach(job, self.observer)
        fn.total += 1
        fn.submitted += 1  # a job this process takes on, as a submit: `completed` never exceeds it
        if ahead:
            self._enqueue_ahead(job)
        else:
            self._enqueue(job)

    def _attach(self, job: Job, listener: JobListener) -> None:
        if job.listeners:
            job.listeners.append(listener)  # type: ignore[union-attr]
        else:
            job.listeners = [listener]  # most jobs never get one: no empty list each
        jobs = self._listener_jobs.get(listener)
        if jobs is None:
            self._listener_jobs[listener] = {job}
        else:
            jobs.add(job)

    def detach(self, listener: JobListener) -> None:
        """A submitter went away: it hears nothing more, and a queued foreground job that nobody else
        waits for is dropped (gearmand keeps those forever). A running one finishes unheard."""
        for job in self._listener_jobs.pop(listener, ()):
            job.listeners = [other for other in job.listeners if other is not listener]
            if not job.listeners and not job.background and job.state == _QUEUED:
                log.debug("dropping abandoned job %s", printable(job.handle))
                self._unqueue(job)
                self._finished(job, DROPPED)
                self._free(job)

    def job(self, handle: bytes) -> Job | None:
        """The live job (for the scheduler's own tests; frontends read ``job_snapshot``)."""
        return self.jobs_by_handle.get(handle)

    def cancel(self, handle: bytes) -> bool:
        """Really remove a job: its clients get WORK_FAIL. A running job is detached from its clients
        and its result discarded, but stays visible until its worker lets go of it."""
        job = self.jobs_by_handle.get(handle)
        if job is None:
            return False
        if job.state == _RUNNING:
            job.cancelled = True
            self._notify_fail(job)
            fn = job.function
            if job.key is not None and fn.by_unique.get(job.key) is job:
                del fn.by_unique[job.key]  # a new submit with its unique is a new job, not this dying one
            job.key = None
        else:
            self._cancel_queued(job)
        return True

    def _cancel_queued(self, job: Job) -> None:
        self._unqueue(job)
        self._notify_fail(job)
        self._finished(job, CANCELLED)
        self._free(job)

    # ------------------------------------------------------------------ worker side

    def add_worker(self, waker: Waker) -> Worker:
        worker = Worker(waker)
        self.worker_count += 1
        return worker

    def remove_worker(self, worker: Worker) -> None:
        """The connection closed: unregister everything and requeue what it was running, as lost (the job
        may be what killed the worker: ``_requeue``)."""
        if worker.state == WorkerState.GONE:
            return
        if worker.holding:
            self._unhold(worker)  # nobody is left to answer
        for fn in list(worker.abilities):
            self._unregister(worker, fn, lost=True)
        for job in list(worker.jobs.values()):  # kept after a CANT_DO (``keep_running``)
            self._requeue(job, lost=True)
        worker.state = WorkerState.GONE
        self.worker_count -= 1

    def can_do(self, worker: Worker, name: bytes, timeout_ms: int = 0) -> None:
        self.end_hold(worker)
        fn = self.function(name)
        timeout_ms = min(max(0, timeout_ms), MAX_TIMEOUT_MS)
        ability = worker.abilities.get(fn)
        if ability is None:
            self.registrations.set(worker, fn, Ability(1, timeout_ms) if timeout_ms else ONCE)
        else:
            self.registrations.set(worker, fn, Ability(ability.count + 1, timeout_ms))
        fn.registrations += 1
        if worker.state == _SLEEPING:
            fn.sleepers[worker] = None
            if fn.runnable():
                self._wake_worker(worker)
        elif worker.state == _NOOP_SENT:
            fn.noop_pending.add(worker)

    def cant_do(self, worker: Worker, name: bytes, keep_running: bool = False) -> None:
        """``keep_running``: the worker's running jobs of the function stay its own and their results are still
        taken (the cluster's relay: a job it relayed runs elsewhere and must not run here too, nor lose its
        result); else they go back to their queue (gearmand)."""
        self.end_hold(worker)
        fn = self.functions.get(name)
        if fn is not None and fn in worker.abilities:
            self._unregister(worker, fn, keep_running=keep_running)

    def reset_abilities(self, worker: Worker) -> None:
        self.end_hold(worker)
        for fn in list(worker.abilities):
            self._unregister(worker, fn)

    def _unregister(self, worker: Worker, fn: Function, lost: bool = False, keep_running: bool = False) -> None:
        ability = self.registrations.remove(worker, fn)
        fn.registrations -= ability.count
        fn.sleepers.pop(worker, None)
        was_pending = worker in fn.noop_pending
        fn.noop_pending.discard(worker)
        if not keep_running:
            for job in [job for job in worker.jobs.values() if job.function is fn]:
                self._requeue(job, lost)
        if was_pending:
            self._wake(fn)

    def grab(self, worker: Worker, hold: bool = False) -> Job | Held | None:
        """The next job for this worker: highest priority first across all its functions (gearmand 2.0's
        global priority), oldest first within a priority; epoch jobs only once due; a job whose worker
        died only when none of those is left, first died first (``_requeue``). Returns the job, which now
        runs on the worker; None: nothing for it (NO_JOB); ``HELD``: the answer comes later.

        ``hold``: the grab may be answered later, through ``worker.waker.grabbed(job)``, exactly once; HELD
        is returned and ``worker.holding`` is set:
        - when nothing is queued and the scheduler has a ``turn_end``, to True: it is answered with the
          first job that arrives for the worker before the end of the turn, or None then. A worker that
          would have heard NO_JOB, slept, been woken and grabbed again gets its job without those four
          packets;
        - when the best job is PENDING (its store commit is under way), to that job, which it claims: it
          is answered with it at its commit (milliseconds), as if the commit had come before the grab.
          Were it refused or cancelled meanwhile, the grab takes the next job by the same rule.
        Any call that changes the worker's registration or sleep state (grab, pre_sleep, can_do, cant_do,
        reset_abilities) first answers it with None (a claimed job goes back to the head of its queue);
        work results and the connection's own submits do not. Without ``hold`` a PENDING job is passed
        over: the caller cannot wait, so it gets the best committed job."""
        if worker.holding:
            self._answer_hold(worker, None)
        if worker.state != _AWAKE:
            self._set_awake(worker)
        if self.draining:
            return None
        best: Job | None = None
        abilities = worker.abilities
        if len(abilities) == 1:  # the usual worker: the first job of its function's best queue
            for fn in abilities:
                for queue in fn.queues:
                    if queue:
                        best = queue.popitem(last=False)[0]
                        break
        else:
            for priority in (0, 1, 2):
                for fn in abilities:
                    queue = fn.queues[priority]
                    if queue:
                        head = next(iter(queue))
                        if best is None or head.seq < best.seq:
                            best = head
                if best is not None:
                    del best.function.queues[priority][best]
                    break
        if best is None:
            if self._died.queued and (best := self._died.first(abilities)) is not None:
                self._died.take(best)
                self._start(best, worker)
                return best
            if hold and self._turn_end is not None and abilities:
                self._turn_hold(worker)
                return HELD
            return None
        if best.state is _PENDING:
            return self._grab_pending(worker, best, hold)
        self._start(best, worker)
        return best

    def _turn_hold(self, worker: Worker) -> None:
        """Hold the worker's grab until a job comes for it or the turn ends (nothing is queued for it)."""
        worker.holding = True
        self._holding[worker] = None
        for fn in worker.abilities:
            fn.holders[worker] = None
        self._arm_turn_end()

    def _grab_pending(self, worker: Worker, job: Job, hold: bool) -> Job | Held | None:
        """The grab's best job, just taken out of its queue, is PENDING: a held grab claims it; a grab
        that cannot wait leaves it in its place and takes the best committed job, if any."""
        fn = job.function
        fn.pending -= 1
        if hold:
            self._claim(worker, job)
            return HELD
        self._place_pending(job, returning=True)
        best = self._best_queued(worker, committed_only=True)
        if best is None:
            return None
        self._take_queued(best)
        self._start(best, worker)
        return best

    def _best_queued(self, worker: Worker, committed_only: bool = False) -> Job | None:
        """The job ``grab`` would take (``committed_only``: PENDING ones passed over), left in its queue."""
        best: Job | None = None
        for priority in (0, 1, 2):
            for fn in worker.abilities:
                for job in fn.queues[priority]:
                    if committed_only and job.state is _PENDING:
                        continue
                    if best is None or job.seq < best.seq:
                        best = job
                    break
            if best is not None:
                return best
        return self._died.first(worker.abilities) if self._died.queued else None

    def _take_queued(self, job: Job) -> None:
        """Out of whichever queue it waits in (a job that ``_best_queued`` named)."""
        if job.deaths:
            self._died.take(job)
        else:
            del job.function.queues[job.priority][job]

    def _claim(self, worker: Worker, job: Job) -> None:
        """The worker's held grab waits for this PENDING job (out of its queue) and gets it at its commit."""
        worker.holding = job
        self._claims[job] = worker

    def _regrab(self, worker: Worker) -> None:
        """The job a held grab claimed was refused or cancelled: the grab takes the next job instead, by
        the same rule (or waits for the end of the turn, or hears NO_JOB)."""
        worker.holding = False
        job = None if self.draining else self._best_queued(worker)
        if job is None:
            if self._turn_end is not None and worker.abilities and not self.draining:
                self._turn_hold(worker)
            else:
                worker.waker.grabbed(None)
            return
        self._take_queued(job)
        if job.state is _PENDING:
            job.function.pending -= 1
            self._claim(worker, job)
            return
        self._start(job, worker)
        worker.waker.grabbed(job)

    def _start(self, job: Job, worker: Worker) -> None:
        """``job``, out of its queue, runs on ``worker`` now."""
        job.state = _RUNNING
        job.worker = worker
        jobs = worker.jobs
        if jobs is NO_JOBS:
            jobs = worker.jobs = self._worker_jobs()
        jobs[job.handle] = job
        fn = job.function
        fn.running += 1
        self.running_jobs += 1
        timeout_ms = worker.abilities[fn].timeout_ms
        if timeout_ms:
            job.timer = self.clock.callLater(timeout_ms / 1000.0, self._timed_out, job, worker)
        if job.listeners:
            for listener in job.listeners:
                listener.job_started(job)

    def _unhold(self, worker: Worker) -> None:
        """The worker's grab is no longer held (its answer, if any, is the caller's to give). A job it had
        claimed goes back to the head of its queue, PENDING still."""
        held = worker.holding
        worker.holding = False
        if held is True:
            self._holding.pop(worker, None)
            for fn in worker.abilities:
                fn.holders.pop(worker, None)
        elif held:
            del self._claims[held]
            self._place_pending(held, returning=True)

    def _answer_hold(self, worker: Worker, job: Job | None) -> None:
        self._unhold(worker)
        worker.waker.grabbed(job)

    def _arm_turn_end(self) -> None:
        if not self._turn_end_armed:
            self._turn_end_armed = True
            self._turn_end(self._end_turn)  # type: ignore[misc]

    def _end_turn(self) -> None:
        """Held grabs that got nothing hear NO_JOB; sleepers are woken for the jobs nobody grabbed. One
        frontend's failure must not leave the other holders or sleepers waiting."""
        self._turn_end_armed = False
        holding, self._holding = self._holding, {}
        due, self._wake_due = self._wake_due, {}
        for worker in holding:
            if worker.holding is True:
                try:
                    self._answer_hold(worker, None)
                except Exception:
                    log.exception("answering the held grab of a worker failed")
        for fn in due:
            if fn.sleepers and fn.runnable():
                try:
                    self._wake(fn)
                except Exception:
                    log.exception("waking workers of function %s failed", printable(fn.name))

    def end_hold(self, worker: Worker) -> None:
        """Answer the worker's held grab now, with nothing: before a request that changes its state is
        handled, or when its connection is about to close."""
        if worker.holding:
            self._answer_hold(worker, None)

    def hold(self, worker: Worker) -> Job | Held | None:
        """A grab that waits as long as its caller likes, for frontends whose workers wait with a timeout of
        their own (memcached's ``get <function>/t=<ms>``): ``grab(worker, hold=True)``, except that a grab
        that finds nothing stays held past the end of the turn, until a job comes for the worker (handed
        over by ``_enqueue`` as it is queued, through ``waker.grabbed``) or ``end_hold`` answers it with
        None. The worker never sleeps, so nothing wakes it: the job goes straight to it. None: nothing,
        and no hold (draining, or no abilities)."""
        if self.store is not None:  # a PENDING job may be the best: claim it (answered at its commit)
            job = self.grab(worker, hold=True)
            if job is HELD and worker.holding is True:
                self._holding.pop(worker, None)  # the turn's hold lasts
            if job is not None or self._turn_end is not None:
                return job
        else:
            job = self.grab(worker)
            if job is not None:
                return job
        if self.draining or not worker.abilities:
            return None
        worker.holding = True
        for fn in worker.abilities:
            fn.holders[worker] = None
        return HELD

    def _set_awake(self, worker: Worker) -> None:
        """A worker that grabs is awake. If it had been sent a NOOP, that NOOP may now be spent on
        another function's job: wake someone else for whatever is still waiting."""
        was_pending = worker.state == _NOOP_SENT
        worker.state = _AWAKE
        for fn in worker.abilities:
            fn.sleepers.pop(worker, None)
            if was_pending:
                fn.noop_pending.discard(worker)
        if was_pending:
            for fn in worker.abilities:
                if fn.sleepers and fn.runnable():
                    self._wake(fn)

    def pre_sleep(self, worker: Worker) -> None:
        """PRE_SLEEP: answer with a NOOP at once if work is waiting, else sleep until woken."""
        self.end_hold(worker)
        if not self.draining and any(fn.runnable() for fn in worker.abilities):
            if worker.state == _SLEEPING:
                for fn in worker.abilities:
                    fn.sleepers.pop(worker, None)
            self._send_noop(worker)
            return
        if worker.state == _NOOP_SENT:
            for fn in worker.abilities:
                fn.noop_pending.discard(worker)
        worker.state = _SLEEPING
        for fn in worker.abilities:
            fn.sleepers[worker] = None

    def _send_noop(self, worker: Worker) -> None:
        worker.state = _NOOP_SENT
        for fn in worker.abilities:
            fn.noop_pending.add(worker)
        worker.waker.wake()

    def _wake_worker(self, worker: Worker) -> None:
        for fn in worker.abilities:
            fn.sleepers.pop(worker, None)
        self._send_noop(worker)

    def _wake(self, fn: Function) -> None:
        """NOOP sleepers of ``fn``: as many as it has runnable jobs not already covered by a NOOP."""
        sleepers = fn.sleepers
        if not sleepers or self.draining:
            return
        cap = self.worker_wakeup
        if cap == 0:
            count = len(sleepers)
        else:
            count = fn.runnable() - len(fn.noop_pending)
            if count <= 0:
                return
            if cap is not None and count > cap:
                count = cap
        for worker in list(islice(sleepers, count)):
            self._wake_worker(worker)

    # ------------------------------------------------------------------ work results

    def _owned(self, worker: Worker, handle: bytes, text: str) -> Job:
        job = worker.jobs.get(handle)
        if job is None:
            raise JobNotFound(text)
        return job

    def work_data(self, worker: Worker, handle: bytes, data: bytes) -> None:
        job = self._owned(worker, handle, "Job does not exist on server")
        for listener in job.listeners:
            listener.job_data(job, data)

    def work_warning(self, worker: Worker, handle: bytes, data: bytes) -> None:
        job = self._owned(worker, handle, "Job does not exist on server")
        for listener in job.listeners:
            listener.job_warning(job, data)

    def work_status(self, worker: Worker, handle: bytes, numerator: int, denominator: int) -> None:
        job = self._owned(worker, handle, "Job given in work result not found")
        job.numerator = numerator
        job.denominator = denominator
        for listener in job.listeners:
            listener.job_status(job, numerator, denominator)

    def work_complete(self, worker: Worker, handle: bytes, data: bytes) -> None:
        job = worker.jobs.get(handle)  # _owned, inline: the most frequent result
        if job is None:
            raise JobNotFound("Job given in work result not found")
        fn = job.function
        # ``del``, not ``pop``, in both branches: an observed scheduler's worker jobs record the end at the del
        del worker.jobs[handle]
        if job.timer is None and not self.draining:  # _release, inline for the usual case
            job.worker = None
            fn.running -= 1
            self.running_jobs -= 1
        else:
            self._release(job)
        fn.completed += 1
        for listener in job.listeners:
            listener.job_complete(job, data)
        self._free(job)

    def work_fail(self, worker: Worker, handle: bytes) -> None:
        job = self._owned(worker, handle, "Job given in work result not found")
        self._release(job)
        self._worker_failed(job, "WORK_FAIL", None, worker)

    def work_exception(self, worker: Worker, handle: bytes, data: bytes) -> None:
        job = self._owned(worker, handle, "An exception was received for a job that does not exist")
        self._release(job)
        reason = "WORK_EXCEPTION: " + data[:200].decode("utf-8", "replace")
        self._worker_failed(job, reason, data, worker)

    def _worker_failed(self, job: Job, reason: str, exception: bytes | None, worker: Worker) -> None:
        """The worker failed the job: retry a background job as its function's policy says."""
        job.function.failed += 1
        job.failures += 1  # every failure counts, the last one too (`show dead jobs`)
        if job.background and not job.cancelled:
            policy = self.retry_policies.for_function(job.function.name)
            if job.failures <= policy.retries:
                job.numerator = job.denominator = 0
                delay = policy.delay(job.failures)
                job.when = self.clock.seconds() + delay
                log.info("job %s failed (%s); retry %d in %.1fs", printable(job.handle), reason, job.failures, delay)
                for listener in job.listeners:
                    listener.job_requeued(job)
                self._enqueue_again(job)
                return
        self._give_up(job, reason, exception, worker)

    def _give_up(self, job: Job, reason: str, exception: bytes | None = None, worker: Worker | None = None) -> None:
        """The job has failed for good: its clients hear it; a background job whose function's policy
        says so goes to the dead-letter list, any other is dropped."""
        if exception is not None:
            listeners, job.listeners = job.listeners, ()
            for listener in listeners:
                listener.job_exception(job, exception)
                self._forget(listener, job)
        else:
            self._notify_fail(job)
        if job.background and not job.cancelled and self.retry_policies.for_function(job.function.name).dead_letter:
            self._finished(job, DEAD_LETTER, exception, worker)
            self._bury(job, reason)
        else:
            self._finished(job, FAIL if exception is None else EXCEPTION, exception, worker)
            self._free(job)

    def _finished(self, job: Job, outcome: str, data: bytes | None = None, worker: Worker | None = None) -> None:
        """The job ended: the observers, if any, hear it at the end of the turn (``Observing``)."""
        if self._observing is not None:
            self._observing.end(job, outcome, data, worker)

    def _notify_fail(self, job: Job) -> None:
        listeners, job.listeners = job.listeners, ()
        for listener in listeners:
            listener.job_fail(job)
            self._forget(listener, job)

    def _forget(self, listener: JobListener, job: Job) -> None:
        jobs = self._listener_jobs.get(listener)
        if jobs is not None:
            jobs.discard(job)
            if not jobs:
                del self._listener_jobs[listener]

    # ------------------------------------------------------------------ queueing internals

    def _enqueue(self, job: Job, front: bool = False) -> None:
        job.state = _QUEUED
        fn = job.function
        if job.when and job.when > self.clock.seconds():
            heapq.heappush(self._future, (job.when, job.seq, job))
            fn.future_counts[job.priority] += 1
            self._arm_epoch_timer()
            return
        if fn.holders and not self.draining:  # a worker's grab is waiting for just this
            worker = next(iter(fn.holders))
            self._unhold(worker)
            self._start(job, worker)
            worker.waker.grabbed(job)
            return
        queue = fn.queues[job.priority]
        queue[job] = None
        if front:
            queue.move_to_end(job, last=False)
        if fn.sleepers:
            if self._turn_end is None:
                self._wake(fn)
            else:
                self._wake_due[fn] = None
                self._arm_turn_end()

    def _enqueue_again(self, job: Job, front: bool = False) -> None:
        """A job that ran goes back to wait. One whose worker ever died waits behind every job that has
        not failed: in its function's ``died`` queue, at the tail (a new death, or a retry), or at the
        head when its worker gave it back (``front``), in the order of their last death. Any other
        is queued as a new one (``front``: at the head of its priority)."""
        if not job.deaths:
            self._enqueue(job, front)
            return
        if not front:
            self._died.died(job)
        fn = job.function
        if (job.when and job.when > self.clock.seconds()) or (fn.holders and not self.draining):
            self._enqueue(job)  # to the epoch heap (it comes back here when due), or to a grab waiting for any job
            return
        job.state = _QUEUED
        self._died.put(job, front)
        if fn.sleepers:
            self._wake_for(fn)

    def _wake_for(self, fn: Function) -> None:
        """Sleepers of ``fn`` have a job to wake for: now, or at the end of the turn (``_end_turn``) when
        it is known which new jobs workers grabbed meanwhile. (``_enqueue`` has this inline: the hot path.)"""
        if self._turn_end is None:
            self._wake(fn)
        else:
            self._wake_due[fn] = None
            self._arm_turn_end()

    def _place_pending(self, job: Job, returning: bool = False) -> None:
        """A PENDING job takes its place in its priority queue, where grabs see it but wait for its commit
        (``grab``), or a held grab that waits for any job claims it. It is not runnable yet: it wakes no
        sleeper (``_runnable_now`` does, at its commit). A future epoch job waits for its commit outside
        any queue and joins the epoch heap then. ``returning``: it was taken from the head of its queue
        (claimed) and goes back there, behind any older job put back before it."""
        if job.when and job.when > self.clock.seconds():
            return
        fn = job.function
        if fn.holders and not self.draining:
            worker = next(iter(fn.holders))
            self._unhold(worker)
            self._claim(worker, job)
            return
        queue = fn.queues[job.priority]
        queue[job] = None
        if returning:
            older = list(takewhile(lambda other: other.seq < job.seq, queue))
            queue.move_to_end(job, last=False)
            for other in reversed(older):
                queue.move_to_end(other, last=False)
        fn.pending += 1

    def _runnable_now(self, job: Job) -> None:
        """A PENDING job's commit came: the grab that claimed it gets it, or it becomes runnable where it
        stands in its queue and sleepers are woken for it."""
        worker = self._claims.pop(job, None) if self._claims else None
        if worker is not None:
            worker.holding = False
            if not self.draining:
                self._start(job, worker)
                worker.waker.grabbed(job)
                return
            self._enqueue(job, front=True)
            worker.waker.grabbed(None)
            return
        fn = job.function
        if job not in fn.queues[job.priority]:
            self._enqueue(job)  # a future epoch job: to the epoch heap
            return
        job.state = _QUEUED
        fn.pending -= 1
        if fn.sleepers:
            if self._turn_end is None:
                self._wake(fn)
            else:
                self._wake_due[fn] = None
                self._arm_turn_end()

    def _unqueue(self, job: Job) -> None:
        state = job.state
        if state == _PENDING:
            fn = job.function
            worker = self._claims.pop(job, None) if self._claims else None
            if worker is not None:
                self._regrab(worker)  # its held grab takes the next job
            else:
                queue = fn.queues[job.priority]
                if job in queue:  # else a future epoch job: in no queue before its commit
                    del queue[job]
                    fn.pending -= 1
            return
        if state != _QUEUED:
            return
        fn = job.function
        queue = fn.queues[job.priority]
        if job in queue:
            del queue[job]
        elif job in fn.died:
            self._died.take(job)
        else:
            self._future = [entry for entry in self._future if entry[2] is not job]
            heapq.heapify(self._future)
            fn.future_counts[job.priority] -= 1

    def _arm_epoch_timer(self) -> None:
        if not self._future:
            return
        due = self._future[0][0]
        timer = self._epoch_timer
        if timer is not None and timer.active():
            if timer.getTime() <= due:
                return
            timer.cancel()
        self._epoch_timer = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._epoch_due)

    def _epoch_due(self) -> None:
        """Epoch jobs whose time has come join their queues and wake workers (gearmand 1.1 forgets to)."""
        self._epoch_timer = None
        now = self.clock.seconds()
        future = self._future
        while future and future[0][0] <= now:
            _, _, job = heapq.heappop(future)
            job.function.future_counts[job.priority] -= 1
            job.when = 0
            self._enqueue_again(job)
        self._arm_epoch_timer()

    def _release(self, job: Job) -> None:
        """The job leaves its worker."""
        worker = job.worker
        if worker is not None:
            worker.jobs.pop(job.handle, None)
            job.worker = None
            job.function.running -= 1
            self.running_jobs -= 1
        if job.timer is not None:
            if job.timer.active():
                job.timer.cancel()
            job.timer = None
        if self.draining and not self.running_jobs and self._drained is not None:
            callback, self._drained = self._drained, None
            self.clock.callLater(0, callback)

    def _timed_out(self, job: Job, worker: Worker) -> None:
        job.timer = None
        if job.worker is worker and job.state == _RUNNING:
            log.info("job %s timed out on its worker; requeueing", printable(job.handle))
            self._requeue(job, lost=True)

    def _requeue(self, job: Job, lost: bool = False) -> None:
        """The worker let go of a running job without finishing it. ``lost``: the worker died (its
        connection closed) or its CAN_DO_TIMEOUT expired. Such a job may be what kills its workers, so it
        goes behind every job that has not failed, in every priority and every function
        (``_enqueue_again``): one poison job never blocks its function, nor the other priorities or
        functions of the workers that take it. gearmand only puts it at the tail of its priority. A job
        given back (CANT_DO, RESET_ABILITIES) did nothing wrong and keeps its turn at the head of where
        it waited."""
        worker = job.worker
        self._release(job)
        job.retries += 1
        fn = job.function
        if lost:
            job.deaths += 1
            fn.deaths += 1
        if job.cancelled or (not job.listeners and not job.background):
            self._finished(job, CANCELLED if job.cancelled else DROPPED, None, worker)
            self._free(job)
            return
        if self.job_retries > 0 and job.retries >= self.job_retries:
            log.warning("dropped job %s after %d attempts", printable(job.handle), job.retries)
            fn.failed += 1
            self._give_up(job, f"its worker went away {job.retries} times", None, worker)
            return
        if lost and job.deaths == POISON_DEATHS:
            self.poison_jobs[job] = None
            log.warning(
                "job %s of function %s: its worker died or timed out %d times; it is retried for ever behind"
                " the other jobs (set --job-retries, or a retry policy with a dead-letter list, to stop it)",
                printable(job.handle),
                printable(fn.name),
                job.deaths,
            )
        job.numerator = job.denominator = 0
        for listener in job.listeners:
            listener.job_requeued(job)
        self._enqueue_again(job, front=not lost)

    def _free(self, job: Job, keep_row: bool = False) -> None:
        if job.state == _DONE:
            return
        job.state = _DONE
        if job.worker is not None:
            # a cancelled job still running: forget it once its worker lets go
            self._release(job)
        self.jobs_by_handle.pop(job.handle, None)
        fn = job.function
        fn.total -= 1
        if job.key is not None and fn.by_unique.get(job.key) is job:
            del fn.by_unique[job.key]
        if job.deaths:
            self.poison_jobs.pop(job, None)
            self._died.forget(job)
        if job.listeners:
            listener_jobs = self._listener_jobs
            for listener in job.listeners:  # _forget, inline
                jobs = listener_jobs.get(listener)
                if jobs is not None:
                    jobs.discard(job)
                    if not jobs:
                        del listener_jobs[listener]
            job.listeners = ()
        if not keep_row and self.store is not None:
            self._store_remove(job)

    # ------------------------------------------------------------------ dead letters

    def _bury(self, job: Job, reason: str) -> None:
        self._free(job, keep_row=True)
        job.state = _DEAD
        job.reason = reason
        self.dead_letters[job.handle] = job
        if self.store is not None and job.stored:
            self.store.bury(job.seq, reason)
        log.warning("job %s moved to the dead-letter list: %s", printable(job.handle), reason)

    def requeue_dead(self, handle: bytes) -> bool:
        """An operator gives a dead job another chance (with a fresh retry budget)."""
        job = self.dead_letters.pop(handle, None)
        if job is None:
            return False
        fn = self.function(job.function.name)
        job.function = fn
        job.failures = job.retries = job.deaths = 0
        job.reason = ""
        job.when = 0
        self.jobs_by_handle[job.handle] = job
        if job.key is not None:
            if job.key in fn.by_unique:
                job.key = None
            else:
                fn.by_unique[job.key] = job
                if self.observer is not None:
                    self._attach(job, self.observer)
        fn.total += 1
        fn.submitted += 1  # taken on again, with a fresh retry budget
        if self.store is not None and job.stored:
            self.store.revive(job.seq)
        self._enqueue(job)
        return True

    def delete_dead(self, handle: bytes) -> bool:
        job = self.dead_letters.pop(handle, None)
        if job is None:
            return False
        job.state = _DONE
        self._store_remove(job)
        return True

    # ------------------------------------------------------------------ observers

    def add_observer(self, observer: JobObserver) -> None:
        """``observer.jobs_finished`` hears the end of every job from now on (``JobObserver``). Jobs already
        in memory get the current time as their submit time. Observers known before the scheduler exists
        belong to an ``ObservedScheduler`` made as one: a plain Scheduler given one here becomes one by a
        class swap, which costs every later ``self.x`` its fast path (scheduler/observing.py)."""
        if self._observing is None:
            own = _observed_class(self._unobserved_class(), self.clock.seconds, self._turn_end, made=False)
            own._seen(self._seq)
            self.__class__ = own
            self.jobs_by_handle = own._jobs_table(self.jobs_by_handle)
            now = self.clock.seconds()
            for job in (*self.jobs_by_handle.values(), *self.dead_letters.values()):
                job.submitted_at = now
                job.started_at = now if job.worker is not None else 0.0
        observing = self._observing
        assert observing is not None
        observing.add(observer)

    def remove_observer(self, observer: JobObserver) -> None:
        """No more ends for ``observer``; with the last one gone a swapped Scheduler is plain again (an
        ``ObservedScheduler`` made as one stays one, with nobody to tell)."""
        observing = self._observing
        if observing is None:
            return
        observing.remove(observer)
        if not observing.observers:
            if not getattr(type(self), "made_observed", False):
                self.__class__ = self._unobserved_class()
                self.jobs_by_handle = dict(self.jobs_by_handle)

    # ------------------------------------------------------------------ shutdown

    def drain(self, callback: Callable[[], None]) -> None:
        """Graceful shutdown: hand out no more jobs; call ``callback`` once no job is running."""
        self.draining = True
        if not self.running_jobs:
            self.clock.callLater(0, callback)
        else:
            self._drained = callback

    # ------------------------------------------------------------------ read API (snapshots.py)

    def function_snapshots(self) -> list[FunctionSnapshot]:
        """Every function, in the order they were first mentioned (gearmand's `status` order)."""
        poison: dict[Function, int] = {}
        for job in self.poison_jobs:
            poison[job.function] = poison.get(job.function, 0) + 1
        return [function_snapshot(fn, poison.get(fn, 0)) for fn in self.functions.values()]

    def function_snapshot(self, name: bytes) -> FunctionSnapshot | None:
        """One function by its exact name; None when nothing ever named it (or it was dropped)."""
        fn = self.functions.get(name)
        if fn is None:
            return None
        return function_snapshot(fn, sum(job.function is fn for job in self.poison_jobs))

    def job_snapshot(self, handle: bytes) -> JobSnapshot | None:
        """A live job (queued or running) by handle; None when it finished or never existed."""
        job = self.jobs_by_handle.get(handle)
        return None if job is None else job_snapshot(job, self.observer)

    def job_snapshot_by_unique(self, unique: bytes, function: bytes | None = None) -> JobSnapshot | None:
        """The first live job with this unique in any function (GET_STATUS_UNIQUE names no function), or
        in ``function`` only."""
        if function is not None:
            fn = self.functions.get(function)
            job = fn.by_unique.get(unique) if fn is not None and unique else None
            return None if job is None else job_snapshot(job, self.observer)
        for fn in self.functions.values():
            job = fn.by_unique.get(unique)
            if job is not None:
                return job_snapshot(job, self.observer)
        return None

    def next_job(self, function: bytes) -> tuple[JobSnapshot, bytes] | None:
        """The job a grab for ``function`` alone would take now (committed, due), and its workload: what
        a memcached ``get <function>/peek`` shows without taking it."""
        fn = self.functions.get(function)
        if fn is None:
            return None
        for queue in fn.queues:
            for job in queue:
                if job.state is not _PENDING:
                    return job_snapshot(job, self.observer), job.data
        for job in fn.died:  # a grab takes these only when no other job is queued
            return job_snapshot(job, self.observer), job.data
        return None

    def background_job_ids(self) -> list[int]:
        """The job ids of every live background job, running or not (a shared store renews their leases)."""
        return [job.seq for job in self.jobs_by_handle.values() if job.background]

    def job_snapshots(self) -> list[JobSnapshot]:
        """Every live job, oldest handle first."""
        return [job_snapshot(job, self.observer) for job in self.jobs_by_handle.values()]

    def dead_job_snapshots(self) -> list[JobSnapshot]:
        """The dead-letter list, in the order the jobs died."""
        return [job_snapshot(job, self.observer) for job in self.dead_letters.values()]

    def poison_job_snapshots(self) -> list[JobSnapshot]:
        """Live jobs whose workers died ``POISON_DEATHS`` times or more, in the order they became poison."""
        return [job_snapshot(job, self.observer) for job in self.poison_jobs]

    def worker_snapshot(self, worker: Worker) -> WorkerSnapshot:
        return worker_snapshot(worker)

    def queued_bytes(self) -> int:
        """Payload bytes of the jobs in memory (counted as they come and go only under a memory bound)."""
        if self.budget.bounded:
            return self.budget.queued_bytes
        return sum(len(job.data) for job in self.jobs_by_handle.values())

    def totals(self) -> SchedulerTotals:
        return SchedulerTotals(
            self.worker_count,
            len(self.jobs_by_handle),
            self.running_jobs,
            len(self.dead_letters),
            len(self.poison_jobs),
        )

    # ------------------------------------------------------------------ inspection (tests)

    def listener_count(self) -> int:
        return len(self._listener_jobs)


class ObservedScheduler(Scheduler):
    """A Scheduler with job observers: each instance is made as one of a class of its own (``__new__``),
    which holds its ``Observing`` and wraps the three frequent transitions (submit and start stamp the
    job's times, WORK_COMPLETE tells the observers); the rarer ends call ``_finished``. Made as such, its
    job path keeps CPython's fast attribute access (scheduler/observing.py says why that matters)."""

    _observing: Observing  # in each instance's own class
    #: True in the class of an instance made as an ObservedScheduler (not swapped to by ``add_observer``).
    made_observed = False

    def __new__(cls, clock: Clock, **options: Any) -> ObservedScheduler:
        unobserved = _bounded_class() if options.get("max_jobs") or options.get("max_bytes") else Scheduler
        own = _observed_class(unobserved, clock.seconds, options.get("turn_end"))
        own.made_observed = True
        return object.__new__(own)

    def __init__(self, clock: Clock, **options: Any) -> None:
        super().__init__(clock, **options)
        self.jobs_by_handle = self._jobs_table(self.jobs_by_handle)  # in C it stamps submits (observing.py)


def _bounded_class() -> type[Scheduler]:
    from gearman_gateway.scheduler.bounded import BoundedScheduler  # it imports this module

    return BoundedScheduler


def _observed_class(
    unobserved: type[Scheduler],
    read: Callable[[], float],
    turn_end: Callable[[Callable[[], None]], None] | None,
    made: bool = True,
) -> Any:
    """A class of one scheduler's own, holding its observers' state and stamping the job path of
    ``unobserved`` (Scheduler, or BoundedScheduler under a memory bound). ``made``: for an instance made as
    one (its workers' ``jobs`` will all be made by the class's ``_worker_jobs``), not swapped to."""
    observing = Observing(read, turn_end)
    bases = (ObservedScheduler,) if unobserved is Scheduler else (ObservedScheduler, unobserved)
    methods = observed_methods(unobserved, observing, made)
    return type(ObservedScheduler.__name__, bases, {"_observing": observing, **methods})
