"""``/_gearman/metrics``: the server's counters in Prometheus' text exposition format (version 0.0.4).

Everything is read at scrape time from the scheduler's snapshots and the connection registry; the only
state kept here is the HTTP frontend's own response counter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gearman_gateway.latency import EXPOSED
from gearman_gateway.scheduler import POISON_DEATHS, PRIORITY_NAMES
from gearman_gateway.security.grants import shown
from gearman_gateway.version import SERVER_VERSION

if TYPE_CHECKING:
    from gearman_gateway.connections import ConnectionRegistry
    from gearman_gateway.latency import FunctionLatency
    from gearman_gateway.scheduler import FunctionSnapshot, Scheduler
    from protocols import MetricFamily

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class HttpStats:
    """Responses sent by the HTTP frontend, per status code."""

    __slots__ = ("responses",)

    def __init__(self) -> None:
        self.responses: dict[int, int] = {}

    def count(self, status: int) -> None:
        responses = self.responses
        responses[status] = responses.get(status, 0) + 1


def label(value: bytes | str) -> str:
    """A label value: UTF-8 text, undecodable bytes as ``\\xNN`` (so distinct names stay distinct), then
    the format's escapes for backslash, double quote and newline."""
    if isinstance(value, bytes):
        value = shown(value).decode("utf-8", "backslashreplace")  # a tenant's function as tenant/name
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, int | float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {value}" for labels, value in samples)
    return lines


def _per_function(functions: list[FunctionSnapshot], value: str) -> list[tuple[str, int]]:
    return [(f'{{function="{label(function.name)}"}}', getattr(function, value)) for function in functions]


def _store_families(store: dict) -> list[str]:
    """The durable store's health and commit latency (admin `show store`); nothing for the memory queue."""
    if "commits" not in store:
        return []
    backend = f'{{backend="{label(str(store.get("backend", "")))}"}}'
    return [
        *_family("gearman_store_up", "gauge", "1 while the durable store answers, 0 during an outage.",
                 [(backend, int(store.get("state") == "up"))]),
        *_family("gearman_store_rows_added_total", "counter", "Jobs committed to the store.",
                 [(backend, store.get("rows_added", 0))]),
        *_family("gearman_store_rows_removed_total", "counter", "Finished jobs deleted from the store.",
                 [(backend, store.get("rows_removed", 0))]),
        "# HELP gearman_store_commit_latency_seconds Time from handing a batch to the store to its commit.",
        "# TYPE gearman_store_commit_latency_seconds summary",
        f"gearman_store_commit_latency_seconds_sum{backend} {store.get('commit_seconds_total', 0.0)}",
        f"gearman_store_commit_latency_seconds_count{backend} {store.get('commits', 0)}",
        *_family("gearman_store_last_commit_seconds", "gauge", "Latency of the latest commit.",
                 [(backend, store.get("last_commit_seconds", 0.0))]),
        *_history_families(store),
    ]  # fmt: skip


def _history_families(store: dict) -> list[str]:
    """The durable job history's table (``monitoring.history.durable``): nothing when it is off."""
    if "history_written" not in store:
        return []
    return [
        *_family("gearman_history_records_written_total", "counter", "Finished jobs written to the store's"
                 " history table.", [("", store["history_written"])]),
        *_family("gearman_history_records_dropped_total", "counter", "Finished jobs never written to the history"
                 " table: the store was slow or down and the unwritten records were full.",
                 [("", store["history_dropped"])]),
        *_family("gearman_history_records_pruned_total", "counter", "History rows deleted past the retention.",
                 [("", store["history_pruned"])]),
        *_family("gearman_history_records_pending", "gauge", "Finished jobs waiting to be written.",
                 [("", store["history_pending"])]),
    ]  # fmt: skip


def _histogram_families(functions: list[FunctionLatency]) -> list[str]:
    """The queue wait and run time histograms per function (``gearman_gateway.latency``)."""
    lines = []
    for name, part, help_text in (
        ("gearman_job_queue_wait_seconds", "wait", "Time from submit to the worker's assignment that ran the job"
         " (the last one, if it was requeued), per function; past the configured number of functions, `other`."),
        ("gearman_job_run_seconds", "run", "Time from a job's assignment to a worker to its end, per function;"
         " past the configured number of functions, `other`."),
    ):  # fmt: skip
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        for function in functions:
            histogram = getattr(function, part)
            fn = f'function="{label(function.name)}"'
            lines += [
                f'{name}_bucket{{{fn},le="{bound!r}"}} {count}'
                for bound, count in zip(EXPOSED, histogram.buckets, strict=True)
            ]
            lines += [
                f'{name}_bucket{{{fn},le="+Inf"}} {histogram.count}',
                f"{name}_sum{{{fn}}} {histogram.total!r}",
                f"{name}_count{{{fn}}} {histogram.count}",
            ]
    return lines


