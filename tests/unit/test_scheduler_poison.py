"""Jobs that kill their workers (issue 13, item 9), and the counters people read about failed jobs.

A job whose worker died (or timed out) goes behind every job that has not failed, so one poison job never
blocks its function even with the default unlimited retries; one given back (CANT_DO, RESET_ABILITIES)
keeps the head. Jobs that keep killing workers are visible: admin `show poison jobs`, the JSON snapshot,
the metrics, and one log line at the third death.
"""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import POISON_DEATHS, JobState, Scheduler
from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy
from gearman_gateway.stores.base import StoredJob
from protocols.http import metrics
from tests.unit.test_scheduler import Listener, assert_clean, new_worker
from tests.unit.test_scheduler_store import FakeStore


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


def run_with_restarts(sched: Scheduler, foreground: bool) -> tuple[list[bytes], int, Listener]:
    """The issue's scenario: one poison job ahead of 50 ordinary ones; a worker that dies on the poison
    job and is started again each time. Returns the ordinary payloads that ran, the deaths, the client."""
    client = Listener()
    sched.submit(b"f", b"poison", background=not foreground, listener=client)
    for n in range(50):
        sched.submit(b"f", b"job %d" % n, background=not foreground, listener=client)
    ran: list[bytes] = []
    deaths = 0
    while len(ran) < 50:
        assert deaths < 10, f"the poison job blocks its function: {len(ran)} of 50 ran"
        worker, _ = new_worker(sched, b"f")
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
