"""The scheduler's JobObserver seam, the latency histograms and the job history, on a fake clock."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock

from gearman_gateway.history import History
from gearman_gateway.latency import BOUNDS, OTHER, WINDOW, Latency, quantile
from gearman_gateway.scheduler import Function, Job, JobObserver, Priority, Scheduler, Worker
from gearman_gateway.scheduler.listener import Ended
from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy
from tests import accel_paths


@pytest.fixture(autouse=True, params=accel_paths.PATHS)
def accel_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the C accelerator and with its Python fallback."""
    accel_paths.choose(request.param, monkeypatch)
    return request.param


class Waker:
    client_id = b"w1"

    def wake(self) -> None:
        pass

    def grabbed(self, job: Job | None) -> None:
        pass


class Recorder(JobObserver):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def jobs_finished(self, ended: list[Ended]) -> None:
        for job, outcome, data, worker, now in ended:
            self.events.append((job.handle, outcome, data, worker is not None, job.submitted_at, job.started_at, now))


@pytest.fixture
def sched(clock: Clock) -> Scheduler:
    policies = RetryPolicies(functions={b"dl": RetryPolicy(dead_letter=True)})
    return Scheduler(clock, handle_prefix=b"H:t", retry_policies=policies)


def worker_for(sched: Scheduler, name: bytes) -> Worker:
    worker = sched.add_worker(Waker())
    sched.can_do(worker, name)
    return worker


def test_every_end_reaches_the_observer_with_its_times(sched: Scheduler, clock: Clock) -> None:
    seen = Recorder()
    sched.add_observer(seen)
    start = clock.seconds()
    job = sched.submit(b"f", b"x")
    clock.advance(2)
    worker = worker_for(sched, b"f")
    assert sched.grab(worker) is job
    clock.advance(3)
    sched.work_complete(worker, job.handle, b"done")
    assert seen.events == [(job.handle, "complete", None, True, start, start + 2, start + 5)]  # result not kept
    seen.events.clear()
    for data in (b"fail", b"raise"):
        job = sched.submit(b"f", data)
        assert sched.grab(worker) is job
        if data == b"fail":
            sched.work_fail(worker, job.handle)
        else:
            sched.work_exception(worker, job.handle, b"boom")
    dead = sched.submit(b"dl", b"d", background=True)
    other = worker_for(sched, b"dl")
    sched.grab(other)
    sched.work_exception(other, dead.handle, b"bad")
    cancelled = sched.submit(b"f", b"c", background=True)
    sched.cancel(cancelled.handle)
    assert [(e[1], e[2], e[3]) for e in seen.events] == [
        ("fail", None, True),
        ("exception", b"boom", True),
        ("dead_letter", b"bad", True),
        ("cancelled", None, False),
    ]
    sched.remove_observer(seen)
    job = sched.submit(b"f", b"quiet")
    sched.grab(worker)
    sched.work_complete(worker, job.handle, b"")
    assert len(seen.events) == 4


def test_a_dropped_job_and_a_dead_worker(sched: Scheduler) -> None:
    from gearman_gateway.scheduler import JobListener

    seen = Recorder()
    sched.add_observer(seen)
    client = JobListener()
    sched.submit(b"f", b"x", listener=client)
    sched.detach(client)  # nobody waits for it any more: dropped
    assert [e[1] for e in seen.events] == ["dropped"]
    sched.job_retries = 1
    job = sched.submit(b"f", b"y", background=True)
    worker = worker_for(sched, b"f")
    sched.grab(worker)
    sched.remove_worker(worker)  # its worker died and --job-retries 1 is used up
    assert seen.events[-1][:2] == (job.handle, "fail") and seen.events[-1][3]


