"""The scheduler driven directly: no sockets, no reactor, a fake clock."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from gearman_gateway.scheduler import (
    ArgumentTooLarge,
    Job,
    JobListener,
    JobNotFound,
    JobState,
    Priority,
    QueueFull,
    Scheduler,
    WorkerState,
)


class Listener(JobListener):
    """Records every event it gets, as (kind, handle, payload); a worker taking the job or letting go of it
    in ``runs`` (as ("started"|"requeued", handle)), apart, so that ``events`` reads as what a client hears."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.runs: list[tuple] = []

    def job_started(self, job: Job) -> None:
        self.runs.append(("started", job.handle))

    def job_requeued(self, job: Job) -> None:
        self.runs.append(("requeued", job.handle))

    def job_created(self, job: Job) -> None:
        self.events.append(("created", job.handle))

    def job_data(self, job: Job, data: bytes) -> None:
        self.events.append(("data", job.handle, data))

    def job_warning(self, job: Job, data: bytes) -> None:
        self.events.append(("warning", job.handle, data))

    def job_status(self, job: Job, n: int, d: int) -> None:
        self.events.append(("status", job.handle, (n, d)))

    def job_complete(self, job: Job, data: bytes) -> None:
        self.events.append(("complete", job.handle, data))

    def job_fail(self, job: Job) -> None:
        self.events.append(("fail", job.handle))

    def job_exception(self, job: Job, data: bytes) -> None:
        self.events.append(("exception", job.handle, data))

    def job_rejected(self, job: Job, error: Exception) -> None:
        self.events.append(("rejected", job.handle, getattr(error, "code", "")))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]


class Waker:
    def __init__(self) -> None:
        self.noops = 0

    def wake(self) -> None:
        self.noops += 1


@pytest.fixture
def sched(clock: Clock) -> Scheduler:
    return Scheduler(clock, handle_prefix=b"H:test")


def new_worker(sched: Scheduler, *functions: bytes, timeout: int = 0):
    waker = Waker()
    worker = sched.add_worker(waker)
    for name in functions:
        sched.can_do(worker, name, timeout)
    return worker, waker


def assert_clean(sched: Scheduler) -> None:
    """Nothing left behind: no job, no listener bookkeeping, counters at zero."""
    assert sched.jobs_by_handle == {}
    assert sched.listener_count() == 0
    assert sched.running_jobs == 0
    assert not sched._claims and not sched.poison_jobs and not sched._died.at and not sched._died.queued
    for fn in sched.functions.values():
        assert fn.total == 0 and fn.running == 0 and fn.runnable() == 0 and not fn.by_unique
        assert fn.pending == 0 and not any(fn.queues) and not fn.died and fn.died_counts == [0, 0, 0]


def test_foreground_round_trip_frees_the_job(sched: Scheduler) -> None:
    client = Listener()
    job = sched.submit(b"rev", b"hello", listener=client)
    assert job.handle == b"H:test:1"
    assert client.events == [("created", b"H:test:1")]
    worker, _ = new_worker(sched, b"rev")
    assert sched.grab(worker) is job and job.state == JobState.RUNNING
    sched.work_data(worker, job.handle, b"part")
    sched.work_warning(worker, job.handle, b"careful")
    sched.work_status(worker, job.handle, 1, 2)
    sched.work_complete(worker, job.handle, b"olleh")
    assert client.events[1:] == [
        ("data", job.handle, b"part"),
        ("warning", job.handle, b"careful"),
        ("status", job.handle, (1, 2)),
        ("complete", job.handle, b"olleh"),
    ]
    assert job.state == JobState.DONE and not job.listeners
    assert_clean(sched)
    with pytest.raises(JobNotFound):
        sched.work_complete(worker, job.handle, b"again")


def test_handles_count_up_and_coalescing_does_not_use_numbers(sched: Scheduler) -> None:
    a = sched.submit(b"f", b"1", unique=b"u")
    b = sched.submit(b"f", b"2", unique=b"u")
    c = sched.submit(b"f", b"3")
    assert a is b
    assert (a.handle, c.handle) == (b"H:test:1", b"H:test:2")


