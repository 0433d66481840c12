"""The scheduler's record of finished jobs for its observers, and the methods of a scheduler that has some.

A Scheduler nobody observes runs main's job path: no test for observers on its frequent transitions (only
the rare ends, fail, exception, cancel, drop, call ``_finished``, which tests a class attribute). A
scheduler with observers is an instance of a class of its own, made before the instance
(``ObservedScheduler.__new__``): CPython 3.11 keeps an instance's attribute values keyed by the class it
was made as, and an instance whose class is swapped afterwards loses the specialized attribute access on
every ``self.x`` (measured: +23 % instructions per job). That class holds an ``Observing`` as a class
attribute (the Scheduler keeps at most 29 instance attributes, see ``DiedJobs``) and stamps the three
frequent transitions (``observed_methods``). With the optional C accelerator (``accel``, _stamps.c) none is
wrapped: the scheduler's own dict stores do it, ``jobs_by_handle`` stamping each new job's submit and each
worker's ``jobs`` (the class's ``_worker_jobs``) its start, and recording the end when WORK_COMPLETE
deletes it (no Python frame: Python costs ~1,000 instructions for even a small wrapper, issue 19 allows
~2,000 per job for all of it). Without it (or for a Scheduler swapped to observed, whose workers' tables
exist already) Python closures over the clock and the ring's state wrap them. One clock read per
transition.

Each end costs the job path one slot of a preallocated ring (``Ended``: the job, its outcome, data, last
worker and the time; in C arrays with the accelerator, a tuple built only when read), nothing else: no
call per turn, no per-job work in the observers. The job history is a view of the ring; lazy observers
(the latency histograms, which count from the ring's arrays in C) read what they have not heard when they
are asked or when the ring is about to overwrite it; the hooks read only the ends the ring marked for them
(``Observing.watch``); other observers are told once per reactor turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from gearman_gateway import accel
from gearman_gateway.scheduler.listener import COMPLETE, DEAD_LETTER

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Ended, JobObserver
    from gearman_gateway.scheduler.worker import Worker

log = logging.getLogger(__name__)


#: Ends the ring holds at least (more if a reader wants more: ``reserve``).
RING = 256


class Observing:
    """The ring of finished jobs, the observers and how far each has heard.

    ``record``, ``position``, ``reserve`` and ``state`` (the ``Ring``) are set by ``observed_methods``."""

    __slots__ = ("observers", "read", "want_turn", "_turn_end", "_heard", "record", "position", "reserve", "state",
                 "_watcher")  # fmt: skip

    def __init__(self, read: Callable[[], float], turn_end: Callable[[Callable[[], None]], None] | None) -> None:
        self.observers: tuple[JobObserver, ...] = ()
        self.read = read
        self.want_turn = [False]  # [True]: some eager observer waits for this turn's end to be armed
        self._turn_end = turn_end
        self._heard: dict[JobObserver, int] = {}  # observer -> ends it heard, counted since start
        self.record: Callable[[Job, str, bytes | None, Worker | None], None]
        self.position: Callable[[], int]  # ends recorded since start
        self.reserve: Callable[[int], None]  # keep at least this many ends
        self.state: Any  # the Ring (C's or Python's)
        self._watcher: JobObserver | None = None  # the observer whose hooks mark ends (``watch``)

    def add(self, observer: JobObserver) -> None:
        self.observers = (*self.observers, observer)
        self._heard[observer] = self.position()
        if not observer.lazy:
            self.want_turn[0] = True
        observer.attached(self)

    def remove(self, observer: JobObserver) -> None:
        self.tell(observer)
        self.observers = tuple(o for o in self.observers if o is not observer)
        self._heard.pop(observer, None)
        self.want_turn[0] = self.want_turn[0] and any(not o.lazy for o in self.observers)
        if observer is self._watcher:
            self._watcher = None
            self.state.watch(None, None)

    def watch(
        self, observer: JobObserver, classify: Callable[[Function], frozenset[str]], on_hooked: Callable[[], None]
    ) -> None:
        """Mark the ends that ``observer`` (the hooks) wants: ``classify(function)`` says which outcomes of a
        function it wants (asked once per function, then cached); ``on_hooked()`` is called at the first such
        end after ``hooks_read`` (the hooks then schedule their read: no timer runs while no hooked job ends).
        ``observer.read_ring`` may then read only the marked ends (``Ring.view(..., hooked_only=True)``)."""
        self._watcher = observer
        self.state.watch(classify, on_hooked)

    def hooks_read(self) -> None:
        """The marked ends are being read: the next one calls ``on_hooked`` again."""
        self.state.hook_armed = 0

    def stamp(self, job: Job) -> None:
        """A new job: its submit time, and no start yet."""
        job.submitted_at = self.read()
        job.started_at = 0.0

    def end(self, job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
        """A rarer end (fail, exception, dead letter, cancel, drop)."""
        self.record(job, outcome, data, worker)

    def arm(self) -> None:
        """The turn's first end with an eager observer: tell them at the end of the turn (at once without
        ``turn_end``)."""
        self.want_turn[0] = False
        if self._turn_end is None:
            self.flush()
        else:
            self._turn_end(self.flush)

    def flush(self) -> None:
        """Tell every eager observer what it has not heard."""
        self.want_turn[0] = False
        for observer in self.observers:
            if not observer.lazy:
                self.want_turn[0] = True
                self.tell(observer)

    def tell(self, observer: JobObserver, upto: int | None = None) -> None:
        """``observer`` hears the ends it has not heard (up to ``upto``, else all): ``read_ring``, which
        builds their tuples (``jobs_finished``) or reads the ring's arrays."""
        start = self._heard.get(observer)
        end = self.position() if upto is None else upto
        if start is None or end <= start:
            return
        self._heard[observer] = end
        try:
            observer.read_ring(self.state, start, end)
        except Exception:
            log.exception("job observer %r failed", observer)

    def caught_up(self, upto: int) -> None:
        """The ring is about to overwrite the ends before ``upto``: everyone hears them first."""
        for observer in self.observers:
            self.tell(observer, upto)

    def newest(self, limit: int) -> Iterator[Ended]:
        """The last ``limit`` ends (at most what the ring holds), newest first."""
        end = self.position()
        return reversed(self.state.view(max(0, end - limit), end))


