"""The scheduler's two calls for shared mode (docs/scale.md): a store's HandedOff answer to an add, and adopt."""

from __future__ import annotations

from gearman_gateway.scheduler import JobState, Scheduler
from gearman_gateway.stores.base import HandedOff, StoredJob
from tests.unit.test_scheduler import Listener, assert_clean, new_worker
from tests.unit.test_scheduler_store import FakeStore


class HandingStore(FakeStore):
    """Answers every add with HandedOff (``handle``: the cluster's job it coalesced with)."""

    def __init__(self, handle: bytes = b"") -> None:
        super().__init__()
        self.handle = handle

    def commit(self, error: Exception | None = None) -> None:
        waiting, self.waiting = self.waiting, []
        for row, callback in waiting:
            self.rows[row.job_id] = row
            callback(HandedOff(self.handle))


def test_a_handed_off_job_is_acknowledged_and_forgotten(clock) -> None:
    store = HandingStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"u", background=True, listener=client)
    assert job.state == JobState.PENDING
    store.commit()
    assert client.events == [("created", job.handle)]
    assert store.removed == [] and job.job_id in store.rows  # the row is the cluster's now
    assert_clean(sched)
    # a new submit with the same unique is a new job here (the cluster's index coalesces it)
    again = sched.submit(b"f", b"y", unique=b"u", background=True, listener=client)
    assert again is not job


def test_a_coalesced_job_is_acknowledged_with_the_clusters_handle(clock) -> None:
    store = HandingStore(handle=b"H:other-2:7")
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    client = Listener()
    sched.submit(b"f", b"x", unique=b"u", background=True, listener=client)
    store.commit()
    assert client.events == [("created", b"H:other-2:7")]
    assert_clean(sched)


def answering_worker(sched: Scheduler) -> tuple[object, list]:
    """A worker for ``f`` whose held grabs' answers (a job given later) land in the list returned with it."""
    worker, _ = new_worker(sched, b"f")
    answers: list = []
    worker.waker.grabbed = answers.append
    return worker, answers


def held_grab(clock, store: FakeStore) -> tuple[Scheduler, object, list]:
    """A scheduler on ``store`` whose one worker's held grab claimed a PENDING job: (scheduler, worker, the
    answers its grab gets)."""
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store, turn_end=lambda callback: None)
    worker, answers = answering_worker(sched)
    sched.submit(b"f", b"new", background=True)
    assert sched.grab(worker, hold=True) is not None  # HELD: it claims the PENDING job
    return sched, worker, answers


def test_a_held_grab_that_claimed_a_handed_off_job_takes_the_next(clock) -> None:
    store = HandingStore()
    _, worker, answers = held_grab(clock, store)
    store.commit()
    assert answers == [] and worker.holding is True  # waits for another job (or the end of the turn)


def test_adopted_rows_run_with_their_handles_and_fresh_ids(clock) -> None:
    store = FakeStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    sched.submit(b"f", b"local", background=True)
    store.commit()
    first = sched.adopt(StoredJob(1 << 41, b"H:a-2:1", b"f", b"", 0, b"high"))
    second = sched.adopt(StoredJob(1 << 42, b"H:s:1", b"f", b"u", 1, b"clash"))  # its handle is taken here
    assert len({first, second, 1}) == 3
    worker, _ = new_worker(sched, b"f")
    order = []
    while (job := sched.grab(worker)) is not None:
        order.append((job.handle, job.data))
        sched.work_complete(worker, job.handle, b"")
    assert order == [(b"H:a-2:1", b"high"), (b"H:s:1", b"local"), (b"H:s:a%d" % second, b"clash")]
    assert sorted(store.removed) == sorted([1, first, second])
    assert_clean(sched)


def kept_job(clock):
    """A scheduler whose worker ("the relay") took a job and then said CANT_DO with keep_running."""
    sched = Scheduler(clock, handle_prefix=b"H:s")
    relay, _ = new_worker(sched, b"f")
    client = Listener()
    job = sched.submit(b"f", b"x", listener=client)
    assert sched.grab(relay) is job
    sched.cant_do(relay, b"f", keep_running=True)
    return sched, relay, client, job


def test_cant_do_keep_running_keeps_the_running_job_and_takes_its_result(clock) -> None:
    """The relay's CANT_DO (cluster/relay.py): its running job neither goes back to the queue (it would run twice)
    nor loses its result; a worker that connects meanwhile gets nothing of it."""
    sched, relay, client, job = kept_job(clock)
    local, _ = new_worker(sched, b"f")
    assert sched.grab(local) is None
    sched.work_complete(relay, job.handle, b"from afar")
    assert client.events[-1] == ("complete", job.handle, b"from afar")
    assert_clean(sched)


def test_a_worker_that_leaves_gives_back_the_jobs_it_kept(clock) -> None:
    sched, relay, client, job = kept_job(clock)
    sched.remove_worker(relay)
    other, _ = new_worker(sched, b"f")
    assert sched.grab(other) is job
    sched.work_complete(other, job.handle, b"here")
    assert client.events[-1] == ("complete", job.handle, b"here")
    assert_clean(sched)


