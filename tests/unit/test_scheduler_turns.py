"""The scheduler with reactor turns: wake-ups wait for the end of the turn, and a grab that finds nothing
may be held until then, so a job submitted in the same turn goes straight to the waiting worker (no
NO_JOB, PRE_SLEEP, NOOP and second GRAB_JOB)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from twisted.internet.task import Clock

from gearman_gateway.scheduler import HELD, Job, JobState, Scheduler, WorkerState
from tests.unit.test_scheduler import Listener, assert_clean


class Turns:
    """Stands in for the reactor's end of turn: callbacks wait until ``end`` is called."""

    def __init__(self) -> None:
        self.pending: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.pending.append(callback)

    def end(self) -> None:
        while self.pending:
            callbacks, self.pending = self.pending, []
            for callback in callbacks:
                callback()


class HoldingWaker:
    """Records NOOPs and the answers to held grabs."""

    def __init__(self) -> None:
        self.noops = 0
        self.answers: list[Job | None] = []
        self.owners: list[object] = []  # each answer's job's worker when it was answered (it may move later)

    def wake(self) -> None:
        self.noops += 1

    def grabbed(self, job: Job | None) -> None:
        self.answers.append(job)
        self.owners.append(job.worker if job is not None else None)


@pytest.fixture
def turns() -> Turns:
    return Turns()


@pytest.fixture
def sched(clock: Clock, turns: Turns) -> Scheduler:
    return Scheduler(clock, handle_prefix=b"H:t", turn_end=turns)


def worker_for(sched: Scheduler, *functions: bytes):
    waker = HoldingWaker()
    worker = sched.add_worker(waker)
    for name in functions:
        sched.can_do(worker, name)
    return worker, waker


def test_held_grab_gets_the_job_submitted_in_the_same_turn(sched: Scheduler, turns: Turns) -> None:
    worker, waker = worker_for(sched, b"f")
    assert sched.grab(worker, hold=True) is HELD
    assert worker.holding and waker.answers == []
    client = Listener()
    job = sched.submit(b"f", b"x", listener=client)
    assert waker.answers == [job] and not worker.holding
    assert job.state == JobState.RUNNING and job.worker is worker
    assert client.events == [("created", job.handle)]  # acknowledged before it was handed over
    turns.end()
    assert waker.answers == [job] and waker.noops == 0  # nothing more at the end of the turn
    sched.work_complete(worker, job.handle, b"y")
    sched.detach(client)
    assert_clean(sched)


def test_held_grab_hears_no_job_at_the_end_of_the_turn(sched: Scheduler, turns: Turns) -> None:
    worker, waker = worker_for(sched, b"f", b"g")
    assert sched.grab(worker, hold=True) is HELD
    turns.end()
    assert waker.answers == [None] and not worker.holding
    assert all(worker not in fn.holders for fn in sched.functions.values())
    sched.pre_sleep(worker)
    assert worker.state == WorkerState.SLEEPING


def test_without_hold_or_turns_a_grab_answers_at_once(clock: Clock, turns: Turns) -> None:
    sched = Scheduler(clock, handle_prefix=b"H:t", turn_end=turns)
    worker, waker = worker_for(sched, b"f")
    assert sched.grab(worker) is None and not worker.holding
    plain = Scheduler(clock, handle_prefix=b"H:p")  # no turns: holding is never possible
    other, _ = worker_for(plain, b"f")
    assert plain.grab(other, hold=True) is None and not other.holding


def test_any_other_worker_call_answers_a_held_grab_first(sched: Scheduler, turns: Turns) -> None:
    worker, waker = worker_for(sched, b"f")
    sched.grab(worker, hold=True)
    sched.pre_sleep(worker)  # a worker that pipelines PRE_SLEEP behind its GRAB_JOB
    assert waker.answers == [None] and worker.state == WorkerState.SLEEPING
    sched.grab(worker, hold=True)
    assert waker.answers == [None]  # the NOOP-less grab of a sleeper holds again
    sched.can_do(worker, b"g")
    assert waker.answers == [None, None]
    sched.grab(worker, hold=True)
    sched.cant_do(worker, b"g")
    assert waker.answers == [None, None, None]
    turns.end()
    assert len(waker.answers) == 3


def test_a_disconnected_holder_is_forgotten(sched: Scheduler, turns: Turns) -> None:
    worker, waker = worker_for(sched, b"f")
    sched.grab(worker, hold=True)
    sched.remove_worker(worker)
    job = sched.submit(b"f", b"x", background=True)
    assert job.state == JobState.QUEUED and waker.answers == []
    turns.end()
    assert waker.answers == []