def test_priority_is_global_and_fifo_within_a_priority(sched: Scheduler) -> None:
    submitted = [
        sched.submit(b"a", b"a-low", priority=Priority.LOW, background=True),
        sched.submit(b"b", b"b-normal", background=True),
        sched.submit(b"a", b"a-high-1", priority=Priority.HIGH, background=True),
        sched.submit(b"b", b"b-high", priority=Priority.HIGH, background=True),
        sched.submit(b"a", b"a-normal", background=True),
        sched.submit(b"a", b"a-high-2", priority=Priority.HIGH, background=True),
    ]
    assert len(submitted) == 6
    worker, _ = new_worker(sched, b"a", b"b")
    order = []
    while (job := sched.grab(worker)) is not None:
        order.append(job.data)
        sched.work_complete(worker, job.handle, b"")
    assert order == [b"a-high-1", b"b-high", b"a-high-2", b"b-normal", b"a-normal", b"a-low"]
    assert_clean(sched)


def test_unique_coalescing_every_client_gets_every_event(sched: Scheduler) -> None:
    clients = [Listener() for _ in range(3)]
    jobs = {sched.submit(b"f", f"d{i}".encode(), unique=b"same", listener=c) for i, c in enumerate(clients)}
    assert len(jobs) == 1
    (job,) = jobs
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is job and job.data == b"d0"
    late = Listener()  # joining a running job works too
    assert sched.submit(b"f", b"x", unique=b"same", listener=late) is job
    sched.work_status(worker, job.handle, 3, 4)
    sched.work_complete(worker, job.handle, b"done")
    for c in clients:
        assert c.events == [("created", job.handle), ("status", job.handle, (3, 4)), ("complete", job.handle, b"done")]
    assert late.kinds() == ["created", "status", "complete"]
    assert sched.grab(worker) is None
    assert_clean(sched)
    # after completion the same unique makes a new job
    assert sched.submit(b"f", b"again", unique=b"same").handle != job.handle


def test_unique_rules_empty_dash_and_per_function(sched: Scheduler) -> None:
    assert sched.submit(b"f", b"x") is not sched.submit(b"f", b"x")
    assert sched.submit(b"f", b"same", unique=b"-") is sched.submit(b"f", b"same", unique=b"-")
    assert sched.submit(b"f", b"other", unique=b"-") is not sched.submit(b"f", b"same", unique=b"-")
    assert sched.submit(b"f", b"", unique=b"-") is not sched.submit(b"f", b"", unique=b"-")
    assert sched.submit(b"f", b"1", unique=b"k") is not sched.submit(b"g", b"1", unique=b"k")
    with pytest.raises(ArgumentTooLarge):
        sched.submit(b"f", b"x", unique=b"u" * 65)
    assert sched.submit(b"f", b"x", unique=b"u" * 64).unique == b"u" * 64


def test_background_duplicate_of_foreground_job_keeps_it_alive(sched: Scheduler) -> None:
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"k", listener=client)
    bg_client = Listener()
    assert sched.submit(b"f", b"y", unique=b"k", background=True, listener=bg_client) is job
    assert bg_client.events == [("created", job.handle)]
    sched.detach(client)  # the foreground client leaves; the background promise remains
    assert job.state == JobState.QUEUED and sched.job(job.handle) is job


def test_abandoned_foreground_job_is_dropped_but_running_one_finishes(sched: Scheduler) -> None:
    client = Listener()
    queued = sched.submit(b"nobody", b"x", listener=client)
    running = sched.submit(b"f", b"y", listener=client)
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is running
    sched.detach(client)
    assert queued.state == JobState.DONE and sched.job(queued.handle) is None
    assert sched.functions[b"nobody"].total == 0
    assert running.state == JobState.RUNNING
    sched.work_complete(worker, running.handle, b"unheard")
    assert client.kinds() == ["created", "created"]
    assert_clean(sched)


def test_worker_disconnect_requeues_and_wakes_another(sched: Scheduler) -> None:
    client = Listener()
    first = sched.submit(b"f", b"1", listener=client)
    second = sched.submit(b"f", b"2", listener=client)
    w1, _ = new_worker(sched, b"f")
    w2, waker2 = new_worker(sched, b"f")
    assert sched.grab(w1) is first
    assert sched.grab(w2) is second
    sched.pre_sleep(w2)
    assert waker2.noops == 0 and w2.state == WorkerState.SLEEPING
    sched.remove_worker(w1)
    assert waker2.noops == 1  # the requeued job woke the sleeper
    assert sched.grab(w2) is first and first.retries == 1
    assert client.kinds() == ["created", "created"]  # clients hear nothing of the retry


