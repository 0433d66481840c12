"""The admin text commands (gearmand's `status`, `workers`, `maxqueue`, ...), rendered from the scheduler's
snapshots (``gearman_gateway.scheduler.snapshots``).

Replies are byte-compatible with gearmand 1.1.20 (reference §3): list replies end in a `.` line, one-line
replies are `OK` / `ERR CODE text` with gearmand's line endings. ``snapshot`` gives the same data as plain
Python values for the HTTP JSON endpoints. Each reply is returned whole, so frontends write it at once
(gearadmin stops reading 5 ms after the last byte).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.history import HistoryEntry
from gearman_gateway.monitoring import Monitoring
from gearman_gateway.scheduler import PRIORITY_NAMES, Scheduler
from gearman_gateway.security import Access, Denied, Grant
from gearman_gateway.security.grants import shown
from gearman_gateway.version import SERVER_VERSION

OK = b"OK\r\n"
#: `show history` without a count lists this many jobs.
HISTORY_LINES = 20
LIST_END = b".\n"


#: The class of every admin command (``security.ADMIN_CLASSES``): what an identity's ``admin:`` list grants.
COMMAND_CLASSES = {
    b"status": "read",
    b"prioritystatus": "read",
    b"workers": "read",
    b"version": "read",
    b"verbose": "read",
    b"getpid": "read",
    b"show": "read",
    b"latency": "read",
    b"peers": "read",
    b"cancel": "cancel",
    b"create": "functions",
    b"drop": "functions",
    b"maxqueue": "maxqueue",
    b"shutdown": "shutdown",
    b"requeue": "dead_letters",
    b"delete": "dead_letters",
}


def _err_unknown(word: bytes) -> bytes:
    return b"ERR UNKNOWN_COMMAND Unknown+server+command" + word + b"\r\n"


def _err_args(command: bytes) -> bytes:
    return b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+" + command + b"\r\n"


def _value(value: Any) -> bytes:
    """A `show store` value as people read it: never a Python repr (``None``, ``False``)."""
    if value is None:
        return b"-"
    if isinstance(value, bool):
        return b"yes" if value else b"no"
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def printable_bytes(data: bytes) -> bytes:
    """Exception text on one admin line: tabs, line ends and other control bytes as ``\\xNN``."""
    return bytes(data).decode("latin-1").encode("unicode_escape") if data else b"-"


def _parse_int(text: bytes) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@dataclass
class AdminControls:
    """What admin commands may do beyond reading the scheduler."""

    shutdown: Callable[[bool], None]  # graceful?
    verbose_level: Callable[[], str]
    allow_remote_shutdown: bool = False
    store_status: Callable[[], dict[str, Any]] | None = None  # the durable store's health, if any
    # every frontend: name, state, addresses ("host:port"), detail (Server.frontend_states)
    frontend_states: Callable[[], list[dict[str, Any]]] | None = None
    monitoring: Monitoring | None = None  # latency and job history (gearman_gateway/monitoring.py)
    # the Prometheus families frontends add (protocols.MetricFamily; Server.frontend_metrics)
    frontend_metrics: Callable[[], list[Any]] | None = None
    # shared mode (docs/scale.md): the cluster's servers and queues (SharedQueue.cluster_view)
    cluster: Callable[[], dict[str, Any]] | None = None


class Admin:
    """The admin commands of one server. A command runs for a caller's ``Grant`` (None: the unrestricted
    caller of a server without a security policy): its class must be granted, and a tenant's caller sees
    and names only its own functions, unprefixed (``Grant.outside``/``inside``, set for the call)."""

    def __init__(
        self,
        scheduler: Scheduler,
        connections: ConnectionRegistry,
        controls: AdminControls,
        access: Access | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.connections = connections
        self.controls = controls
        self.access = access
        self._viewer: Grant | None = None  # the caller of the running command
        self._commands: dict[bytes, Callable[[list[bytes], bool], bytes]] = {
            b"status": self._status,
            b"prioritystatus": self._priority_status,
            b"workers": self._workers,
            b"maxqueue": self._maxqueue,
            b"version": lambda words, local: b"OK %s\n" % SERVER_VERSION.encode(),
            b"verbose": lambda words, local: b"OK %s\n" % self.controls.verbose_level().encode(),
            b"getpid": lambda words, local: b"OK %d\n" % os.getpid(),
            b"show": self._show,
            b"cancel": self._cancel,
            b"create": self._create,
            b"drop": self._drop,
            b"shutdown": self._shutdown,
            b"requeue": self._requeue_dead,
            b"delete": self._delete_dead,
            b"latency": self._latency,
            b"peers": self._peers,
        }

    def execute(
        self, words: list[bytes], peer_is_local: bool, grant: Grant | None = None, frontend: str = "", peer: str = "?"
    ) -> bytes:
        """The complete reply to one command line, already split into words, run for ``grant``."""
        if not words:
            return _err_unknown(b"")
        command = words[0].lower()
        handler = self._commands.get(command)
        if handler is None:
            return _err_unknown(words[0])
        if grant is None or grant.unrestricted:
            return handler(words, peer_is_local)
        try:
            if self.access is not None:
                self.access.admin(grant, COMMAND_CLASSES[command], command, frontend, peer)
        except Denied as refusal:
            return b"ERR PERMISSION_DENIED %s\r\n" % refusal.text.replace(" ", "+").encode()
        self._viewer = grant
        try:
            return handler(words, peer_is_local)
        finally:
            self._viewer = None

    def _seen(self, name: bytes) -> bytes | None:
        """A scheduler function name as the caller sees it; None: not the caller's tenant's."""
        viewer = self._viewer
        return shown(name) if viewer is None else viewer.outside(name)

    def _named(self, name: bytes) -> bytes:
        """A function name the caller gave, as the scheduler knows it."""
        viewer = self._viewer
        return name if viewer is None else viewer.inside(name)

    def _own_handle(self, handle: bytes) -> bool:
        """Whether the caller may act on a job (a tenant only on its own functions')."""
        if self._viewer is None or self._viewer.tenant is None:
            return True
        job = self.scheduler.job_snapshot(handle)
        return job is not None and self._seen(job.function) is not None

    # -- list commands

    def _status(self, words: list[bytes], local: bool) -> bytes:
        if len(words) > 1 and words[1].lower() == b"cluster":
            return self._status_cluster()
        lines = [
            b"%s\t%d\t%d\t%d\n" % (name, function.total, function.running, function.workers)
            for function in self.scheduler.function_snapshots()
            if (name := self._seen(function.name)) is not None
        ]
        return b"".join(lines) + LIST_END

    def _status_cluster(self) -> bytes:
        """Beyond gearmand, shared mode: `status`'s columns for the whole cluster (FUNCTION TAB TOTAL TAB RUNNING
        TAB WORKERS, then `.`): jobs waiting for a claim plus every live server's, from their last heartbeats."""
        if self.controls.cluster is None:
            return b"ERR NOT_SHARED this+server+is+not+in+shared+mode\r\n"
        lines = [
            b"%s\t%d\t%d\t%d\n" % (f["name"].encode(), f["total"], f["running"], f["workers"])
            for f in self.controls.cluster()["functions"]
        ]
        return b"".join(lines) + LIST_END

    def _peers(self, words: list[bytes], local: bool) -> bytes:
        """Beyond gearmand, shared mode: the cluster's servers (NUMBER TAB NAME TAB alive|dead TAB SECONDS SINCE
        ITS LAST HEARTBEAT TAB JOBS IT HOLDS, then `.`); this server's line ends in ` *`."""
        if self.controls.cluster is None:
            return b"ERR NOT_SHARED this+server+is+not+in+shared+mode\r\n"
        lines = [
            b"%d\t%s\t%s\t%.1f\t%d%s\n"
            % (
                p["server"],
                p["name"].encode(),
                b"alive" if p["alive"] else b"dead",
                p["heartbeat_age"],
                p["held"],
                b" *" if p["this"] else b"",
            )
            for p in self.controls.cluster()["peers"]
        ]
        return b"".join(lines) + LIST_END

    def _priority_status(self, words: list[bytes], local: bool) -> bytes:
        lines = [
            b"%s\t%d\t%d\t%d\t%d\n" % (name, *function.queued, function.workers)
            for function in self.scheduler.function_snapshots()
            if (name := self._seen(function.name)) is not None
        ]
        return b"".join(lines) + LIST_END

    def _workers(self, words: list[bytes], local: bool) -> bytes:
        lines = []
        for connection in self.connections:
            fd, ip, client_id, functions = connection.describe()
            seen = [name for name in map(self._seen, functions) if name is not None]
            if self._viewer is not None and self._viewer.tenant is not None and not seen:
                continue  # a tenant sees only the workers of its own functions
            names = b"".join(b" " + name for name in seen)
            lines.append(b"%d %s %s :%s\n" % (fd, ip.encode(), client_id or b"-", names))
        return b"".join(lines) + LIST_END

    def _show(self, words: list[bytes], local: bool) -> bytes:
        if len(words) < 2:
            return _err_unknown(words[0])
        what = [w.lower() for w in words[1:]]
        if what == [b"jobs"]:
            lines = [
                b"%s\t%d\t%d\t%d\n" % (job.handle, job.retries, job.cancelled, job.background)
                for job in self._own_jobs(self.scheduler.job_snapshots())
            ]
            return b"".join(lines) + LIST_END
        if what == [b"unique", b"jobs"]:
            return b"".join(job.unique + b"\n" for job in self._own_jobs(self.scheduler.job_snapshots())) + LIST_END
        if what == [b"dead", b"jobs"]:
            lines = [
                b"%s\t%s\t%d\t%s\n" % (job.handle, self._seen(job.function), job.failed_attempts, job.reason.encode())
                for job in self._own_jobs(self.scheduler.dead_job_snapshots())
            ]
            return b"".join(lines) + LIST_END
        if what == [b"poison", b"jobs"]:
            lines = [
                b"%s\t%s\t%d\n" % (job.handle, self._seen(job.function), job.worker_deaths)
                for job in self._own_jobs(self.scheduler.poison_job_snapshots())
            ]
            return b"".join(lines) + LIST_END
        if what == [b"frontends"]:  # beyond gearmand: name TAB state TAB addresses, or what it connects to
            lines = []
            for frontend in self.frontend_states():
                where = " ".join(frontend["addresses"]) or frontend["detail"]
                lines.append(f"{frontend['name']}\t{frontend['state']}\t{where}\n".encode())
            return b"".join(lines) + LIST_END
        if what[0] == b"history" and len(what) <= 3:
            return self._history(words[2:])
        if what == [b"store"]:
            status = self.store_status()
            lines = [b"%s\t%s\n" % (key.encode(), _value(value)) for key, value in status.items()]
            return b"".join(lines) + LIST_END
        return b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"

    def _latency(self, words: list[bytes], local: bool) -> bytes:
        """Beyond gearmand: per function, the queue wait's and the run time's p50 and p99 over the last
        minute, in seconds, and how many jobs that is: FUNCTION TAB WAIT_P50 TAB WAIT_P99 TAB RUN_P50 TAB
        RUN_P99 TAB JOBS, then `.` (docs/monitoring.md)."""
        lines = [
            b"%s\t%.6f\t%.6f\t%.6f\t%.6f\t%d\n" % (name, f.wait_p50, f.wait_p99, f.run_p50, f.run_p99, f.recent)
            for f in self.latency()
            if (name := self._seen(f.name)) is not None
        ]
        return b"".join(lines) + LIST_END

    def latency(self) -> list[Any]:
        monitoring = self.controls.monitoring
        if monitoring is None or monitoring.latency is None:
            return []
        return monitoring.latency.functions()

    def history(self, **filters: Any) -> list[HistoryEntry]:
        """The job history, newest first (``History.entries`` filters); empty when it is off."""
        return self.history_from(**filters)[0]

    def history_from(self, **filters: Any) -> tuple[list[HistoryEntry], str]:
        """The job history and which source answered: ``memory`` (the ring), or with a durable history
        ``memory+store`` when older jobs came from the store's table (durable_history.py)."""
        monitoring = self.controls.monitoring
        if monitoring is None or monitoring.history is None:
            return [], "off"
        if monitoring.durable is not None:
            return monitoring.durable.entries(**filters)
        return monitoring.history.entries(**filters), "memory"

    def hook_stats(self) -> tuple[int, list[tuple[Any, Any]]]:
        """Events waiting in the hooks' outbox, and (hook, HookStats) for every configured hook."""
        monitoring = self.controls.monitoring
        if monitoring is None or monitoring.outbox is None:
            return 0, []
        outbox = monitoring.outbox
        return len(outbox), [(hook, outbox.stats_for(hook)) for hook in monitoring.hooks]

    def _history(self, args: list[bytes]) -> bytes:
        """`show history [FUNCTION] [N]`: the last N (default HISTORY_LINES) finished jobs, newest first, of
        one function or all: HANDLE TAB FUNCTION TAB OUTCOME TAB PRIORITY TAB BACKGROUND TAB SUBMITTED TAB
        WAIT TAB RUN TAB WORKER TAB EXCEPTION. A lone argument of digits is N."""
        function: bytes | None = None
        count = HISTORY_LINES
        if len(args) == 2:
            function, number = args
        elif len(args) == 1 and args[0].isdigit():
            number = args[0]
        else:
            number = b"%d" % count
            function = args[0] if args else None
        if not number.isdigit():
            return _err_args(b"show+history")
        lines = [
            b"%s\t%s\t%s\t%s\t%d\t%.3f\t%.6f\t%.6f\t%s\t%s\n"
            % (
                e.handle,
                e.function,
                e.outcome.encode(),
                PRIORITY_NAMES[e.priority].encode(),
                e.background,
                e.submitted,
                e.wait,
                e.run,
                e.worker or b"-",
                printable_bytes(e.exception),
            )
            for e in self.history(function=None if function is None else self._named(function), limit=int(number))
            if self._seen(e.function) is not None
        ]
        return b"".join(lines) + LIST_END

    def store_status(self) -> dict[str, Any]:
        if self.controls.store_status is None:
            return {"backend": "memory", "state": "up", "durable": False}
        status = self.controls.store_status()
        monitoring = self.controls.monitoring
        if monitoring is not None and monitoring.durable is not None:  # the durable job history's table
            status = {**status, **monitoring.durable.stats()}
        return status

    def frontend_states(self) -> list[dict[str, Any]]:
        return self.controls.frontend_states() if self.controls.frontend_states is not None else []

    def frontend_metrics(self) -> list[Any]:
        return self.controls.frontend_metrics() if self.controls.frontend_metrics is not None else []

    def _dead_letter_action(self, words: list[bytes], action: Callable[[bytes], bool]) -> bytes:
        """`requeue dead HANDLE|all`, `delete dead HANDLE|all` (beyond gearmand: its failed jobs vanish)."""
        if len(words) != 3 or words[1].lower() != b"dead":
            return _err_args(words[0].lower())
        if words[2].lower() == b"all":
            handles = [job.handle for job in self._own_jobs(self.scheduler.dead_job_snapshots())]
        else:
            handles = [words[2]]
            if self._viewer is not None and self._viewer.tenant is not None:  # only its own dead jobs
                handles = [
                    job.handle for job in self._own_jobs(self.scheduler.dead_job_snapshots()) if job.handle in handles
                ]
        done = [handle for handle in handles if action(handle)]
        if not done and words[2].lower() != b"all":
            return b"ERR UNKNOWN_JOB\r\n"
        return b"OK %d\r\n" % len(done)

    def _requeue_dead(self, words: list[bytes], local: bool) -> bytes:
        return self._dead_letter_action(words, self.scheduler.requeue_dead)

    def _delete_dead(self, words: list[bytes], local: bool) -> bytes:
        return self._dead_letter_action(words, self.scheduler.delete_dead)

    # -- one-line commands

    def _maxqueue(self, words: list[bytes], local: bool) -> bytes:
        if len(words) < 2:
            return _err_args(b"maxqueue")
        numbers = [_parse_int(w) for w in words[2:5]]
        if any(n is None for n in numbers):
            return _err_args(b"maxqueue")
        limits: list[int] = [n for n in numbers if n is not None]
        if len(limits) == 1:
            limits = limits * 3
        while len(limits) < 3:
            limits.append(0)
        self.scheduler.set_maxqueue(self._named(words[1]), (limits[0], limits[1], limits[2]))
        return OK

    def _cancel(self, words: list[bytes], local: bool) -> bytes:
        if len(words) < 3 or words[1].lower() != b"job":
            return _err_unknown(words[0])
        if len(words) > 3:
            return b"ERR UNKNOWN_ERROR\r\n"
        return OK if self._own_handle(words[2]) and self.scheduler.cancel(words[2]) else b"ERR UNKNOWN_JOB\r\n"

    def _create(self, words: list[bytes], local: bool) -> bytes:
        if len(words) != 3 or words[1].lower() != b"function":
            return _err_args(b"create")
        self.scheduler.function(self._named(words[2]))
        return OK

    def _drop(self, words: list[bytes], local: bool) -> bytes:
        if len(words) != 3 or words[1].lower() != b"function":
            return _err_args(b"drop")
        dropped, why = self.scheduler.drop_function(self._named(words[2]))
        return OK if dropped else b"ERR %s\r\n" % why.encode()

    def _shutdown(self, words: list[bytes], local: bool) -> bytes:
        if len(words) > 2 or (len(words) == 2 and words[1].lower() != b"graceful"):
            return b"ERR INVALID_ARGUMENTS An+invalid+argument+was+sent+to+shutdown\r\n"
        if not (local or self.controls.allow_remote_shutdown):
            return b"ERR PERMISSION_DENIED shutdown+is+only+allowed+from+loopback\r\n"
        self.controls.shutdown(len(words) == 2)
        return OK

    def _own_jobs(self, jobs: list[Any]) -> list[Any]:
        """The jobs (snapshots) of the caller's functions."""
        if self._viewer is None or self._viewer.tenant is None:
            return jobs
        return [job for job in jobs if self._seen(job.function) is not None]

    # -- structured data for JSON frontends

    def snapshot(self) -> dict[str, Any]:
        functions = [
            {
                "name": shown(function.name).decode("utf-8", "replace"),
                "total": function.total,
                "running": function.running,
                "queued": dict(zip(PRIORITY_NAMES, function.queued, strict=True)),
                "workers": function.workers,
                "submitted": function.submitted,
                "completed": function.completed,
                "failed": function.failed,
                "worker_deaths": function.worker_deaths,
            }
            for function in self.scheduler.function_snapshots()
        ]
        workers = []
        for connection in self.connections:
            fd, ip, client_id, names = connection.describe()
            workers.append(
                {
                    "fd": fd,
                    "ip": ip,
                    "id": client_id.decode("utf-8", "replace"),
                    "functions": [shown(n).decode("utf-8", "replace") for n in names],
                }
            )
        dead = [
            {
                "handle": job.handle.decode("utf-8", "replace"),
                "function": shown(job.function).decode("utf-8", "replace"),
                "failures": job.failed_attempts,
                "reason": job.reason,
            }
            for job in self.scheduler.dead_job_snapshots()
        ]
        poison = [
            {
                "handle": job.handle.decode("utf-8", "replace"),
                "function": shown(job.function).decode("utf-8", "replace"),
                "deaths": job.worker_deaths,
                "running": job.running,
                "background": job.background,
            }
            for job in self.scheduler.poison_job_snapshots()
        ]
        cluster = {"cluster": self.controls.cluster()} if self.controls.cluster is not None else {}
        return {
            **cluster,
            "version": SERVER_VERSION,
            "functions": functions,
            "connections": workers,
            "store": self.store_status(),
            "dead_letters": dead,
            "poison_jobs": poison,
        }
