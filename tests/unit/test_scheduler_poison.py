"""Jobs that kill their workers (issue 13, item 9), and the counters people read about failed jobs.

A job whose worker died (or timed out) goes behind every job that has not failed, in every priority and
every function the grabbing worker can do, so one poison job never blocks its function, nor the lower
priorities, nor the worker's other functions, even with the default unlimited retries; it still counts in
its own priority. Such jobs run among themselves first died first, whenever nothing else is there. One
given back (CANT_DO, RESET_ABILITIES) keeps the head. Jobs that keep killing workers are visible: admin
`show poison jobs`, the JSON snapshot, the metrics, and one log line at the third death.
"""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import HELD, POISON_DEATHS, JobState, Priority, Scheduler
from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy
from gearman_gateway.stores.base import StoredJob
from protocols.http import metrics
from tests.unit.test_scheduler import Listener, assert_clean, new_worker
from tests.unit.test_scheduler_store import FakeStore
from tests.unit.test_scheduler_turns import HoldingWaker, Turns


@pytest.fixture
def sched(clock: Clock) -> Scheduler:
    return Scheduler(clock, handle_prefix=b"H:p")


def admin_for(sched: Scheduler) -> Admin:
    controls = AdminControls(shutdown=lambda graceful: None, verbose_level=lambda: "INFO")
    return Admin(sched, ConnectionRegistry(), controls)


def test_a_job_whose_worker_died_goes_behind_the_jobs_that_never_failed(sched: Scheduler) -> None:
    poison = sched.submit(b"f", b"poison", background=True)
    others = [sched.submit(b"f", b"%d" % n, background=True) for n in range(3)]
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is poison
    sched.remove_worker(worker)
    assert poison.state == JobState.QUEUED and poison.retries == 1 and poison.deaths == 1
    worker, _ = new_worker(sched, b"f")
    assert [sched.grab(worker) for _ in range(4)] == [*others, poison]


def kill(sched: Scheduler, *functions: bytes, data: bytes | None = None):
    """A worker of ``functions`` grabs a job (the one with ``data``, if given) and dies with it."""
    worker, _ = new_worker(sched, *functions)
    job = sched.grab(worker)
    assert job is not None and (data is None or job.data == data), job
    sched.remove_worker(worker)
    return job


def test_a_died_high_job_goes_behind_normal_and_low_jobs(sched: Scheduler) -> None:
    """(a) gearmand's tail of its own priority is not enough: a poison HIGH job would still be taken before
    every normal and low job, again and again."""
    poison = sched.submit(b"f", b"poison", priority=Priority.HIGH, background=True)
    normal = sched.submit(b"f", b"normal", background=True)
    low = sched.submit(b"f", b"low", priority=Priority.LOW, background=True)
    kill(sched, b"f", data=b"poison")
    later_high = sched.submit(b"f", b"later high", priority=Priority.HIGH, background=True)
    fn = sched.functions[b"f"]
    assert [fn.queued(p) for p in (0, 1, 2)] == [2, 1, 1] and fn.runnable() == 4  # still counted as HIGH
    admin = admin_for(sched)
    assert admin.execute([b"prioritystatus"], True) == b"f\t2\t1\t1\t0\n.\n"
    assert sched.function_snapshot(b"f").queued == (2, 1, 1)
    assert sched.job_snapshot(poison.handle).priority == Priority.HIGH
    worker, _ = new_worker(sched, b"f")
    assert [sched.grab(worker) for _ in range(4)] == [later_high, normal, low, poison]


def test_a_died_job_goes_behind_the_jobs_of_the_workers_other_functions(sched: Scheduler) -> None:
    """(b) a worker of a and b that grabs by age would take a's died job (the oldest) before b's jobs."""
    poison = sched.submit(b"a", b"poison", background=True)
    b_jobs = [sched.submit(b"b", b"%d" % n, priority=Priority.LOW, background=True) for n in range(2)]
    a_later = sched.submit(b"a", b"later", priority=Priority.LOW, background=True)
    kill(sched, b"a", b"b", data=b"poison")
    worker, _ = new_worker(sched, b"a", b"b")
    assert [sched.grab(worker) for _ in range(5)] == [*b_jobs, a_later, poison, None]