def test_requeue_goes_before_older_jobs_of_its_priority(sched: Scheduler) -> None:
    a = sched.submit(b"f", b"a", background=True)
    b = sched.submit(b"f", b"b", background=True)
    w, _ = new_worker(sched, b"f")
    assert sched.grab(w) is a
    sched.cant_do(w, b"f")
    w2, _ = new_worker(sched, b"f")
    assert [sched.grab(w2), sched.grab(w2)] == [a, b]


def test_job_retries_limit_fails_the_job(clock: Clock) -> None:
    sched = Scheduler(clock, handle_prefix=b"H:t", job_retries=2)
    client = Listener()
    job = sched.submit(b"f", b"x", listener=client)
    for attempt in range(2):
        worker, _ = new_worker(sched, b"f")
        assert sched.grab(worker) is job, attempt
        sched.remove_worker(worker)
    assert client.kinds() == ["created", "fail"]
    assert_clean(sched)


def test_can_do_timeout_requeues_and_old_owner_cannot_complete(sched: Scheduler, clock: Clock) -> None:
    client = Listener()
    job = sched.submit(b"slow", b"x", listener=client)
    worker, _ = new_worker(sched, b"slow", timeout=1500)
    assert sched.grab(worker) is job
    clock.advance(1.4)
    assert job.state == JobState.RUNNING
    clock.advance(0.2)
    assert job.state == JobState.QUEUED and job.retries == 1
    with pytest.raises(JobNotFound):
        sched.work_complete(worker, job.handle, b"late")
    assert sched.grab(worker) is job
    sched.work_complete(worker, job.handle, b"ok")
    assert client.kinds() == ["created", "complete"]
    assert not clock.getDelayedCalls()  # the timer went with the job


def test_epoch_job_runs_at_its_time_and_wakes_a_sleeper(sched: Scheduler, clock: Clock) -> None:
    when = int(clock.seconds()) + 60
    job = sched.submit(b"later", b"x", background=True, when=when)
    now_job = sched.submit(b"later", b"y", priority=Priority.LOW, background=True)
    worker, waker = new_worker(sched, b"later")
    assert sched.grab(worker) is now_job  # a future NORMAL job does not block a LOW one (gearmand bug)
    sched.work_complete(worker, now_job.handle, b"")
    assert sched.grab(worker) is None
    sched.pre_sleep(worker)
    assert waker.noops == 0
    assert sched.functions[b"later"].queued(Priority.NORMAL) == 1
    clock.advance(59)
    assert waker.noops == 0
    clock.advance(1)
    assert waker.noops == 1
    assert sched.grab(worker) is job


def test_epoch_in_the_past_runs_now(sched: Scheduler, clock: Clock) -> None:
    job = sched.submit(b"f", b"x", background=True, when=5)
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is job


def test_wakes_as_many_sleepers_as_runnable_jobs(sched: Scheduler) -> None:
    workers = [new_worker(sched, b"f") for _ in range(5)]
    for worker, _ in workers:
        assert sched.grab(worker) is None
        sched.pre_sleep(worker)
    sched.submit(b"f", b"1", background=True)
    assert sum(w.noops for _, w in workers) == 1
    sched.submit(b"f", b"2", background=True)
    assert sum(w.noops for _, w in workers) == 2
    assert sorted(w.noops for _, w in workers) == [0, 0, 0, 1, 1]


def test_worker_wakeup_zero_wakes_every_sleeper(clock: Clock) -> None:
    sched = Scheduler(clock, handle_prefix=b"H:t", worker_wakeup=0)
    workers = [new_worker(sched, b"f") for _ in range(4)]
    for worker, _ in workers:
        sched.pre_sleep(worker)
    sched.submit(b"f", b"1", background=True)
    assert [w.noops for _, w in workers] == [1, 1, 1, 1]


def test_pre_sleep_with_work_waiting_gets_an_immediate_noop(sched: Scheduler) -> None:
    worker, waker = new_worker(sched, b"f")
    sched.submit(b"f", b"x", background=True)
    sched.pre_sleep(worker)
    assert waker.noops == 1 and worker.state == WorkerState.NOOP_SENT
    sched.pre_sleep(worker)  # re-sent on every PRE_SLEEP while work waits (lost NOOPs, gearmand #343)
    assert waker.noops == 2