#: Functions whose hook classification the ring remembers, at most (then it starts again).
HOOK_CACHE_MAX = 10_000


class Ring:
    """The ring of ends and the stamping state of one observed scheduler, in Python: the fallback of
    ``gearman_gateway._stamps.Ring`` (the same fields and methods; C keeps the ends in arrays)."""

    __slots__ = ("ring", "hooked", "index", "size", "first", "last_seq", "blank", "hook_armed", "read", "want_turn",
                 "arm", "wrap", "complete", "classify", "on_hooked", "hook_cache")  # fmt: skip

    def __init__(
        self,
        read: Callable[[], float],
        want_turn: list[bool],
        arm: Callable[[], None],
        wrap: Callable[[], None],
        complete: str,
        job_type: type,
        size: int,
        blank: bool = True,
    ) -> None:
        self.ring: list[Any] = [None] * size  # Ended tuples
        self.hooked = [False] * size  # a hook wants the end in this slot
        self.index = 0  # the next slot
        self.size = size
        self.first = 0  # ends recorded before slot 0 of this round
        self.last_seq = 0  # the newest job stamped at submit
        self.blank = int(blank)  # a completed job's payload is dropped as it is recorded (no memory bound)
        self.hook_armed = 0  # a hooked end waits to be read (on_hooked was called)
        self.read, self.want_turn, self.arm, self.wrap, self.complete = read, want_turn, arm, wrap, complete
        self.classify: Callable[[Function], frozenset[str]] | None = None
        self.on_hooked: Callable[[], None] | None = None
        self.hook_cache: dict[Function, frozenset[str]] = {}

    def now(self) -> float:
        return self.read()

    def _slots(self, start: int, end: int) -> range:
        """Slots of ends ``start`` to ``end`` (counted since start; at most the ring's size back), possibly
        negative (the previous round)."""
        start = max(start, self.first + self.index - self.size, 0)
        end = min(end, self.first + self.index)
        return range(start - self.first, max(end, start) - self.first)

    def view(self, start: int, end: int, hooked_only: bool = False) -> list[Ended]:
        """Ends ``start`` to ``end``, oldest first (``hooked_only``: those a hook wants)."""
        ring, hooked = self.ring, self.hooked
        return [ring[k] for k in self._slots(start, end) if ring[k] is not None and (hooked[k] or not hooked_only)]

    def reserve(self, count: int) -> None:
        """Keep at least ``count`` ends (a history of that size): a bigger ring, the ends kept in order."""
        if count <= self.size:
            return
        slots = [k for k in self._slots(0, self.first + self.index) if self.ring[k] is not None]
        kept, hooked = [self.ring[k] for k in slots], [self.hooked[k] for k in slots]
        self.first += self.index - len(kept)
        self.ring = kept + [None] * (count - len(kept))
        self.hooked = hooked + [False] * (count - len(kept))
        self.index = len(kept)
        self.size = count

    def watch(
        self, classify: Callable[[Function], frozenset[str]] | None, on_hooked: Callable[[], None] | None
    ) -> None:
        self.classify, self.on_hooked, self.hook_cache = classify, on_hooked, {}
        self.hooked = [False] * self.size  # marks are kept only while hooks watch


