"""How long jobs wait and run, per function: histograms for Prometheus, p50/p99 over the last minute.

A lazy ``JobObserver``: it reads the scheduler's ring of ends (scheduler/observing.py) when its figures are
asked for, or when the ring is about to overwrite ends it has not read, never on the job path. Per end it
takes the queue wait (submit to the assignment that ran it last) and the run time (that assignment to the
end) from the two timestamps the scheduler keeps on the job, appends them to its function's lists, and
counts those into the buckets once per second of ends (a sort and a binary search per bound); the
Prometheus buckets and the quantiles are computed when asked.

Labels stay bounded: the first ``max_functions`` functions that finish a job get their own histograms,
later ones share the function ``other`` (a name beginning with a NUL byte, so no real function is it).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from itertools import compress, repeat
from operator import attrgetter, is_, itemgetter, sub
from typing import TYPE_CHECKING, Any, NamedTuple

from gearman_gateway import accel
from gearman_gateway.scheduler.job import Job
from gearman_gateway.scheduler.listener import JobObserver

if TYPE_CHECKING:
    from gearman_gateway.scheduler.listener import Ended

_JOB, _END = itemgetter(0), itemgetter(4)  # of an ``Ended``
_STARTED, _SUBMITTED, _FUNCTION = attrgetter("started_at"), attrgetter("submitted_at"), attrgetter("function")

#: The function whose histograms hold every function past ``max_functions``.
OTHER = b"other"
#: Default number of functions with histograms of their own (Prometheus series: 2 x 23 per function).
MAX_FUNCTIONS = 50
#: The quantiles' window, in seconds.
WINDOW = 60
#: Bucket bounds, in seconds: ten per decade from 10 us to 1000 s (quantiles interpolate within a bucket,
#: so a p99 is off by at most the bucket's width, < 25 %). A time beyond the last bound counts in the last,
#: open bucket.
_MANTISSAS = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5)
BOUNDS: tuple[float, ...] = (*(round(m * 10.0**e, 9) for e in range(-5, 3) for m in _MANTISSAS), 1000.0)
#: The bounds exposed as Prometheus ``le`` labels: 1, 2.5 and 5 per decade, 100 us to 500 s.
EXPOSED: tuple[float, ...] = tuple(round(m * 10.0**e, 9) for e in range(-4, 3) for m in (1.0, 2.5, 5.0))
_EXPOSED_INDEX = tuple(BOUNDS.index(b) for b in EXPOSED)


class Histogram(NamedTuple):
    """One function's time distribution for Prometheus: cumulative counts at each ``EXPOSED`` bound."""

    buckets: tuple[int, ...]  # cumulative, one per EXPOSED bound
    count: int  # the +Inf bucket
    total: float  # the sum of the times, seconds


class FunctionLatency(NamedTuple):
    """One function's figures (``Latency.functions``): histograms since start, quantiles of the last minute."""

    name: bytes  # OTHER for the folded functions
    wait: Histogram
    run: Histogram
    recent: int  # jobs that ended in the last minute
    wait_p50: float
    wait_p99: float
    run_p50: float
    run_p99: float


class _Stats:
    """Counts per bucket, kept since start; and, once per second in which a job ended, a copy of them:
    the counts of the last minute are the counts now minus the copy from a minute ago. The times of the
    current second wait in two lists and are counted into the buckets in one go (``settle``: a sort and a
    binary search per bound, cheaper than one search per job)."""

    __slots__ = ("wait", "run", "wait_sum", "run_sum", "second", "copies", "waits", "runs")

    def __init__(self) -> None:
        size = len(BOUNDS) + 1
        self.wait = [0] * size
        self.run = [0] * size
        self.wait_sum = 0.0
        self.run_sum = 0.0
        self.second = -1
        self.copies: deque[tuple[int, tuple[int, ...], tuple[int, ...]]] = deque()
        self.waits: list[float] = []
        self.runs: list[float] = []

    def settle(self) -> None:
        """Count the waiting times into the buckets."""
        if self.waits:
            self.wait_sum += _count(self.waits, self.wait)
            self.run_sum += _count(self.runs, self.run)

    def roll(self, second: int) -> None:
        """The first job to end in ``second``: keep the counts as they were when it began."""
        self.settle()
        self.second = second
        copies = self.copies
        copies.append((second, tuple(self.wait), tuple(self.run)))
        cutoff = second - WINDOW
        while copies[0][0] < cutoff:
            copies.popleft()

    def since(self, now: float) -> tuple[list[int], list[int]]:
        """Counts of the jobs that ended in the last WINDOW seconds (to the second: the counts did not change
        between the end of one second with a copy and the start of the next, so the first copy within the
        window holds the counts at its start)."""
        self.settle()
        cutoff = now - WINDOW
        for second, wait, run in self.copies:
            if second >= cutoff:
                return [a - b for a, b in zip(self.wait, wait, strict=True)], [
                    a - b for a, b in zip(self.run, run, strict=True)
                ]
        return [0] * len(self.wait), [0] * len(self.run)


def columns(ended: list[Ended]) -> tuple[list[Any], list[float], list[float], list[float]]:
    """Of the ends whose job ran (a job cancelled or dropped while queued has no wait and no run time): the
    functions, queue waits, run times and end times, with ``map`` and ``compress`` (loops in C, a Python
    step per column, not per job)."""
    jobs = list(map(_JOB, ended))
    starts = list(map(_STARTED, jobs))
    if not all(starts):
        ended = list(compress(ended, starts))
        jobs = list(compress(jobs, starts))
        starts = list(compress(starts, starts))
    ends = list(map(_END, ended))
    waits = list(map(sub, starts, map(_SUBMITTED, jobs)))
    runs = list(map(sub, ends, starts))
    return list(map(_FUNCTION, jobs)), waits, runs, ends