def test_noop_spent_on_another_function_wakes_the_next_sleeper(sched: Scheduler) -> None:
    both, both_waker = new_worker(sched, b"f", b"g")
    only_f, f_waker = new_worker(sched, b"f")
    sched.pre_sleep(both)
    sched.pre_sleep(only_f)
    job_f = sched.submit(b"f", b"x", background=True)
    woken = [both_waker.noops, f_waker.noops]
    assert sum(woken) == 1
    if both_waker.noops:
        job_g = sched.submit(b"g", b"y", priority=Priority.HIGH, background=True)
        assert sched.grab(both) is job_g  # spent its NOOP on g: f's job must not wait for it
        assert f_waker.noops == 1
        assert sched.grab(only_f) is job_f


def test_disconnect_of_a_woken_worker_wakes_another(sched: Scheduler) -> None:
    w1, k1 = new_worker(sched, b"f")
    w2, k2 = new_worker(sched, b"f")
    sched.pre_sleep(w1)
    sched.pre_sleep(w2)
    sched.submit(b"f", b"x", background=True)
    first, other, other_waker = (w1, w2, k2) if k1.noops else (w2, w1, k1)
    sched.remove_worker(first)
    assert other_waker.noops == 1
    assert sched.grab(other) is not None


def test_registering_a_function_while_asleep_wakes_for_waiting_work(sched: Scheduler) -> None:
    worker, waker = new_worker(sched, b"f")
    sched.pre_sleep(worker)
    sched.submit(b"g", b"x", background=True)
    assert waker.noops == 0
    sched.can_do(worker, b"g")
    assert waker.noops == 1


def test_maxqueue_counts_queued_and_running(sched: Scheduler) -> None:
    sched.set_maxqueue(b"f", (0, 2, 0))
    sched.submit(b"f", b"1", background=True)
    job2 = sched.submit(b"f", b"2", background=True)
    with pytest.raises(QueueFull):
        sched.submit(b"f", b"3", background=True)
    assert sched.submit(b"f", b"4", priority=Priority.HIGH, background=True)  # HIGH unlimited
    sched.submit(b"f", b"2", unique=b"k", priority=Priority.HIGH)
    assert job2.state == JobState.QUEUED


def test_cancel_removes_a_queued_job_and_fails_its_clients(sched: Scheduler) -> None:
    client = Listener()
    job = sched.submit(b"f", b"x", listener=client, unique=b"u")
    assert sched.cancel(job.handle)
    assert client.kinds() == ["created", "fail"]
    assert not sched.cancel(job.handle)
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is None
    assert_clean(sched)


def test_cancel_of_a_running_job_discards_its_result(sched: Scheduler) -> None:
    client = Listener()
    job = sched.submit(b"f", b"x", listener=client)
    worker, _ = new_worker(sched, b"f")
    sched.grab(worker)
    assert sched.cancel(job.handle)
    assert client.kinds() == ["created", "fail"]
    sched.work_complete(worker, job.handle, b"ignored")
    assert client.kinds() == ["created", "fail"]
    assert_clean(sched)


def test_drop_function(sched: Scheduler) -> None:
    client = Listener()
    sched.submit(b"f", b"x", listener=client)
    sched.submit(b"f", b"y", background=True)
    assert sched.drop_function(b"F") == (True, "OK")  # case-insensitive, as gearmand
    assert b"f" not in sched.functions and client.kinds() == ["created", "fail"]
    assert_clean(sched)
    worker, _ = new_worker(sched, b"g")
    assert sched.drop_function(b"g")[0] is False
    assert sched.drop_function(b"nope") == (False, "function not found")


def test_graceful_drain_waits_for_running_jobs(sched: Scheduler, clock: Clock) -> None:
    sched.submit(b"f", b"1", background=True)
    sched.submit(b"f", b"2", background=True)
    worker, _ = new_worker(sched, b"f")
    job = sched.grab(worker)
    drained = []
    sched.drain(lambda: drained.append(True))
    assert sched.grab(worker) is None
    clock.advance(0)
    assert drained == []
    sched.work_complete(worker, job.handle, b"")
    clock.advance(0)
    assert drained == [True]


