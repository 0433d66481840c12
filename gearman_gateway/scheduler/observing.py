"""The scheduler's record of finished jobs for its observers, and the methods of a scheduler that has some.

A Scheduler nobody observes runs main's job path: no test for observers on its frequent transitions (only
the rare ends, fail, exception, cancel, drop, call ``_finished``, which tests a class attribute). A
scheduler with observers is an instance of a class of its own, made before the instance
(``ObservedScheduler.__new__``): CPython 3.11 keeps an instance's attribute values keyed by the class it
was made as, and an instance whose class is swapped afterwards loses the specialized attribute access on
every ``self.x`` (measured: +23 % instructions per job). That class holds an ``Observing`` as a class
attribute (the Scheduler keeps at most 29 instance attributes, see ``DiedJobs``) and stamps the three
frequent transitions (``observed_methods``): with the optional C accelerator (``accel``, _stamps.c) by C
wrappers of ``_start`` and ``work_complete`` and a ``jobs_by_handle`` that stamps submits (no Python frame:
Python costs ~1,000 instructions for even a small wrapper, issue 19 allows ~2,000 per job for all of it);
without it by Python closures over the clock and the ring's state. One clock read per transition.

Each end costs the job path one tuple in a preallocated ring (``Ended``: the job, its outcome, data, last
worker and the time), nothing else: no call per turn, no per-job work in the observers. The job history
is a view of the ring; lazy observers (the latency histograms) read what they have not heard when they are
asked or when the ring is about to overwrite it; other observers are told once per reactor turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gearman_gateway import accel
from gearman_gateway.scheduler.listener import COMPLETE, DEAD_LETTER

if TYPE_CHECKING:
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.listener import Ended, JobObserver
    from gearman_gateway.scheduler.worker import Worker

log = logging.getLogger(__name__)


#: Ends the ring holds at least (more if a reader wants more: ``reserve``).
RING = 256


class Observing:
    """The ring of finished jobs, the observers and how far each has heard.

    ``record``, ``position`` and ``reserve`` are set by ``observed_methods`` (they share its cells)."""

    __slots__ = ("observers", "read", "want_turn", "_turn_end", "_heard", "record", "position", "reserve", "_view")

    def __init__(self, read: Callable[[], float], turn_end: Callable[[Callable[[], None]], None] | None) -> None:
        self.observers: tuple[JobObserver, ...] = ()
        self.read = read
        self.want_turn = [False]  # [True]: some eager observer waits for this turn's end to be armed
        self._turn_end = turn_end
        self._heard: dict[JobObserver, int] = {}  # observer -> ends it heard, counted since start
        self.record: Callable[[Job, str, bytes | None, Worker | None], None]
        self.position: Callable[[], int]  # ends recorded since start
        self.reserve: Callable[[int], None]  # keep at least this many ends
        self._view: Callable[[int, int], list[Ended]]

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
        """``observer`` hears the ends it has not heard (up to ``upto``, else all)."""
        start = self._heard.get(observer)
        end = self.position() if upto is None else upto
        if start is None or end <= start:
            return
        self._heard[observer] = end
        try:
            observer.jobs_finished(self._view(start, end))
        except Exception:
            log.exception("job observer %r failed", observer)

    def caught_up(self, upto: int) -> None:
        """The ring is about to overwrite the ends before ``upto``: everyone hears them first."""
        for observer in self.observers:
            self.tell(observer, upto)

    def newest(self, limit: int) -> Iterator[Ended]:
        """The last ``limit`` ends (at most what the ring holds), newest first."""
        end = self.position()
        return reversed(self._view(max(0, end - limit), end))


class Ring:
    """The ring of ends and the stamping state of one observed scheduler, in Python: the fallback of
    ``gearman_gateway._stamps.Ring`` (the same fields; C reads and writes them without a Python frame)."""

    __slots__ = ("ring", "index", "size", "first", "last_seq", "read", "want_turn", "arm", "wrap", "complete")

    def __init__(
        self,
        read: Callable[[], float],
        want_turn: list[bool],
        arm: Callable[[], None],
        wrap: Callable[[], None],
        complete: str,
        job_type: type,
        worker_type: type,
        size: int,
    ) -> None:
        self.ring: list[Any] = [None] * size
        self.index = 0  # the next slot
        self.size = size
        self.first = 0  # ends recorded before slot 0 of this round
        self.last_seq = 0  # the newest job stamped at submit
        self.read, self.want_turn, self.arm, self.wrap, self.complete = read, want_turn, arm, wrap, complete

    def now(self) -> float:
        return self.read()


def _record(state: Ring, job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
    """One end into the ring (``_stamps.record``'s fallback)."""
    state.ring[state.index] = (job, outcome, data, worker, state.read())
    state.index += 1
    if state.index >= state.size:
        state.wrap()
    if state.want_turn[0]:
        state.arm()


def python_methods(base: Any, state: Ring) -> dict[str, Callable[..., Any]]:
    """The wrapped transitions in Python (the fallback of ``_stamps.Wrapper``)."""
    read = state.read
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
            job.data = b""  # done: the ring keeps the job, not its payload; the result is the client's
            _record(state, job, COMPLETE, None, worker)

    submit.__doc__ = base.submit.__doc__
    return {"submit": submit, "_start": _start, "work_complete": work_complete, "_jobs_table": staticmethod(dict)}


def c_methods(stamps: Any, base: Any, state: Any) -> dict[str, Callable[..., Any]]:
    """The wrapped transitions in C (``_stamps.Wrapper``: no Python frame, no bound method)."""
    return {
        "_start": stamps.Wrapper("start", base._start, state),
        "work_complete": stamps.Wrapper("complete", base.work_complete, state),
        # no submit wrapper: the scheduler's ``jobs_by_handle`` stamps each new job as submit puts it there
        "_jobs_table": staticmethod(lambda jobs: stamps.stamped_jobs(state, jobs)),
    }


def observed_methods(base: Any, observing: Observing) -> dict[str, Callable[..., Any]]:
    """``submit``, ``_start`` and ``work_complete`` of ``base`` (the Scheduler), wrapped to stamp the job's
    times and record its end, and ``_jobs_table``, what the scheduler's ``jobs_by_handle`` becomes. In C
    when ``gearman_gateway._stamps`` is built (``accel.stamps``): there ``jobs_by_handle`` stamps the
    submits and ``submit`` is not wrapped. Else in Python. The ring's state is one ``Ring`` (C's or
    Python's) that both share with the methods here."""
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.worker import Worker

    caught_up = observing.caught_up
    stamps = accel.stamps

    def wrap() -> None:
        caught_up(state.first + state.size)
        state.first += state.size
        state.index = 0

    ring_type: Any = Ring if stamps is None else stamps.Ring
    state = ring_type(observing.read, observing.want_turn, observing.arm, wrap, COMPLETE, Job, Worker, RING)
    record_end = _record if stamps is None else stamps.record

    def record(job: Job, outcome: str, data: bytes | None, worker: Worker | None) -> None:
        if outcome is not DEAD_LETTER:  # a dead letter keeps its payload (it can be requeued)
            job.data = b""
        record_end(state, job, outcome, data, worker)

    def position() -> int:
        return state.first + state.index

    def view(start: int, end: int) -> list[Ended]:
        """Ends ``start`` to ``end`` (counted since start; at most the ring's size back), oldest first."""
        first, size, ring = state.first, state.size, state.ring
        start = max(start, first + state.index - size, 0)
        if end <= start:
            return []
        a, b = start - first, end - first  # slots, a possibly negative (the previous round)
        if a >= 0:
            return ring[a:b]
        return [e for e in ring[size + a :] if e is not None] + ring[:b]  # None: a slot not written yet

    def reserve(count: int) -> None:
        """Keep at least ``count`` ends (a history of that size): a bigger ring, the ends kept in order."""
        if count <= state.size:
            return
        kept = view(0, position())
        state.first += state.index - len(kept)
        state.ring = kept + [None] * (count - len(kept))
        state.index = len(kept)
        state.size = count

    def seen(seq: int) -> None:
        """Jobs up to ``seq`` exist already (stamped by ``add_observer``)."""
        state.last_seq = seq

    observing.record = record
    observing.position = position
    observing.reserve = reserve
    observing._view = view
    methods = python_methods(base, state) if stamps is None else c_methods(stamps, base, state)
    return {**methods, "_seen": staticmethod(seen)}