def test_a_worker_of_one_function_takes_its_died_job_when_nothing_else_is_there(sched: Scheduler) -> None:
    """Retried for ever (the default): a died job is run whenever no job that has not failed is waiting."""
    poison = sched.submit(b"a", b"poison", background=True)
    other = sched.submit(b"b", b"other", background=True)
    kill(sched, b"a")
    only_a, _ = new_worker(sched, b"a")
    assert sched.grab(only_a) is poison  # b's job is not for this worker
    sched.remove_worker(only_a)
    assert poison.deaths == 2
    both, _ = new_worker(sched, b"a", b"b")
    assert [sched.grab(both), sched.grab(both), sched.grab(both)] == [other, poison, None]


def test_died_jobs_run_first_died_first_across_functions_and_priorities(sched: Scheduler) -> None:
    jobs = {
        name: sched.submit(function, name, priority=priority, background=True)
        for name, function, priority in [
            (b"low a", b"a", Priority.LOW),
            (b"high b", b"b", Priority.HIGH),
            (b"normal a", b"a", Priority.NORMAL),
        ]
    }
    kill(sched, b"a", data=b"normal a")
    kill(sched, b"b", data=b"high b")
    kill(sched, b"a", data=b"low a")  # a fresh job of a, before normal a which died
    kill(sched, b"a", data=b"normal a")  # the first to die among a's: it dies again, behind the others now
    fresh = sched.submit(b"b", b"fresh", priority=Priority.LOW, background=True)
    worker, _ = new_worker(sched, b"a", b"b")
    assert [sched.grab(worker) for _ in range(4)] == [fresh, jobs[b"high b"], jobs[b"low a"], jobs[b"normal a"]]


def test_a_died_job_given_back_keeps_its_turn_among_the_died(sched: Scheduler) -> None:
    first = sched.submit(b"f", b"1", background=True)
    second = sched.submit(b"f", b"2", background=True)
    kill(sched, b"f", data=b"1")
    kill(sched, b"f", data=b"2")
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is first and sched.grab(worker) is second
    sched.cant_do(worker, b"f")  # gives both back: each goes back to its place, not behind the other
    assert list(sched.functions[b"f"].died) == [first, second] and first.deaths == second.deaths == 1
    fresh = sched.submit(b"f", b"fresh", background=True)
    sched.can_do(worker, b"f")
    assert [sched.grab(worker) for _ in range(3)] == [fresh, first, second]


def test_a_died_job_is_cancelled_dropped_or_abandoned_cleanly(sched: Scheduler) -> None:
    client = Listener()
    background = sched.submit(b"f", b"bg", background=True)
    sched.submit(b"f", b"fg", listener=client)
    other = sched.submit(b"g", b"other", background=True)
    kill(sched, b"f", data=b"bg")
    kill(sched, b"f", data=b"fg")
    kill(sched, b"g")
    assert sched.cancel(background.handle) and sched.functions[b"f"].queued(Priority.NORMAL) == 1
    sched.detach(client)  # nobody waits for the foreground one any more: dropped
    assert sched.drop_function(b"g") == (True, "OK") and other.state == JobState.DONE
    assert_clean(sched)