def _hook_families(hooks: tuple[int, list] | None) -> list[str]:
    """The event hooks' deliveries (``gearman_gateway.hooks``), per hook by its place in the list."""
    if not hooks or not hooks[1]:
        return []
    waiting, stats = hooks

    def per_hook(field: str) -> list[tuple[str, int]]:
        return [(f'{{hook="{hook.index}"}}', getattr(counts, field)) for hook, counts in stats]

    return [
        *_family("gearman_hook_events_delivered_total", "counter", "Hook events delivered (HTTP 2xx, or the"
                 " background job accepted).", per_hook("delivered")),
        *_family("gearman_hook_delivery_failures_total", "counter", "Hook delivery attempts that failed (refused,"
                 " timed out, not 2xx); each retry counts.", per_hook("failed_attempts")),
        *_family("gearman_hook_events_given_up_total", "counter", "Hook events dropped after their last retry.",
                 per_hook("given_up")),
        *_family("gearman_hook_events_dropped_total", "counter", "Hook events dropped because the outbox was full.",
                 per_hook("dropped")),
        *_family("gearman_hook_circuit_opened_total", "counter", "Times a hook's URL failed often enough in a row"
                 " that attempts to it paused (circuit breaker).", per_hook("circuit_opened")),
        *_family("gearman_hook_outbox_events", "gauge", "Hook events queued, in flight or waiting for a retry.",
                 [("", waiting)]),
    ]  # fmt: skip


def _frontend_families(families: Iterable[MetricFamily]) -> list[str]:
    """Families other frontends add (``protocols.MetricFamily``), labels escaped like ours."""
    lines: list[str] = []
    for family in families:
        samples = []
        for labels, value in family.samples:
            text = ",".join(f'{name}="{label(str(text))}"' for name, text in labels.items())
            samples.append((f"{{{text}}}" if text else "", value))
        lines.extend(_family(family.name, family.kind, family.help, samples))
    return lines


def _limit_hits(scheduler: Scheduler, connections: ConnectionRegistry) -> list[tuple[str, int]]:
    budget = scheduler.budget
    hits = {**connections.refusals(), "max_queued_jobs": budget.refused_jobs, "max_queued_bytes": budget.refused_bytes}
    return sorted(hits.items())


def render(
    scheduler: Scheduler,
    connections: ConnectionRegistry,
    stats: HttpStats,
    store: dict | None = None,
    frontends: Iterable[MetricFamily] = (),
    latency: list[FunctionLatency] | None = None,
    hooks: tuple[int, list] | None = None,
) -> bytes:
    functions = scheduler.function_snapshots()
    totals = scheduler.totals()
    queued = [
        (f'{{function="{label(function.name)}",priority="{PRIORITY_NAMES[p]}"}}', function.queued[p])
        for function in functions
        for p in (0, 1, 2)
    ]
    lines = [
        *_family("gearman_info", "gauge", "Server version.", [(f'{{version="{label(SERVER_VERSION)}"}}', 1)]),
        *_family(
            "gearman_jobs_submitted_total",
            "counter",
            "Jobs created per function (a submit that joins an existing job with the same unique is not counted;"
            " jobs replayed from the durable store and dead letters requeued count).",
            _per_function(functions, "submitted"),
        ),
        *_family(
            "gearman_jobs_completed_total",
            "counter",
            "Jobs that ended with WORK_COMPLETE, per function.",
            _per_function(functions, "completed"),
        ),
        *_family(
            "gearman_jobs_failed_total",
            "counter",
            "Jobs that ended with WORK_FAIL or WORK_EXCEPTION, or were dropped after --job-retries attempts.",
            _per_function(functions, "failed"),
        ),
        *_family(
            "gearman_jobs_queued",
            "gauge",
            "Jobs waiting for a worker, per function and priority (epoch jobs not yet due included).",
            queued,
        ),
        *_family(
            "gearman_jobs_running", "gauge", "Jobs held by a worker, per function.", _per_function(functions, "running")
        ),
        *_family(
            "gearman_job_worker_deaths_total",
            "counter",
            "Jobs requeued because their worker died (disconnected) or timed out while running them, per function.",
            _per_function(functions, "worker_deaths"),
        ),
        *_family(
            "gearman_poison_jobs",
            "gauge",
            f"Jobs in memory whose workers died or timed out {POISON_DEATHS} times or more (admin `show poison jobs`),"
            " per function.",
            _per_function(functions, "poison_jobs"),
        ),
        *_family(
            "gearman_function_workers",
            "gauge",
            "Worker registrations per function (the admin status column: CAN_DO twice counts twice).",
            _per_function(functions, "workers"),
        ),
        *_family("gearman_workers", "gauge", "Connections that registered as workers.", [("", totals.workers)]),
        *_family("gearman_connections", "gauge", "Open connections, every protocol.", [("", len(connections))]),
        *_family(
            "gearman_connections_accepted_total", "counter", "Connections accepted.", [("", connections.accepted_total)]
        ),
        *_family(
            "gearman_connections_refused_total",
            "counter",
            "Connections refused because --max-connections were open.",
            [("", connections.refused_total)],
        ),
        *_family(
            "gearman_limit_hits_total",
            "counter",
            "Connections refused or closed, and submits refused, by a limit (docs/security.md#limits), per limit.",
            [(f'{{limit="{name}"}}', count) for name, count in _limit_hits(scheduler, connections)],
        ),
        *_family(
            "gearman_job_payload_bytes",
            "gauge",
            "Payload bytes of the jobs in memory (queued or running), every function (--max-queued-bytes).",
            [("", scheduler.queued_bytes())],
        ),
        *_family(
            "gearman_http_responses_total",
            "counter",
            "Responses sent by the HTTP frontend, per status code.",
            [(f'{{code="{code}"}}', count) for code, count in sorted(stats.responses.items())],
        ),
        *_store_families(store or {}),
        *_histogram_families(latency or []),
        *_hook_families(hooks),
        *_family(
            "gearman_dead_letter_jobs",
            "gauge",
            "Background jobs that failed for good and wait in the dead-letter list.",
            [("", totals.dead_letters)],
        ),
        *_frontend_families(frontends),
    ]
    return ("\n".join(lines) + "\n").encode()