def test_quantiles_interpolate_within_buckets() -> None:
    counts = [0] * (len(BOUNDS) + 1)
    assert quantile(counts, 0.5) == 0.0
    index = BOUNDS.index(0.1)
    counts[index] = 100  # all in (0.075, 0.1]
    assert quantile(counts, 0.5) == pytest.approx(0.0875)
    assert quantile(counts, 0.99) == pytest.approx(0.075 + 0.025 * 0.99)
    counts[-1] = 1000  # beyond the last bound
    assert quantile(counts, 0.99) == BOUNDS[-1]


def test_latency_window_and_folded_functions(sched: Scheduler, clock: Clock) -> None:
    latency = Latency(clock, max_functions=1)
    sched.add_observer(latency)
    worker = worker_for(sched, b"a")
    sched.can_do(worker, b"b")
    sched.can_do(worker, b"c")

    def run(name: bytes, wait: float, run: float) -> None:
        job = sched.submit(name, b"")
        clock.advance(wait)
        assert sched.grab(worker) is job
        clock.advance(run)
        sched.work_complete(worker, job.handle, b"")

    run(b"a", 0.01, 2.0)
    clock.advance(WINDOW + 5)
    for _ in range(10):
        run(b"a", 0.001, 0.2)
    run(b"b", 0, 1)
    run(b"c", 0, 1)
    a, other = latency.functions()
    assert a.name == b"a" and other.name == OTHER
    assert a.recent == 10 and a.run.count == 11  # the minute's, and since start
    assert 0.15 < a.run_p50 <= 0.2 and 0.15 < a.run_p99 <= 0.2 and a.wait_p99 <= 0.00125  # (0.001 and a rounding error)
    assert a.run.total == pytest.approx(4.0)
    assert other.recent == 2 and other.run_p50 == pytest.approx(1.0, rel=0.25)
    clock.advance(WINDOW + 1)
    assert latency.functions()[0].recent == 0 and latency.functions()[0].run.count == 11


def test_history_ring_and_filters(sched: Scheduler, clock: Clock) -> None:
    history = History(size=3, exception_bytes=4)
    sched.add_observer(history)
    worker = worker_for(sched, b"f")
    handles = []
    for n in range(4):
        job = sched.submit(b"f", b"%d" % n, unique=b"u%d" % n, priority=Priority.HIGH)
        handles.append(job.handle)
        clock.advance(1)
        sched.grab(worker)
        if n == 2:
            sched.work_exception(worker, job.handle, b"0123456789")
        else:
            sched.work_complete(worker, job.handle, b"ok")
    entries = history.entries()
    assert [e.handle for e in entries] == handles[:0:-1]  # newest first; the oldest fell out of the ring
    assert entries[1].exception == b"0123" and entries[1].outcome == "exception" and entries[0].exception == b""
    assert entries[0].worker == b"w1" and entries[0].unique == b"u3" and entries[0].priority == Priority.HIGH
    assert entries[0].wait == pytest.approx(1.0) and entries[0].run == 0.0
    assert [e.handle for e in history.entries(outcome="exception")] == [handles[2]]
    assert history.entries(function=b"g") == [] and len(history.entries(limit=2)) == 2
    assert [e.handle for e in history.entries(since=entries[1].finished)] == [handles[3], handles[2]]


def test_without_observers_the_scheduler_keeps_no_observer_state(sched: Scheduler, clock: Clock) -> None:
    """Nobody observes: no clock is read for observers and jobs carry no times (the job path's cost is main's)."""
    assert sched._observing is None
    job = sched.submit(b"f", b"x")
    assert not hasattr(job, "submitted_at")
    worker = worker_for(sched, b"f")
    assert sched.grab(worker) is job
    sched.work_complete(worker, job.handle, b"")
    seen = Recorder()
    queued = sched.submit(b"f", b"y")
    clock.advance(1)
    sched.add_observer(seen)  # jobs already in memory get the time the observer came
    assert queued.submitted_at == clock.seconds() and queued.started_at == 0.0
    sched.remove_observer(seen)
    assert sched._observing is None