def test_a_held_grab_takes_a_died_job_rather_than_wait(clock: Clock) -> None:
    """With reactor turns, a grab that finds nothing waits for the end of the turn; a died job is not
    nothing: it is run at once. One that dies while a grab waits goes straight to it."""
    turns = Turns()
    sched = Scheduler(clock, handle_prefix=b"H:p", turn_end=turns)
    poison = sched.submit(b"f", b"poison", background=True)
    kill(sched, b"f")
    worker = sched.add_worker(HoldingWaker())
    sched.can_do(worker, b"f")
    assert sched.grab(worker, hold=True) is poison
    waiting_waker = HoldingWaker()
    waiting = sched.add_worker(waiting_waker)
    sched.can_do(waiting, b"f")
    assert sched.grab(waiting, hold=True) is HELD
    sched.remove_worker(worker)
    assert waiting_waker.answers == [poison] and poison.worker is waiting and poison.deaths == 2
    sched.work_complete(waiting, poison.handle, b"")
    turns.end()
    assert_clean(sched)


def test_a_died_job_retried_after_work_fail_waits_behind_the_others_again(clock: Clock) -> None:
    sched = Scheduler(clock, handle_prefix=b"H:p", retry_policies=RetryPolicies(default=RetryPolicy(retries=1)))
    job = sched.submit(b"f", b"x", background=True)
    kill(sched, b"f")
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is job
    sched.work_fail(worker, job.handle)
    fresh = sched.submit(b"f", b"fresh", priority=Priority.LOW, background=True)
    clock.advance(1)  # the retry's back-off
    assert sched.functions[b"f"].queued(Priority.NORMAL) == 1
    assert [sched.grab(worker), sched.grab(worker)] == [fresh, job]


def test_a_timed_out_job_goes_to_the_tail_and_counts_as_a_death(sched: Scheduler, clock: Clock) -> None:
    slow = sched.submit(b"f", b"slow", background=True)
    other = sched.submit(b"f", b"other", background=True)
    worker, _ = new_worker(sched, b"f", timeout=1000)
    assert sched.grab(worker) is slow
    clock.advance(1.5)
    assert slow.deaths == 1 and sched.functions[b"f"].deaths == 1
    assert [sched.grab(worker), sched.grab(worker)] == [other, slow]


def test_a_job_given_back_keeps_the_head(sched: Scheduler) -> None:
    first = sched.submit(b"f", b"1", background=True)
    second = sched.submit(b"f", b"2", background=True)
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is first
    sched.cant_do(worker, b"f")
    assert first.deaths == 0 and first.retries == 1
    sched.can_do(worker, b"f")
    assert sched.grab(worker) is first
    sched.reset_abilities(worker)
    sched.can_do(worker, b"f")
    assert [sched.grab(worker), sched.grab(worker)] == [first, second]
    assert first.deaths == 0 and first.retries == 2


def run_with_restarts(
    sched: Scheduler,
    foreground: bool,
    poison_priority: int = Priority.NORMAL,
    poison_function: bytes = b"f",
    functions: tuple[bytes, ...] = (b"f",),
) -> tuple[list[bytes], int, Listener]:
    """The issue's scenario: one poison job ahead of 50 ordinary ones (of the last of ``functions``); a
    worker of ``functions`` that dies on the poison job and is started again each time. Returns the
    ordinary payloads that ran, the deaths, the client."""
    client = Listener()
    sched.submit(poison_function, b"poison", priority=poison_priority, background=not foreground, listener=client)
    for n in range(50):
        sched.submit(functions[-1], b"job %d" % n, background=not foreground, listener=client)
    ran: list[bytes] = []
    deaths = 0
    while len(ran) < 50:
        assert deaths < 10, f"the poison job blocks its function: {len(ran)} of 50 ran"
        worker, _ = new_worker(sched, *functions)
        while len(ran) < 50 and (job := sched.grab(worker)) is not None:
            if job.data == b"poison":
                sched.remove_worker(worker)  # the worker process died
                deaths += 1
                break
            ran.append(job.data)
            sched.work_complete(worker, job.handle, job.data.upper())
        else:
            sched.remove_worker(worker)
    return ran, deaths, client


def test_one_poison_job_ahead_of_50_background_jobs_does_not_stop_them(sched: Scheduler) -> None:
    ran, deaths, _ = run_with_restarts(sched, foreground=False)
    assert ran == [b"job %d" % n for n in range(50)] and deaths == 1