def test_rows_adopted_ahead_wait_before_the_pending_jobs_behind_older_committed_ones(clock) -> None:
    """FIFO across servers: the older jobs a batch claimed run after the jobs committed before it, before the
    batch's own new jobs (still PENDING when they are adopted)."""
    store = FakeStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    sched.submit(b"f", b"committed", background=True)
    store.commit()
    sched.submit(b"f", b"new-1", background=True)
    sched.submit(b"f", b"new-2", background=True)
    rows = [StoredJob((1 << 41) + i, b"H:a-2:%d" % i, b"f", b"", 1, b"older-%d" % i) for i in (1, 2)]
    sched.adopt_ahead(rows)
    store.commit()
    worker, _ = new_worker(sched, b"f")
    order = []
    while (job := sched.grab(worker)) is not None:
        order.append(job.data)
        sched.work_complete(worker, job.handle, b"")
    assert order == [b"committed", b"older-1", b"older-2", b"new-1", b"new-2"]
    assert_clean(sched)


def test_a_held_grab_that_claimed_a_pending_job_takes_a_job_adopted_ahead(clock) -> None:
    store = FakeStore()
    sched, worker, answers = held_grab(clock, store)
    sched.adopt_ahead([StoredJob(1 << 41, b"H:a-2:1", b"f", b"", 1, b"older")])
    assert [job.data for job in answers] == [b"older"]  # answered at once with the older job
    sched.work_complete(worker, answers[0].handle, b"")
    store.commit()
    assert sched.grab(worker).data == b"new"


class RegisteringStore(FakeStore):
    """Shared mode's coalescing of foreground uniques: every foreground job with a unique waits for
    ``registered`` or ``run_elsewhere`` (``share_unique`` answers True)."""

    shares_uniques = True

    def __init__(self) -> None:
        super().__init__()
        self.sharing: list = []

    def share_unique(self, job) -> bool:
        self.sharing.append(job)
        return True


def test_a_foreground_job_with_a_unique_runs_only_once_registered(clock) -> None:
    store = RegisteringStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    worker, _ = new_worker(sched, b"f")
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"u", listener=client)
    assert store.sharing == [job] and job.state == JobState.PENDING
    assert client.events == [("created", job.handle)]  # acknowledged at once, as any foreground job
    assert sched.grab(worker) is None  # not before its registration
    joined = Listener()
    assert sched.submit(b"f", b"x", unique=b"u", listener=joined) is job  # coalesced here meanwhile
    sched.registered(job)
    assert sched.grab(worker) is job
    sched.work_complete(worker, job.handle, b"done")
    assert client.events[-1] == joined.events[-1] == ("complete", job.handle, b"done")
    assert_clean(sched)


def test_a_held_grab_gets_the_job_at_its_registration(clock) -> None:
    store = RegisteringStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store, turn_end=lambda callback: None)
    worker, answers = answering_worker(sched)
    job = sched.submit(b"f", b"x", unique=b"u", listener=Listener())
    assert sched.grab(worker, hold=True) is not None and worker.holding is job  # HELD: it claims the job
    sched.registered(job)
    assert answers == [job]
    sched.work_complete(worker, job.handle, b"")
    assert_clean(sched)


def test_a_job_whose_unique_is_held_elsewhere_stands_on_the_relay_and_gets_its_results(clock) -> None:
    store = RegisteringStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store, turn_end=lambda callback: None)
    local, answers = answering_worker(sched)
    relay, _ = new_worker(sched)
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"u", listener=client)
    sched.grab(local, hold=True)  # claims the PENDING job
    assert sched.run_elsewhere(job, relay)
    assert answers == [] and local.holding is True  # the held grab waits for another job
    assert job.state == JobState.RUNNING and client.runs == [("started", job.handle)]
    sched.work_data(relay, job.handle, b"part")
    sched.work_complete(relay, job.handle, b"from afar")
    assert client.events[1:] == [("data", job.handle, b"part"), ("complete", job.handle, b"from afar")]
    assert not sched.run_elsewhere(job, relay)  # done: nothing more
    sched.end_hold(local)
    assert_clean(sched)


def test_a_watching_job_whose_holder_ended_unseen_comes_back_to_run_here(clock) -> None:
    store = RegisteringStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    local, _ = new_worker(sched, b"f")
    relay, _ = new_worker(sched)
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"u", listener=client)
    sched.run_elsewhere(job, relay)
    sched.registered(job)  # registered at last: it runs here
    assert relay.jobs == {} and sched.grab(local) is job
    sched.work_complete(local, job.handle, b"here")
    assert client.events[-1] == ("complete", job.handle, b"here")
    assert_clean(sched)


def test_a_job_whose_clients_left_before_its_registration_is_dropped(clock) -> None:
    store = RegisteringStore()
    sched = Scheduler(clock, handle_prefix=b"H:s", store=store)
    worker, _ = new_worker(sched, b"f")
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"u", listener=client)
    sched.detach(client)
    sched.registered(job)
    assert job.state == JobState.DONE and sched.grab(worker) is None
    assert_clean(sched)