def test_an_observed_scheduler_made_as_one_tells_at_the_turn_end_and_keeps_every_end(clock: Clock) -> None:
    """Made as an ObservedScheduler (the server's way): eager observers hear a turn's ends at its end, lazy
    ones when they ask or before the ring overwrites what they have not heard; the ring keeps no payload."""
    from gearman_gateway.scheduler import ObservedScheduler
    from gearman_gateway.scheduler.observing import RING

    turn: list = []
    sched = ObservedScheduler(clock, handle_prefix=b"H:o", turn_end=turn.append)
    assert type(sched) is not ObservedScheduler and isinstance(sched, ObservedScheduler)
    eager = Recorder()
    lazy = Latency(clock)
    history = History(size=RING + 50)  # bigger than the ring: it grows, keeping the ends in order
    for observer in (eager, lazy, history):
        sched.add_observer(observer)
    worker = worker_for(sched, b"f")
    job = sched.submit(b"f", b"payload")
    assert sched.grab(worker) is job
    sched.work_complete(worker, job.handle, b"result")
    assert eager.events == [] and len(turn) == 1  # told at the end of the turn, armed once
    turn.pop()()
    assert [e[:3] for e in eager.events] == [(job.handle, "complete", None)] and job.data == b""
    total = 3 * RING + 7  # the ring wraps: the lazy observer must still count every end
    for n in range(total - 1):
        job = sched.submit(b"f", b"%d" % n)
        sched.grab(worker)
        clock.advance(0.001)
        sched.work_complete(worker, job.handle, b"")
        while turn:
            turn.pop()()
    assert len(eager.events) == total
    (fn,) = lazy.functions()
    assert fn.run.count == total and fn.run_p50 == pytest.approx(0.001, rel=0.25)
    entries = history.entries()
    assert len(entries) == RING + 50 and entries[0].handle == job.handle
    assert [e.finished for e in entries] == sorted((e.finished for e in entries), reverse=True)


def test_a_dead_letter_keeps_its_payload_for_a_requeue(sched: Scheduler) -> None:
    seen = Recorder()
    sched.add_observer(seen)
    dead = sched.submit(b"dl", b"keep me", background=True)
    worker = worker_for(sched, b"dl")
    sched.grab(worker)
    sched.work_fail(worker, dead.handle)
    assert seen.events[-1][1] == "dead_letter" and dead.data == b"keep me"


def test_the_accelerated_path_wraps_no_transition_and_stamps_in_the_job_tables(clock: Clock, accel_path: str) -> None:
    """With the C accelerator an observed scheduler runs the Scheduler's own methods: ``jobs_by_handle``
    stamps each new job, each worker's ``jobs`` stamps its start and records WORK_COMPLETE's end; a dead
    letter put back keeps its times; a plain Scheduler gets a plain table back when its last observer goes.
    The fallback wraps the three transitions in Python: same times."""
    from gearman_gateway.scheduler import ObservedScheduler

    sched = ObservedScheduler(clock, handle_prefix=b"H:a", retry_policies=RetryPolicies({}, RetryPolicy()))
    policies = RetryPolicies(functions={b"dl": RetryPolicy(dead_letter=True)})
    sched.retry_policies = policies
    history = History(size=10)
    sched.add_observer(history)
    own = type(sched).__dict__
    if accel_path == "c":
        assert "submit" not in own and "_start" not in own and "work_complete" not in own
        assert type(sched.jobs_by_handle).__name__ == "StampedJobs"
    else:
        assert type(sched).submit is not Scheduler.submit and type(sched.jobs_by_handle) is dict
    start = clock.seconds()
    job = sched.submit(b"dl", b"d", background=True)
    assert (job.submitted_at, job.started_at) == (start, 0.0)
    assert sched.submit(b"dl", b"d", b"u") is not job  # a second job: stamped as well
    worker = worker_for(sched, b"dl")
    clock.advance(2)
    assert sched.grab(worker) is job and job.started_at == start + 2
    assert type(worker.jobs).__name__ == ("WorkerJobs" if accel_path == "c" else "dict")
    sched.work_fail(worker, job.handle)
    clock.advance(5)
    assert sched.requeue_dead(job.handle)
    assert (job.submitted_at, job.started_at) == (start, start + 2)  # not a new job: its times stay
    plain = Scheduler(clock, handle_prefix=b"H:p")
    plain.add_observer(history)
    job = plain.submit(b"f", b"x")
    assert job.submitted_at == clock.seconds()
    plain.remove_observer(history)
    assert type(plain) is Scheduler and type(plain.jobs_by_handle) is dict
    assert list(plain.jobs_by_handle.values()) == [job]