def test_status_lookups(sched: Scheduler) -> None:
    client = Listener()
    job = sched.submit(b"f", b"x", unique=b"uu", listener=client)
    assert sched.job(job.handle) is job
    assert sched.job_snapshot_by_unique(b"uu").handle == job.handle
    assert sched.job_snapshot_by_unique(b"nope") is None


def test_workers_registered_alike_share_one_table_and_changes_stay_their_own(sched: Scheduler) -> None:
    """A pool of identical workers holds one registration table; CAN_DO, CANT_DO and a disconnect of one
    worker leave the others' registrations as they were, and a table nobody holds is forgotten."""
    pool = [sched.add_worker(Waker()) for _ in range(3)]
    for worker in pool:
        sched.can_do(worker, b"resize")
        sched.can_do(worker, b"thumb", 500)
    first, second, third = pool
    assert first.abilities is second.abilities is third.abilities
    assert len(sched.registrations) == 1
    sched.can_do(first, b"resize")  # registered twice now: another table
    sched.cant_do(second, b"thumb")
    assert [f.name for f in third.abilities] == [b"resize", b"thumb"]
    assert third.abilities[sched.functions[b"thumb"]].timeout_ms == 500
    assert first.function_names() == [b"resize", b"thumb", b"resize"]  # one entry per CAN_DO, as gearmand
    assert second.function_names() == [b"resize"]
    assert sched.functions[b"resize"].registrations == 4
    sched.remove_worker(third)
    assert third.abilities == {}
    # second's; the pool's is gone with its last worker, and first's repeated registrations are its own
    assert len(sched.registrations) == 1
    fourth = sched.add_worker(Waker())
    sched.can_do(fourth, b"resize")
    assert fourth.abilities is second.abilities
    sched.cant_do(first, b"resize")  # one registration each again: shared again
    assert first.function_names() == [b"thumb"]
    assert len(sched.registrations) == 2


def test_repeated_registrations_keep_their_sequence_until_no_repeat_is_left(sched: Scheduler) -> None:
    """gearmand lists one entry per CAN_DO, newest first; CANT_DO drops every entry of a name, and a worker back
    to one registration per function shares the plain table of its peers again. The newest timeout applies."""
    from gearman_gateway.scheduler.worker import RepeatedRegistrations

    worker, peer = sched.add_worker(Waker()), sched.add_worker(Waker())
    for name in (b"a", b"b", b"a", b"c"):
        sched.can_do(worker, name, 1000 if name == b"c" else 0)
    sched.can_do(worker, b"b", 2000)
    assert worker.function_names() == [b"b", b"c", b"a", b"b", b"a"]
    assert type(worker.abilities) is RepeatedRegistrations
    assert [f.name for f in worker.abilities] == [b"a", b"b", b"c"]
    assert worker.abilities[sched.functions[b"b"]].timeout_ms == 2000
    assert sched.functions[b"a"].registrations == 2 and sched.functions[b"b"].registrations == 2
    sched.cant_do(worker, b"a")
    assert worker.function_names() == [b"b", b"c", b"b"]
    sched.cant_do(worker, b"b")
    assert worker.function_names() == [b"c"]
    sched.can_do(peer, b"c", 1000)
    assert worker.abilities is peer.abilities
    job = sched.submit(b"c", b"x", background=True)
    assert sched.grab(worker) is job and job.timer is not None
    sched.reset_abilities(worker)
    assert worker.function_names() == [] and job.state is JobState.QUEUED


def test_a_worker_with_many_functions_keeps_its_own_table(sched: Scheduler) -> None:
    """Past SHARED_TABLE_MAX functions a table changes in place (no copy per CAN_DO), and shrinking back
    makes it shared again; registration order holds throughout."""
    from gearman_gateway.scheduler.worker import SHARED_TABLE_MAX

    worker, other = sched.add_worker(Waker()), sched.add_worker(Waker())
    names = [b"f%d" % i for i in range(SHARED_TABLE_MAX + 5)]
    for name in names:
        sched.can_do(worker, name)
    for name in names[:3]:
        sched.can_do(other, name)
    table = worker.abilities
    sched.can_do(worker, b"one more")
    assert worker.abilities is table
    for name in [b"one more", *names[3:]]:
        sched.cant_do(worker, name)
    assert worker.abilities is other.abilities
    assert worker.function_names() == [b"f2", b"f1", b"f0"]
    job = sched.submit(b"f1", b"x")
    assert sched.grab(worker) is job


# -- the read API: snapshots