def _record(state: Ring, job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
    """One end into the ring (``_stamps.record``'s fallback)."""
    if state.classify is not None:
        _record_hooked(state, job, outcome, data, worker)
        return
    state.ring[state.index] = (job, outcome, data, worker, state.read())
    state.index += 1
    if state.index >= state.size:
        state.wrap()
    if state.want_turn[0]:
        state.arm()


def _record_hooked(state: Ring, job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
    """One end into the ring of a scheduler with hooks: marked if a hook wants it (``Observing.watch``)."""
    wanted = state.hook_cache.get(job.function)
    if wanted is None:
        wanted = state.classify(job.function)  # type: ignore[misc]
        if len(state.hook_cache) >= HOOK_CACHE_MAX:
            state.hook_cache.clear()
        state.hook_cache[job.function] = wanted
    hooked = outcome in wanted
    index = state.index
    state.ring[index] = (job, outcome, data, worker, state.read())
    state.hooked[index] = hooked
    state.index = index + 1
    if hooked and not state.hook_armed:
        state.hook_armed = 1
        state.on_hooked()  # type: ignore[misc]
    if state.index >= state.size:
        state.wrap()
    if state.want_turn[0]:
        state.arm()


def python_methods(base: Any, state: Any, record_end: Callable[..., None], read: Callable[[], float]) -> dict[str, Any]:
    """The wrapped transitions in Python: the fallback without the C accelerator (``state`` a ``Ring``), and a
    Scheduler swapped to observed by ``add_observer`` (its workers' ``jobs`` are plain dicts already)."""
    base_submit = base.submit
    base_start = base._start
    base_complete = base.work_complete

    def submit(
        self: Any,
        function: bytes,
        data: bytes,
        unique: bytes = b"",
        priority: int = 1,
        background: bool = False,
        when: int = 0,
        reducer: bytes | None = None,
        listener: Any = None,
    ) -> Job:
        job = base_submit(self, function, data, unique, priority, background, when, reducer, listener)
        if job.seq > state.last_seq:  # new, not joined to an existing job (sequence numbers only grow)
            state.last_seq = job.seq
            if job.worker is None:
                job.submitted_at = read()
                job.started_at = 0.0
            else:  # a held grab took it within submit (``_start`` stamped it)
                job.submitted_at = job.started_at
        return job

    def _start(self: Any, job: Job, worker: Worker) -> None:
        base_start(self, job, worker)
        job.started_at = read()

    def work_complete(self: Any, worker: Worker, handle: bytes, data: bytes) -> None:
        job = worker.jobs.get(handle)
        base_complete(self, worker, handle, data)
        if job is not None:
            job.data = b""  # done (and counted by a memory bound): the ring keeps the job, not its payload
            record_end(state, job, COMPLETE, None, worker)

    submit.__doc__ = base.submit.__doc__
    return {"submit": submit, "_start": _start, "work_complete": work_complete, "_jobs_table": staticmethod(dict)}


def c_methods(stamps: Any, state: Any) -> dict[str, Any]:
    """No wrapped transition: the scheduler's ``jobs_by_handle`` stamps submits (``_stamps.StampedJobs``)
    and each worker's ``jobs`` stamps starts and records WORK_COMPLETE's ends (``_stamps.WorkerJobs``)."""
    return {
        "_jobs_table": staticmethod(lambda jobs: stamps.stamped_jobs(state, jobs)),
        "_worker_jobs": staticmethod(partial(stamps.worker_jobs, state)),
    }


def observed_methods(base: Any, observing: Observing, made: bool = True) -> dict[str, Any]:
    """What the observed class of ``base`` (the Scheduler, or the BoundedScheduler) holds to stamp the job's
    times and record its end: ``_jobs_table``, what the scheduler's ``jobs_by_handle`` becomes, and either
    ``_worker_jobs``, the class of each worker's ``jobs`` (in C, when ``gearman_gateway._stamps`` is built
    and the scheduler is ``made`` observed: no transition wrapped), or ``submit``, ``_start`` and
    ``work_complete`` wrapped in Python. The ring's state is one ``Ring`` (C's or Python's)."""
    from gearman_gateway.scheduler.bounded import BoundedScheduler
    from gearman_gateway.scheduler.job import Job

    caught_up = observing.caught_up
    stamps = accel.stamps

    def wrap() -> None:
        caught_up(state.first + state.size)
        state.first += state.size
        state.index = 0

    ring_type: Any = Ring if stamps is None else stamps.Ring
    # under a memory bound the payload is dropped by the scheduler once counted (BoundedScheduler._free)
    blank = not issubclass(base, BoundedScheduler)
    state = ring_type(observing.read, observing.want_turn, observing.arm, wrap, COMPLETE, Job, RING, blank)
    record_end = _record if stamps is None else stamps.record

    def record(job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
        if outcome is not DEAD_LETTER and state.blank:  # a dead letter keeps its payload (it can be requeued)
            job.data = b""
        record_end(state, job, outcome, data, worker)

    def position() -> int:
        return state.first + state.index

    def seen(seq: int) -> None:
        """Jobs up to ``seq`` exist already (stamped by ``add_observer``)."""
        state.last_seq = seq

    observing.record = record
    observing.position = position
    observing.reserve = state.reserve
    observing.state = state
    if stamps is not None and made:
        methods = c_methods(stamps, state)
    else:
        methods = python_methods(base, state, record_end, observing.read)
    return {**methods, "_seen": staticmethod(seen)}
