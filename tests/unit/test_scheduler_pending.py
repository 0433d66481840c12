"""Background jobs whose store commit is under way (PENDING) keep their place in their priority queue: a
worker sees jobs in priority and submission order whatever the store, and a grab whose best job is PENDING
waits for its commit (issue 13, item 2)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from gearman_gateway.scheduler import HELD, Job, JobState, Priority, Scheduler
from gearman_gateway.stores.base import StoreError
from tests.unit.test_scheduler import Listener, assert_clean
from tests.unit.test_scheduler_store import FakeStore
from tests.unit.test_scheduler_turns import HoldingWaker, Turns

HIGH, NORMAL, LOW = Priority.HIGH, Priority.NORMAL, Priority.LOW


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def turns() -> Turns:
    return Turns()


@pytest.fixture
def sched(clock: Clock, store: FakeStore, turns: Turns) -> Scheduler:
    return Scheduler(clock, handle_prefix=b"H:p", store=store, turn_end=turns)


def worker_for(sched: Scheduler, *functions: bytes):
    waker = HoldingWaker()
    worker = sched.add_worker(waker)
    for name in functions:
        sched.can_do(worker, name)
    return worker, waker


def submit_mixed(sched: Scheduler, client: Listener) -> list[Job]:
    """The issue's pipeline: high-bg, high, normal-bg, normal, low-bg, low, in one turn."""
    jobs = []
    for priority in (HIGH, NORMAL, LOW):
        for background in (True, False):
            name = b"%s%s" % (Priority(priority).name.lower().encode(), b"-bg" if background else b"")
            jobs.append(sched.submit(b"f", name, b"", priority, background, listener=client))
    return jobs


def run_all(sched: Scheduler, worker, waker: HoldingWaker, store: FakeStore, turns: Turns) -> list[bytes]:
    """A libgearman-like worker: GRAB_JOB (held), completes what it gets, until it hears NO_JOB."""
    seen = []
    while True:
        job = sched.grab(worker, hold=True)
        if job is HELD:
            answers = len(waker.answers)
            store.commit()
            turns.end()
            assert len(waker.answers) == answers + 1, "a held grab is answered once"
            job = waker.answers[-1]
            if job is None:
                return seen
        seen.append(job.data)
        sched.work_complete(worker, job.handle, b"")


def test_a_waiting_worker_sees_the_issue_pipeline_in_priority_and_submission_order(sched, store, turns) -> None:
    worker, waker = worker_for(sched, b"f")
    sched.pre_sleep(worker)
    client = Listener()
    submit_mixed(sched, client)
    turns.end()  # the foreground jobs wake the worker; the background ones are not committed yet
    assert waker.noops == 1 and store.waiting
    seen = run_all(sched, worker, waker, store, turns)
    assert seen == [b"high-bg", b"high", b"normal-bg", b"normal", b"low-bg", b"low"]
    sched.detach(client)
    assert_clean(sched)


def test_a_grab_whose_best_job_is_pending_waits_for_its_commit(sched, store, turns) -> None:
    client = Listener()
    bg = sched.submit(b"f", b"bg", background=True, listener=client)
    fg = sched.submit(b"f", b"fg", listener=client)
    assert bg.state == JobState.PENDING and list(bg.function.queues[NORMAL]) == [bg, fg]
    assert bg.function.runnable() == 1  # the pending one is in its place, not runnable
    worker, waker = worker_for(sched, b"f")
    assert sched.grab(worker, hold=True) is HELD and worker.holding is bg
    turns.end()
    assert waker.answers == []  # not answered at the end of the turn: it waits for the commit
    store.commit()
    assert client.events[-1] == ("created", bg.handle)  # JOB_CREATED before the worker is handed the job
    assert waker.answers == [bg] and bg.worker is worker and bg.state == JobState.RUNNING
    sched.work_complete(worker, bg.handle, b"")
    assert sched.grab(worker, hold=True) is fg


def test_a_refused_claimed_job_lets_the_grab_take_the_next_one(sched, store, turns) -> None:
    client = Listener()
    bg = sched.submit(b"f", b"bg", background=True, listener=client)
    fg = sched.submit(b"f", b"fg", listener=client)
    worker, waker = worker_for(sched, b"f")
    sched.grab(worker, hold=True)
    store.commit(StoreError("disk full"))
    assert ("rejected", bg.handle, "QUEUE_ERROR") in client.events
    assert waker.answers == [fg] and fg.worker is worker and not worker.holding
    sched.work_complete(worker, fg.handle, b"")
    sched.detach(client)
    assert_clean(sched)


def test_a_cancelled_claimed_job_lets_the_grab_take_the_next_one(sched, store, turns) -> None:
    first = sched.submit(b"f", b"1", background=True)
    second = sched.submit(b"f", b"2", background=True)
    worker, waker = worker_for(sched, b"f")
    sched.grab(worker, hold=True)
    assert worker.holding is first
    assert sched.cancel(first.handle)
    assert worker.holding is second and waker.answers == []  # still pending: it waits for that one now
    store.commit()
    assert waker.answers == [second]


def test_a_claimed_job_goes_back_to_its_place_when_the_grab_ends_unanswered(sched, store, turns) -> None:
    """A worker that sends another request, or goes away, before the commit hears NO_JOB (or nothing); the
    jobs it and another worker had claimed go back in submission order, whatever order they come back."""
    jobs = [sched.submit(b"f", b"%d" % n, background=True) for n in range(3)]
    one, one_waker = worker_for(sched, b"f")
    two, _ = worker_for(sched, b"f")
    sched.grab(one, hold=True)
    sched.grab(two, hold=True)
    assert (one.holding, two.holding) == (jobs[0], jobs[1])
    sched.pre_sleep(one)  # answers its held grab: NO_JOB
    assert one_waker.answers == [None]
    sched.remove_worker(two)
    queue = jobs[0].function.queues[NORMAL]
    assert list(queue) == jobs and jobs[0].function.pending == 3
    store.commit()
    turns.end()
    assert one_waker.noops == 1  # asleep: woken now that they are runnable
    assert [sched.grab(one) for _ in jobs] == jobs