def test_snapshots_show_functions_jobs_and_workers(sched: Scheduler, clock: Clock) -> None:
    client, other = Listener(), Listener()
    worker, _ = new_worker(sched, b"f", b"g")
    sched.can_do(worker, b"f")  # registered twice: shown twice, newest first
    running = sched.submit(b"f", b"x", unique=b"u", priority=Priority.HIGH, listener=client)
    sched.submit(b"f", b"x", unique=b"u", listener=other)  # joins it: two clients wait
    sched.submit(b"f", b"later", background=True, when=int(clock.seconds()) + 60)
    sched.submit(b"f", b"low", priority=Priority.LOW, background=True)
    assert sched.grab(worker) is running
    sched.work_status(worker, running.handle, 3, 10)
    f, g = sched.function_snapshots()
    assert f == (b"f", (0, 1, 1), 1, 2, 3, 3, 0, 0, 0, 0)
    assert (f.queued, f.running, f.workers, f.total, f.submitted) == ((0, 1, 1), 1, 2, 3, 3)
    assert g.name == b"g" and g.total == 0 and g.workers == 1
    assert sched.function_snapshot(b"g") == g and sched.function_snapshot(b"nobody") is None
    job = sched.job_snapshot(running.handle)
    assert job == sched.job_snapshot_by_unique(b"u")
    assert (job.function, job.unique, job.priority, job.background, job.running) == (b"f", b"u", 0, False, True)
    assert (job.numerator, job.denominator, job.waiting_clients, job.retries) == (3, 10, 2, 0)
    assert sched.job_snapshot(b"H:test:99") is None
    assert [snapshot.handle for snapshot in sched.job_snapshots()] == [b"H:test:1", b"H:test:2", b"H:test:3"]
    assert sched.worker_snapshot(worker) == ((b"f", b"g", b"f"), (running.handle,))
    assert sched.totals() == (1, 3, 1, 0, 0)
    with pytest.raises(AttributeError):
        job.running = False  # type: ignore[misc]  # a snapshot does not change, nor does it change the job


def test_dead_and_poison_jobs_are_shown_with_their_counts(clock: Clock) -> None:
    from gearman_gateway.scheduler import POISON_DEATHS
    from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy

    sched = Scheduler(clock, handle_prefix=b"H:test", retry_policies=RetryPolicies(RetryPolicy(dead_letter=True)))
    dying = sched.submit(b"f", b"x", background=True)
    for _ in range(POISON_DEATHS):
        worker, _ = new_worker(sched, b"f")
        assert sched.grab(worker) is dying
        sched.remove_worker(worker)
    (poison,) = sched.poison_job_snapshots()
    assert (poison.handle, poison.worker_deaths, poison.running) == (dying.handle, POISON_DEATHS, False)
    assert sched.function_snapshots()[0].poison_jobs == 1
    worker, _ = new_worker(sched, b"f")
    sched.grab(worker)
    sched.work_fail(worker, dying.handle)
    (dead,) = sched.dead_job_snapshots()
    assert dead.dead and dead.reason == "WORK_FAIL" and dead.failed_attempts == 1 + POISON_DEATHS
    assert sched.totals() == (1, 0, 0, 1, 0)


def test_listeners_hear_when_a_worker_takes_and_gives_back_their_job(sched: Scheduler) -> None:
    client, late = Listener(), Listener()
    job = sched.submit(b"f", b"x", unique=b"u", listener=client)
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is job
    sched.submit(b"f", b"x", unique=b"u", listener=late)  # joins a job that already runs
    sched.remove_worker(worker)
    other, _ = new_worker(sched, b"f")
    assert sched.grab(other) is job
    sched.work_complete(other, job.handle, b"r")
    assert client.runs == [("started", job.handle), ("requeued", job.handle), ("started", job.handle)]
    assert late.runs == client.runs
    assert client.kinds() == ["created", "complete"]


def test_the_scheduler_keeps_few_enough_attributes_to_read_them_fast(sched: Scheduler) -> None:
    """CPython 3.11 keeps an instance's attributes inline, and reads them with its fastest specialized
    instruction, only while the class has at most 29 of them; at 30 every ``self.x`` in the scheduler becomes a
    dict lookup, +2.5 % instructions per job in bench/instructions.py. Group new state in one object."""
    assert len(vars(sched)) <= 29, sorted(vars(sched))