def test_wake_ups_wait_for_the_end_of_the_turn(sched: Scheduler, turns: Turns) -> None:
    sleeper, sleeper_waker = worker_for(sched, b"f")
    sched.pre_sleep(sleeper)
    busy, _ = worker_for(sched, b"f")
    sched.submit(b"f", b"1", background=True)
    sched.submit(b"f", b"2", background=True)
    assert sleeper_waker.noops == 0  # not yet: someone may grab them in this turn
    assert isinstance(sched.grab(busy, hold=True), Job)  # took job 1 in the same turn
    turns.end()
    assert sleeper_waker.noops == 1  # woken for job 2 only
    turns.end()
    assert sleeper_waker.noops == 1


def test_no_wake_up_for_a_job_grabbed_in_its_turn(sched: Scheduler, turns: Turns) -> None:
    sleeper, sleeper_waker = worker_for(sched, b"f")
    sched.pre_sleep(sleeper)
    busy, _ = worker_for(sched, b"f")
    sched.submit(b"f", b"1", background=True)
    assert isinstance(sched.grab(busy, hold=True), Job)
    turns.end()
    assert sleeper_waker.noops == 0 and sleeper.state == WorkerState.SLEEPING


def test_holders_get_jobs_in_the_order_they_grabbed(sched: Scheduler, turns: Turns) -> None:
    first, first_waker = worker_for(sched, b"f")
    second, second_waker = worker_for(sched, b"f")
    sched.grab(first, hold=True)
    sched.grab(second, hold=True)
    one = sched.submit(b"f", b"1", background=True)
    two = sched.submit(b"f", b"2", background=True)
    assert first_waker.answers == [one] and second_waker.answers == [two]


def test_a_requeued_job_goes_to_a_holder(sched: Scheduler, turns: Turns) -> None:
    leaving, _ = worker_for(sched, b"f")
    job = sched.submit(b"f", b"x", background=True)
    assert sched.grab(leaving) is job
    holder, waker = worker_for(sched, b"f")
    sched.grab(holder, hold=True)
    sched.remove_worker(leaving)
    assert waker.answers == [job] and job.worker is holder and job.retries == 1


def test_draining_hands_nothing_to_holders(sched: Scheduler, turns: Turns) -> None:
    worker, waker = worker_for(sched, b"f")
    sched.grab(worker, hold=True)
    sched.drain(lambda: None)
    job = sched.submit(b"f", b"x", background=True)
    assert job.state == JobState.QUEUED
    turns.end()
    assert waker.answers == [None]


def test_held_grab_respects_can_do_timeout(sched: Scheduler, turns: Turns, clock: Clock) -> None:
    worker = sched.add_worker(waker := HoldingWaker())
    sched.can_do(worker, b"f", 1000)
    sched.grab(worker, hold=True)
    job = sched.submit(b"f", b"x", background=True)
    assert waker.answers == [job] and job.timer is not None
    clock.advance(1.5)
    assert job.state == JobState.QUEUED and job.retries == 1  # timed out and requeued


def test_a_lasting_hold_outlives_the_turn_and_gets_the_next_job(sched: Scheduler, turns: Turns) -> None:
    """``hold``: memcached's ``get <function>/t=`` waits longer than a turn; the job goes straight to it."""
    worker, waker = worker_for(sched, b"f")
    assert sched.hold(worker) is HELD
    turns.end()
    turns.end()
    assert waker.answers == [] and worker.holding is True and worker.state == WorkerState.AWAKE
    job = sched.submit(b"f", b"x", background=True)
    assert waker.answers == [job] and job.worker is worker and not worker.holding
    assert all(worker not in fn.holders for fn in sched.functions.values())
    turns.end()
    assert waker.noops == 0
    sched.work_complete(worker, job.handle, b"")
    assert sched.hold(worker) is HELD
    sched.end_hold(worker)  # the frontend's own timeout
    assert waker.answers == [job, None] and not worker.holding
    assert sched.submit(b"f", b"y", background=True).state == JobState.QUEUED
    assert sched.hold(worker).data == b"y"  # a queued job is taken at once
    sched.remove_worker(worker)


def test_a_lasting_hold_without_turns_or_work(clock: Clock) -> None:
    plain = Scheduler(clock, handle_prefix=b"H:p")
    worker, waker = worker_for(plain, b"f")
    assert plain.hold(worker) is HELD
    job = plain.submit(b"f", b"x", background=True)
    assert waker.answers == [job]
    idle, _ = worker_for(plain)
    assert plain.hold(idle) is None and not idle.holding  # no function: nothing to wait for
    plain.drain(lambda: None)
    other, _ = worker_for(plain, b"f")
    assert plain.hold(other) is None and not other.holding