def test_latency_counts_the_same_in_c_and_in_python(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, accel_path: str
) -> None:
    """``_stamps.tally`` against the Python columns: the same ends (three functions interleaved, a job that
    never ran, ends over three seconds, times past the last bound) give the same histograms and quantiles."""
    from gearman_gateway import accel

    if accel_path == "python":
        pytest.skip("compares both paths itself: runs once")
    fns = [Function(b"f%d" % n) for n in range(3)]
    ends = []
    t0 = 1_000_000.25
    for n in range(600):
        job = Job(b"H:%d" % n, fns[n % 3], b"", b"", 1, False, 0, None, None, n + 1)
        job.submitted_at = t0 + n * 0.005
        job.started_at = 0.0 if n % 97 == 5 else job.submitted_at + (n % 13) * 0.0007
        ends.append((job, "complete", None, None, job.started_at + (n % 7) * 0.01 + (2000.0 if n == 599 else 0.0)))
    figures = []
    for stamps in (accel.stamps, None):
        monkeypatch.setattr(accel, "stamps", stamps)
        latency = Latency(clock, max_functions=2)
        latency.jobs_finished(ends[:300])
        latency.jobs_finished(ends[300:])
        clock.advance(t0 + 10 - clock.seconds())
        figures.append(latency.functions())
    c, python = figures
    assert [f.name for f in c] == [b"f0", b"f1", OTHER]
    for a, b in zip(c, python, strict=True):
        assert a.wait.buckets == b.wait.buckets and a.run.buckets == b.run.buckets and a.recent == b.recent
        assert (a.wait.total, a.run.total) == pytest.approx((b.wait.total, b.run.total))
        assert (a.wait_p50, a.wait_p99, a.run_p50, a.run_p99) == pytest.approx(
            (b.wait_p50, b.wait_p99, b.run_p50, b.run_p99)
        )


def test_a_job_completed_under_a_timeout_or_while_draining_is_recorded_once(clock: Clock) -> None:
    """WORK_COMPLETE's other branch (a CAN_DO_TIMEOUT timer, or draining) records the end too, once."""
    from gearman_gateway.scheduler import ObservedScheduler

    sched = ObservedScheduler(clock, handle_prefix=b"H:t")
    seen = Recorder()
    sched.add_observer(seen)
    worker = sched.add_worker(Waker())
    sched.can_do(worker, b"f", timeout_ms=5000)
    job = sched.submit(b"f", b"x")
    assert sched.grab(worker) is job and job.timer is not None
    clock.advance(1)
    sched.work_complete(worker, job.handle, b"")
    sched._observing.flush()
    assert [(e[0], e[1], e[6] - e[5]) for e in seen.events] == [(job.handle, "complete", 1.0)]
    assert job.timer is None and not clock.getDelayedCalls() and job.data == b""


