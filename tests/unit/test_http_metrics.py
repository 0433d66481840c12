"""/_gearman/metrics: Prometheus text format, checked with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import Scheduler
from protocols.http import metrics


class Waker:
    def wake(self) -> None:
        pass


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counters_gauges_and_labels() -> None:
    scheduler = Scheduler(Clock(), handle_prefix=b"H:t")
    worker = scheduler.add_worker(Waker())
    scheduler.can_do(worker, b"reverse")
    scheduler.submit(b"reverse", b"a", b"", 0, True)  # high
    scheduler.submit(b"reverse", b"b", b"", 2, True)  # low
    scheduler.submit(b"reverse", b"c", b"", 2, True)  # low
    job = scheduler.grab(worker)
    scheduler.work_complete(worker, job.handle, b"")
    running = scheduler.grab(worker)
    assert running is not None
    connections = ConnectionRegistry()
    stats = metrics.HttpStats()
    stats.count(200)
    stats.count(200)
    stats.count(504)
    found = samples(metrics.render(scheduler, connections, stats))
    fn = (("function", "reverse"),)
    assert found[("gearman_jobs_submitted_total", fn)] == 3
    assert found[("gearman_jobs_completed_total", fn)] == 1
    assert found[("gearman_jobs_failed_total", fn)] == 0
    assert found[("gearman_jobs_running", fn)] == 1
    assert found[("gearman_jobs_queued", (("function", "reverse"), ("priority", "low")))] == 1
    assert found[("gearman_jobs_queued", (("function", "reverse"), ("priority", "high")))] == 0
    assert found[("gearman_function_workers", fn)] == 1
    assert found[("gearman_workers", ())] == 1
    assert found[("gearman_connections", ())] == 0
    assert found[("gearman_http_responses_total", (("code", "200"),))] == 2
    assert found[("gearman_http_responses_total", (("code", "504"),))] == 1


def test_odd_function_names_stay_distinct_and_parseable() -> None:
    scheduler = Scheduler(Clock(), handle_prefix=b"H:t")
    names = [b'say "hi"', b"back\\slash", b"new\nline", b"\xff\xfe", "é".encode()]
    for name in names:
        scheduler.function(name)
    found = samples(metrics.render(scheduler, ConnectionRegistry(), metrics.HttpStats()))
    labels = {dict(key[1])["function"] for key in found if key[0] == "gearman_jobs_submitted_total"}
    assert labels == {'say "hi"', "back\\slash", "new\nline", "\\xff\\xfe", "é"}


def test_store_health_and_commit_latency_are_exported() -> None:
    scheduler = Scheduler(Clock(), handle_prefix=b"H:t")
    store = {
        "backend": "sqlite", "state": "down", "commits": 4, "rows_added": 10, "rows_removed": 7,
        "commit_seconds_total": 0.02, "last_commit_seconds": 0.004,
    }  # fmt: skip
    found = samples(metrics.render(scheduler, ConnectionRegistry(), metrics.HttpStats(), store))
    backend = (("backend", "sqlite"),)
    assert found[("gearman_store_up", backend)] == 0
    assert found[("gearman_store_rows_added_total", backend)] == 10
    assert found[("gearman_store_rows_removed_total", backend)] == 7
    assert found[("gearman_store_commit_latency_seconds_count", backend)] == 4
    assert found[("gearman_store_commit_latency_seconds_sum", backend)] == 0.02
    assert found[("gearman_dead_letter_jobs", ())] == 0
