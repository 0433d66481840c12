"""The scheduler with a durable store: acknowledgement after commit, replay, retries, dead letters."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from gearman_gateway.scheduler import JobState, Priority, Scheduler
from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy
from gearman_gateway.stores.base import StoredJob, StoreError
from tests.unit.test_scheduler import Listener, Waker, assert_clean, new_worker


class FakeStore:
    """Records calls; commits only when the test says so, like a slow database."""

    shares_uniques = False

    def __init__(self) -> None:
        self.rows: dict[int, StoredJob] = {}
        self.waiting: list[tuple[StoredJob, object]] = []
        self.removed: list[int] = []
        self.buried: list[tuple[int, str]] = []
        self.revived: list[int] = []

    def add(self, row, callback) -> None:
        self.waiting.append((row, callback))

    def commit(self, error: Exception | None = None) -> None:
        waiting, self.waiting = self.waiting, []
        for row, callback in waiting:
            if error is None:
                self.rows[row.job_id] = row
            callback(error)

    def remove(self, job_id: int) -> None:
        self.removed.append(job_id)
        self.rows.pop(job_id, None)

    def bury(self, job_id: int, reason: str) -> None:
        self.buried.append((job_id, reason))
        self.rows[job_id].dead = True

    def revive(self, job_id: int) -> None:
        self.revived.append(job_id)
        self.rows[job_id].dead = False


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


def make(clock: Clock, store: FakeStore, **policy) -> Scheduler:
    policies = RetryPolicies(default=RetryPolicy(**policy)) if policy else None
    return Scheduler(clock, handle_prefix=b"H:s", store=store, retry_policies=policies)


RejectingListener = Listener  # records job_rejected as ("rejected", handle, error code)


def test_background_job_is_acknowledged_and_runnable_only_after_commit(clock, store) -> None:
    sched = make(clock, store)
    client = RejectingListener()
    worker, waker = new_worker(sched, b"f")
    sched.pre_sleep(worker)
    job = sched.submit(b"f", b"x", unique=b"u", background=True, listener=client)
    twin = RejectingListener()
    assert sched.submit(b"f", b"y", unique=b"u", background=True, listener=twin) is job
    assert job.state == JobState.PENDING and client.events == [] and twin.events == []
    assert waker.noops == 0 and sched.grab(worker) is None
    store.commit()
    assert client.events == [("created", job.handle)] and twin.events == [("created", job.handle)]
    assert waker.noops == 0  # it grabbed (NO_JOB) above, so it was awake; now it finds the job
    assert sched.grab(worker) is job
    sched.work_complete(worker, job.handle, b"")
    assert store.removed == [job.job_id] and store.rows == {}
    assert_clean(sched)


def test_commit_failure_refuses_the_job_and_foreground_jobs_go_on(clock, store) -> None:
    sched = make(clock, store)
    client = RejectingListener()
    job = sched.submit(b"f", b"x", background=True, listener=client)
    waiting_fg = RejectingListener()
    sched.submit(b"f", b"x", unique=b"k", background=True, listener=client)
    joined = sched.submit(b"f", b"z", unique=b"k", listener=waiting_fg)
    store.commit(StoreError("database is down"))
    assert client.events == [("rejected", job.handle, "QUEUE_ERROR"), ("rejected", joined.handle, "QUEUE_ERROR")]
    assert waiting_fg.events == [("rejected", joined.handle, "QUEUE_ERROR")]
    assert sched.job(job.handle) is None
    fg = RejectingListener()
    fg_job = sched.submit(b"f", b"fg", listener=fg)  # foreground jobs never touch the store
    assert fg.events == [("created", fg_job.handle)] and store.waiting == []
    sched.detach(fg)
    assert_clean(sched)


def test_cancel_while_pending_deletes_the_row_after_commit(clock, store) -> None:
    sched = make(clock, store)
    client = RejectingListener()
    job = sched.submit(b"f", b"x", background=True, listener=client)
    assert sched.cancel(job.handle)
    store.commit()
    assert store.removed == [job.job_id] and store.rows == {}
    assert client.events == [("created", job.handle)]
    assert_clean(sched)


def test_foreground_job_joined_by_background_submit_becomes_durable(clock, store) -> None:
    sched = make(clock, store)
    fg = RejectingListener()
    job = sched.submit(b"f", b"x", unique=b"k", listener=fg)
    bg = RejectingListener()
    sched.submit(b"f", b"x", unique=b"k", background=True, listener=bg)
    assert bg.events == [] and len(store.waiting) == 1
    store.commit()
    assert bg.events == [("created", job.handle)] and job.stored
    sched.detach(fg)
    assert sched.job(job.handle) is job  # still there for the background promise


def test_replay_keeps_handles_priorities_times_and_continues_numbering(clock, store) -> None:
    sched = make(clock, store)
    rows = [
        StoredJob(7, b"H:s:7", b"f", b"u7", Priority.LOW, b"low"),
        StoredJob(9, b"H:s:9", b"f", b"", Priority.HIGH, b"high"),
        StoredJob(10, b"H:old:3", b"g", b"", Priority.NORMAL, b"later", when=int(clock.seconds()) + 30),
        StoredJob(11, b"H:s:11", b"f", b"", Priority.NORMAL, b"dead", dead=True, reason="WORK_FAIL"),
    ]
    assert sched.replay(rows) == 4
    assert sched.job(b"H:s:7").unique == b"u7" and sched.job(b"H:s:9") is not None
    assert b"H:s:11" in sched.dead_letters and sched.job(b"H:s:11") is None
    assert sched.job_snapshot_by_unique(b"u7").handle == b"H:s:7"
    worker, _ = new_worker(sched, b"f", b"g")
    assert [sched.grab(worker).data, sched.grab(worker).data] == [b"high", b"low"]
    assert sched.grab(worker) is None  # the epoch job is not due yet
    clock.advance(30)
    assert sched.grab(worker).handle == b"H:old:3"
    new = sched.submit(b"f", b"new", background=True, listener=RejectingListener())
    assert new.handle == b"H:s:12" and new.job_id == 12  # after every replayed handle and id
    assert store.waiting and not store.rows  # replayed jobs are not written again


def test_failed_background_job_is_retried_with_backoff_then_dead_lettered(clock, store) -> None:
    sched = make(clock, store, retries=2, backoff=10, factor=3, dead_letter=True)
    job = sched.submit(b"f", b"x", background=True, listener=RejectingListener())
    store.commit()
    worker, waker = new_worker(sched, b"f")
    assert sched.grab(worker) is job
    sched.work_fail(worker, job.handle)
    assert sched.grab(worker) is None
    sched.pre_sleep(worker)
    clock.advance(10)
    assert waker.noops == 1 and sched.grab(worker) is job  # first retry after 10 s
    sched.work_exception(worker, job.handle, b"boom")
    clock.advance(29)
    assert sched.grab(worker) is None
    clock.advance(1)
    assert sched.grab(worker) is job  # second retry after 30 s
    sched.work_fail(worker, job.handle)
    assert job.state == JobState.DEAD and sched.dead_letters == {job.handle: job}
    assert store.buried == [(job.job_id, "WORK_FAIL")] and store.removed == []
    assert sched.job(job.handle) is None and sched.functions[b"f"].total == 0
    assert sched.requeue_dead(job.handle)
    assert store.revived == [job.job_id]
    assert sched.grab(worker) is job and job.failures == 0
    sched.work_complete(worker, job.handle, b"")
    assert store.removed == [job.job_id]
    assert_clean(sched)


def test_without_a_policy_failed_background_jobs_are_dropped(clock, store) -> None:
    sched = make(clock, store)
    job = sched.submit(b"f", b"x", background=True, listener=RejectingListener())
    store.commit()
    worker, _ = new_worker(sched, b"f")
    sched.grab(worker)
    sched.work_fail(worker, job.handle)
    assert store.removed == [job.job_id] and not sched.dead_letters
    assert_clean(sched)


def test_dead_letters_can_be_deleted(clock, store) -> None:
    sched = make(clock, store, dead_letter=True)
    job = sched.submit(b"f", b"x", background=True, listener=RejectingListener())
    store.commit()
    worker, _ = new_worker(sched, b"f")
    sched.grab(worker)
    sched.work_exception(worker, job.handle, b"bad input")
    assert store.buried == [(job.job_id, "WORK_EXCEPTION: bad input")]
    assert sched.delete_dead(job.handle) and not sched.delete_dead(job.handle)
    assert store.removed == [job.job_id]


def test_worker_retry_limit_dead_letters_background_jobs_under_that_policy(clock, store) -> None:
    sched = Scheduler(
        clock,
        handle_prefix=b"H:s",
        store=store,
        job_retries=1,
        retry_policies=RetryPolicies(functions={b"f": RetryPolicy(dead_letter=True)}),
    )
    job = sched.submit(b"f", b"x", background=True, listener=RejectingListener())
    store.commit()
    worker, _ = new_worker(sched, b"f")
    sched.grab(worker)
    sched.remove_worker(worker)
    assert job.handle in sched.dead_letters and "went away" in store.buried[0][1]


def test_waker_import_is_used() -> None:
    assert Waker().noops == 0