def test_a_turn_held_grab_claims_a_background_job_submitted_in_the_same_turn(sched, store, turns) -> None:
    worker, waker = worker_for(sched, b"f")
    assert sched.grab(worker, hold=True) is HELD and worker.holding is True
    job = sched.submit(b"f", b"x", background=True)
    assert worker.holding is job
    turns.end()
    assert waker.answers == []
    store.commit()
    assert waker.answers == [job]


def test_a_higher_priority_job_of_another_function_goes_first(sched, store, turns) -> None:
    """Global priority across a worker's functions holds for PENDING jobs too."""
    low = sched.submit(b"a", b"low", priority=LOW, listener=(client := Listener()))
    high = sched.submit(b"b", b"high-bg", priority=HIGH, background=True)
    worker, waker = worker_for(sched, b"a", b"b")
    assert sched.grab(worker, hold=True) is HELD and worker.holding is high
    store.commit()
    assert waker.answers == [high]
    sched.work_complete(worker, high.handle, b"")
    assert sched.grab(worker, hold=True) is low
    sched.detach(client)


def test_a_grab_that_cannot_wait_takes_the_best_committed_job(sched, store, turns) -> None:
    bg = sched.submit(b"f", b"bg", background=True)
    fg = sched.submit(b"f", b"fg", listener=(client := Listener()))
    worker, _ = worker_for(sched, b"f")
    assert sched.grab(worker) is fg
    assert list(bg.function.queues[NORMAL]) == [bg] and bg.state == JobState.PENDING
    sched.work_complete(worker, fg.handle, b"")
    assert sched.grab(worker) is None
    store.commit()
    assert sched.grab(worker) is bg
    sched.detach(client)


def test_pre_sleep_beside_only_pending_jobs_sleeps_and_the_commit_wakes(sched, store, turns) -> None:
    """No GRAB/NO_JOB/PRE_SLEEP/NOOP spin while a commit is under way."""
    job = sched.submit(b"f", b"x", background=True)
    worker, waker = worker_for(sched, b"f")
    sched.pre_sleep(worker)
    turns.end()
    assert waker.noops == 0
    store.commit()
    turns.end()
    assert waker.noops == 1
    assert sched.grab(worker, hold=True) is job


def test_a_future_epoch_job_waits_for_its_commit_outside_any_queue(sched, store, turns, clock) -> None:
    job = sched.submit(b"f", b"x", background=True, when=int(clock.seconds()) + 10)
    assert not any(job.function.queues) and job.function.queued(NORMAL) == 0
    store.commit()
    assert job.state == JobState.QUEUED and job.function.queued(NORMAL) == 1  # in the epoch heap
    clock.advance(10)
    worker, _ = worker_for(sched, b"f")
    assert sched.grab(worker, hold=True) is job


def test_draining_answers_a_claim_with_no_job_at_the_commit(sched, store, turns) -> None:
    job = sched.submit(b"f", b"x", background=True)
    worker, waker = worker_for(sched, b"f")
    sched.grab(worker, hold=True)
    sched.drain(lambda: None)
    store.commit()
    assert waker.answers == [None] and job.state == JobState.QUEUED and job.worker is None


class DownStore(FakeStore):
    """A store that is known to be down: it refuses at once, inside ``add`` (as StoreRunner does)."""

    def add(self, row, callback) -> None:
        callback(StoreError("store is unavailable"))


def test_a_job_refused_at_once_leaves_no_trace_and_the_held_grab_goes_on_waiting(clock, turns) -> None:
    sched = Scheduler(clock, handle_prefix=b"H:p", store=DownStore(), turn_end=turns)
    worker, waker = worker_for(sched, b"f")
    assert sched.grab(worker, hold=True) is HELD and worker.holding is True
    client = Listener()
    job = sched.submit(b"f", b"x", background=True, listener=client)
    assert client.events == [("rejected", job.handle, "QUEUE_ERROR")]
    assert worker.holding is True and not sched._claims and not any(job.function.queues)
    turns.end()
    assert waker.answers == [None]
    assert_clean(sched)


def test_a_lasting_hold_claims_a_pending_job_and_gets_one_committed_later(sched, store, turns) -> None:
    """``hold`` with a durable store: a PENDING best job is claimed (answered at its commit); a job that
    comes while it holds is claimed as it is placed; both outlive the end of the turn."""
    first = sched.submit(b"f", b"1", background=True)
    worker, waker = worker_for(sched, b"f")
    assert sched.hold(worker) is HELD and worker.holding is first
    turns.end()
    store.commit()
    assert waker.answers == [first] and first.worker is worker
    sched.work_complete(worker, first.handle, b"")
    assert sched.hold(worker) is HELD and worker.holding is True
    turns.end()
    second = sched.submit(b"f", b"2", background=True)
    assert worker.holding is second
    turns.end()
    store.commit()
    assert waker.answers == [first, second]
    sched.work_complete(worker, second.handle, b"")
    assert sched.hold(worker) is HELD
    sched.end_hold(worker)
    assert waker.answers[-1] is None and not worker.holding
    turns.end()
    sched.remove_worker(worker)
    assert_clean(sched)