def _count(times: list[float], counts: list[int]) -> float:
    """Add ``times`` to ``counts`` per bucket, empty the list, and return their sum."""
    times.sort()
    low = 0
    for index, bound in enumerate(BOUNDS):
        high = bisect_right(times, bound, low)
        counts[index] += high - low
        low = high
    counts[-1] += len(times) - low
    total = sum(times)
    times.clear()
    return total


def quantile(counts: list[int], q: float) -> float:
    """The ``q`` quantile of times counted per bucket, interpolated linearly within its bucket (as
    Prometheus' ``histogram_quantile``); 0.0 when nothing was counted."""
    total = sum(counts)
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(BOUNDS):
                return BOUNDS[-1]
            low = BOUNDS[index - 1] if index else 0.0
            return low + (BOUNDS[index] - low) * (rank - seen) / count
        seen += count
    return BOUNDS[-1]


def _histogram(counts: list[int], total: float) -> Histogram:
    cumulative = []
    running = 0
    position = 0
    for index in _EXPOSED_INDEX:
        while position <= index:
            running += counts[position]
            position += 1
        cumulative.append(running)
    return Histogram(tuple(cumulative), sum(counts), total)


class Latency(JobObserver):
    """Queue wait and run time per function (module docstring)."""

    __slots__ = ("max_functions", "clock", "_stats", "_lookup", "_other", "_observing")

    lazy = True  # the ends are read when figures are asked for (or before the ring overwrites them)

    #: Names remembered as folded into ``other``: past this many, a folded name is looked up each time.
    LOOKUP_MAX = 10_000

    def __init__(self, clock: object, max_functions: int = MAX_FUNCTIONS) -> None:
        self.max_functions = max_functions
        self.clock = clock  # .seconds(), for the window of the quantiles
        self._stats: dict[bytes, _Stats] = {}  # own histograms, in the order functions first ended a job
        self._lookup: dict[bytes, _Stats] = {}  # every name seen -> its stats (own or other's)
        self._other: _Stats | None = None
        self._observing: Any = None

    def attached(self, observing: Any) -> None:
        self._observing = observing

    def read_ring(self, ring: Any, start: int, end: int) -> None:
        """With the C accelerator, counted straight from the ring's arrays (no tuple per end)."""
        stamps = accel.stamps
        if stamps is not None and type(ring) is stamps.Ring:
            ring.tally(start, end, self._group, BOUNDS)
            return
        self.jobs_finished(ring.view(start, end))

    def jobs_finished(self, ended: list[Ended]) -> None:
        """A batch of ends (up to the ring's size). In C when built (``accel``); else taken apart column by
        column (``columns``: no Python step per job), then per second of end and per function, two
        ``extend`` s, counted into the buckets once per second (``_Stats.settle``)."""
        stamps = accel.stamps
        if stamps is not None:  # the C accelerator: counted straight into the buckets, no object per job
            stamps.tally(ended, Job, self._group, BOUNDS)
            return
        functions, waits, runs, ends = columns(ended)
        if not functions:
            return
        second, last = int(ends[0]), int(ends[-1])
        if second >= last:  # one second (or a clock that stepped back): one slice
            self._add(second, functions, waits, runs)
            return
        low = 0
        while low < len(ends):
            second = int(ends[low])
            high = max(bisect_left(ends, second + 1, low), low + 1)
            self._add(second, functions[low:high], waits[low:high], runs[low:high])
            low = high

    def _add(self, second: int, functions: list[Any], waits: list[float], runs: list[float]) -> None:
        """Times of jobs that ended in ``second``, per function (usually one: a single ``count``)."""
        first = functions[0]
        if functions.count(first) == len(functions):
            groups: Any = ((first, waits, runs),)
        else:
            groups = (
                (fn, list(compress(waits, mine)), list(compress(runs, mine)))
                for fn in dict.fromkeys(functions)
                for mine in (list(map(is_, repeat(fn), functions)),)
            )
        lookup = self._lookup
        for fn, fn_waits, fn_runs in groups:
            stats = lookup.get(fn.name)
            if stats is None:
                stats = self._stats_for(fn.name)
            if second != stats.second:
                stats.roll(second)
            stats.waits.extend(fn_waits)
            stats.runs.extend(fn_runs)

    def _group(self, fn: Any, second: int) -> _Stats:
        """The stats of ``fn``'s jobs that end in ``second`` (``_stamps.tally`` calls it once per run of
        such ends)."""
        stats = self._lookup.get(fn.name)
        if stats is None:
            stats = self._stats_for(fn.name)
        if second != stats.second:
            stats.roll(second)
        return stats

    def _stats_for(self, name: bytes) -> _Stats:
        if len(self._stats) < self.max_functions:
            stats = self._stats[name] = _Stats()
        else:
            if self._other is None:
                self._other = _Stats()
            stats = self._other
        if len(self._lookup) < self.LOOKUP_MAX:
            self._lookup[name] = stats
        return stats

    def functions(self) -> list[FunctionLatency]:
        """Every function with histograms of its own, then ``other`` if any function was folded into it."""
        if self._observing is not None:
            self._observing.tell(self)  # the ends not read yet
        now = self.clock.seconds()  # type: ignore[attr-defined]
        named = list(self._stats.items())
        if self._other is not None:
            named.append((OTHER, self._other))
        found = []
        for name, stats in named:
            wait, run = stats.since(now)
            found.append(
                FunctionLatency(
                    name,
                    _histogram(stats.wait, stats.wait_sum),
                    _histogram(stats.run, stats.run_sum),
                    sum(run),
                    quantile(wait, 0.5),
                    quantile(wait, 0.99),
                    quantile(run, 0.5),
                    quantile(run, 0.99),
                )
            )
        return found