def test_hooks_read_only_the_ends_they_want_and_only_after_one(clock: Clock) -> None:
    """The ring marks the ends a hook wants (its function's outcomes, asked once per function): no read is
    scheduled while none ends; the first schedules one read, which hears only the marked ends."""
    from gearman_gateway.hooks.config import parse_hooks
    from gearman_gateway.hooks.events import READ_INTERVAL, HookObserver
    from gearman_gateway.scheduler import ObservedScheduler

    class Outbox:
        def __init__(self) -> None:
            self.events: list[tuple[str, bytes]] = []

        def full(self) -> bool:
            return False

        def put(self, hook: object, outcome: str, event_id: str, body: bytes) -> None:
            self.events.append((outcome, body))

    hooks = parse_hooks([{"functions": ["img*"], "events": ["fail", "complete"], "url": "http://127.0.0.1:9/"}])
    outbox = Outbox()
    observer = HookObserver(hooks, outbox, clock)  # type: ignore[arg-type]
    asked: list[bytes] = []
    outcomes = observer.outcomes
    observer.outcomes = lambda fn: asked.append(fn.name) or outcomes(fn)  # type: ignore[method-assign]
    sched = ObservedScheduler(clock, handle_prefix=b"H:h")
    sched.add_observer(observer)
    other = worker_for(sched, b"other")
    for _ in range(3):
        job = sched.submit(b"other", b"x")
        sched.grab(other)
        sched.work_complete(other, job.handle, b"")
    assert asked == [b"other"] and not clock.getDelayedCalls()  # classified once; nothing to read
    img = worker_for(sched, b"img1")
    handles = []
    for fail in (False, True, False):
        job = sched.submit(b"img1", b"x")
        sched.grab(img)
        handles.append(job.handle)
        if fail:
            sched.work_fail(img, job.handle)
        else:
            sched.work_complete(img, job.handle, b"")
        cancelled = sched.submit(b"img1", b"c", background=True)
        sched.cancel(cancelled.handle)  # not an outcome a hook wants
    assert len(clock.getDelayedCalls()) == 1 and asked == [b"other", b"img1"]
    clock.advance(READ_INTERVAL)
    assert [outcome for outcome, _ in outbox.events] == ["complete", "fail", "complete"]
    assert [json.loads(body)["handle"].encode() for _, body in outbox.events] == handles
    assert not clock.getDelayedCalls()
    job = sched.submit(b"img1", b"x")
    sched.grab(img)
    sched.work_complete(img, job.handle, b"")
    assert len(clock.getDelayedCalls()) == 1  # armed again by the next hooked end
    observer.close()
    assert len(outbox.events) == 4 and not clock.getDelayedCalls()


def test_the_ring_views_and_grows_the_same_in_c_and_in_python(clock: Clock, accel_path: str) -> None:
    """``view`` (a span, wrapped rounds, marked ends only) and ``reserve`` on both rings."""
    from gearman_gateway.scheduler import ObservedScheduler
    from gearman_gateway.scheduler.observing import RING

    sched = ObservedScheduler(clock, handle_prefix=b"H:r")
    history = History(size=10)
    sched.add_observer(history)
    worker = worker_for(sched, b"f")
    jobs = []
    for n in range(RING + 30):
        job = sched.submit(b"f", b"%d" % n)
        sched.grab(worker)
        clock.advance(0.5)
        sched.work_complete(worker, job.handle, b"")
        jobs.append(job)
    state = sched._observing.state
    position = sched._observing.position()
    assert position == RING + 30
    ends = state.view(0, position)
    assert [e[0] for e in ends] == jobs[30:]  # the ring's size back
    assert [e[4] for e in ends] == [j.started_at + 0.5 for j in jobs[30:]]
    assert state.view(position - 3, position + 5) == ends[-3:] and state.view(5, 5) == []
    assert state.view(0, position, True) == []  # no hooks: nothing marked
    history2 = History(size=RING * 2)
    sched.add_observer(history2)  # the ring grows, keeping its ends in order
    assert state.size == RING * 2 and state.view(0, position) == ends
    assert [e.handle for e in history2.entries(limit=3)] == [j.handle for j in jobs[-1:-4:-1]]