def test_one_poison_high_job_ahead_of_50_normal_jobs_does_not_stop_them(sched: Scheduler) -> None:
    ran, deaths, _ = run_with_restarts(sched, foreground=False, poison_priority=Priority.HIGH)
    assert ran == [b"job %d" % n for n in range(50)] and deaths == 1


def test_one_poison_job_of_a_does_not_stop_the_50_jobs_of_b(sched: Scheduler) -> None:
    ran, deaths, _ = run_with_restarts(sched, foreground=False, poison_function=b"a", functions=(b"a", b"b"))
    assert ran == [b"job %d" % n for n in range(50)] and deaths == 1


def test_one_poison_job_ahead_of_50_foreground_jobs_does_not_stop_them(sched: Scheduler) -> None:
    ran, deaths, client = run_with_restarts(sched, foreground=True)
    assert deaths == 1
    completes = [event for event in client.events if event[0] == "complete"]
    assert [data for _, _, data in completes] == [b"JOB %d" % n for n in range(50)]


def test_a_job_that_keeps_killing_workers_is_logged_once_and_listed(sched: Scheduler, caplog) -> None:
    poison = sched.submit(b"f", b"poison", background=True)
    admin = admin_for(sched)
    caplog.set_level(logging.WARNING, logger="gearman_gateway.scheduler")
    for death in range(1, POISON_DEATHS + 3):
        worker, _ = new_worker(sched, b"f")
        assert sched.grab(worker) is poison
        sched.remove_worker(worker)
        listed = admin.execute([b"show", b"poison", b"jobs"], True)
        if death < POISON_DEATHS:
            assert listed == b".\n" and not caplog.records
        else:
            assert listed == b"%s\tf\t%d\n.\n" % (poison.handle, death)
    (record,) = caplog.records  # one line, at the third death, not one per death after it
    message = record.getMessage()
    assert f"job {poison.handle.decode()} of function f" in message and "3 times" in message
    assert "--job-retries" in message and "b'" not in message
    snapshot = admin.snapshot()
    assert snapshot["poison_jobs"] == [
        {"handle": poison.handle.decode(), "function": "f", "deaths": 5, "running": False, "background": True}
    ]
    assert snapshot["functions"][0]["worker_deaths"] == 5
    text = metrics.render(sched, ConnectionRegistry(), metrics.HttpStats()).decode()
    found = {
        (sample.name, tuple(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert found[("gearman_job_worker_deaths_total", (("function", "f"),))] == 5
    assert found[("gearman_poison_jobs", (("function", "f"),))] == 1
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is poison
    sched.work_complete(worker, poison.handle, b"")  # it finally ran: no longer listed
    assert admin.execute([b"show", b"poison", b"jobs"], True) == b".\n" and not sched.poison_jobs
    assert_clean(sched)


def test_job_retries_stop_a_poison_job_into_the_dead_letter_list(clock: Clock) -> None:
    """What docs/persistence.md recommends: -j N with a dead-letter policy."""
    store = FakeStore()
    sched = Scheduler(
        clock,
        handle_prefix=b"H:p",
        store=store,
        job_retries=3,
        retry_policies=RetryPolicies(default=RetryPolicy(dead_letter=True)),
    )
    poison = sched.submit(b"f", b"poison", background=True)
    store.commit()
    for _ in range(3):
        worker, _ = new_worker(sched, b"f")
        assert sched.grab(worker) is poison
        sched.remove_worker(worker)
    assert poison.handle in sched.dead_letters and not sched.poison_jobs
    assert admin_for(sched).execute([b"show", b"dead", b"jobs"], True) == (
        b"%s\tf\t3\tits worker went away 3 times\n.\n" % poison.handle
    )


def test_show_dead_jobs_counts_every_failure(sched: Scheduler, clock: Clock) -> None:
    """A job that failed twice (one retry allowed) shows 2, not 1."""
    sched.retry_policies = RetryPolicies(default=RetryPolicy(retries=1, backoff=1, dead_letter=True))
    job = sched.submit(b"f", b"x", background=True)
    worker, _ = new_worker(sched, b"f")
    assert sched.grab(worker) is job
    sched.work_fail(worker, job.handle)
    clock.advance(1)
    assert sched.grab(worker) is job
    sched.work_exception(worker, job.handle, b"again")
    assert job.state == JobState.DEAD
    admin = admin_for(sched)
    assert admin.execute([b"show", b"dead", b"jobs"], True) == b"%s\tf\t2\tWORK_EXCEPTION: again\n.\n" % job.handle
    assert admin.snapshot()["dead_letters"][0]["failures"] == 2


def test_replayed_and_requeued_jobs_count_as_submitted(clock: Clock) -> None:
    """`completed` never exceeds `submitted` (the dashboard, the JSON status and the metrics read them)."""
    store = FakeStore()
    sched = Scheduler(clock, handle_prefix=b"H:r", store=store, retry_policies=RetryPolicies())
    rows = [StoredJob(n, b"", b"f", b"", 1, b"%d" % n, 0) for n in (1, 2)]
    dead = StoredJob(3, b"", b"f", b"", 1, b"dead", 0, dead=True, reason="WORK_FAIL")
    store.rows = {row.job_id: row for row in [*rows, dead]}
    sched.replay([*rows, dead])
    fn = sched.functions[b"f"]
    assert fn.submitted == 2
    assert sched.requeue_dead(b"H:r:3")
    assert fn.submitted == 3
    worker, _ = new_worker(sched, b"f")
    while (job := sched.grab(worker)) is not None:
        sched.work_complete(worker, job.handle, b"")
    assert fn.completed == 3 and fn.completed <= fn.submitted


def test_log_lines_show_handles_and_names_as_text(clock: Clock, caplog) -> None:
    """Never a Python repr (b'H:p:1') in what an operator reads (issue 13, item 6)."""
    caplog.set_level(logging.DEBUG, logger="gearman_gateway.scheduler")
    policies = RetryPolicies(default=RetryPolicy(retries=1, backoff=1, dead_letter=True))
    sched = Scheduler(clock, handle_prefix=b"H:p", job_retries=POISON_DEATHS + 1, retry_policies=policies)
    failing = sched.submit(b"f\xff", b"x", background=True)
    worker, _ = new_worker(sched, b"f\xff", timeout=1000)
    assert sched.grab(worker) is failing
    sched.work_fail(worker, failing.handle)  # retried
    clock.advance(1)
    assert sched.grab(worker) is failing
    clock.advance(1)  # timed out
    for _ in range(POISON_DEATHS):  # a poison job, then dropped after --job-retries attempts
        assert sched.grab(worker) is failing
        sched.remove_worker(worker)
        worker, _ = new_worker(sched, b"f\xff", timeout=1000)
    client = Listener()
    sched.submit(b"f\xff", b"y", listener=client)
    sched.detach(client)  # an abandoned job
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 6, messages
    assert all("b'" not in message and "bytearray" not in message for message in messages), messages
    assert any("function f\\xff" in message for message in messages), messages


def test_show_store_shows_no_python_values() -> None:
    controls = AdminControls(
        shutdown=lambda graceful: None,
        verbose_level=lambda: "INFO",
        store_status=lambda: {"backend": "sqlite", "state": "up", "down_since": None, "durable": True, "commits": 3},
    )
    admin = Admin(Scheduler(Clock(), handle_prefix=b"H:p"), ConnectionRegistry(), controls)
    assert admin.execute([b"show", b"store"], True) == (
        b"backend\tsqlite\nstate\tup\ndown_since\t-\ndurable\tyes\ncommits\t3\n.\n"
    )
