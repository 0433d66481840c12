"""From settings to the durability pieces: the store (behind its runner) and the service that opens,
replays and closes it, the gearmand import, the retry policies for failed background jobs."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from gearman_gateway.config import Settings
from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy
from gearman_gateway.stores import GEARMAND_TABLES, QueueHeld, Store, StoredJob, StoreError, create_store
from gearman_gateway.stores.runner import StoreRunner

if TYPE_CHECKING:
    from gearman_gateway.cluster import SharedQueue
    from gearman_gateway.scheduler import Scheduler
    from gearman_gateway.stores.sqlite_file import QueueFile

log = logging.getLogger("gearman_gateway.store")

#: The default sqlite file, named after the binary port: servers on different ports never share a queue.
#: Port 0 gives ``queue-0.sqlite3``: the port bound then changes at every start, so a file named after it
#: would never be read again (its jobs would wait for whichever later server got that port).
SQLITE_FILE = "queue-{port}.sqlite3"
#: The one default file of earlier versions, shared by every server on the host; the server on gearmand's
#: port takes it over at its first start.
LEGACY_SQLITE_FILE = "queue.sqlite3"
GEARMAND_PORT = 4730
#: gearmand's option that names its table (key prefix) per backend: here it names only what the import reads.
GEARMAND_TABLE_OPTIONS = {
    "sqlite": "--libsqlite3-table",
    "postgres": "--libpq-table",
    "mysql": "--mysql-table",
    "redis": "--redis-prefix",
    "memcached": "--libmemcached-prefix",
}


def server_port(settings: Settings) -> int:
    """The binary frontend's port (gearmand's -p), which tells servers on one host apart."""
    return settings.options("binary").port


def default_sqlite_path(settings: Settings) -> str:
    return os.path.join(settings.data_dir, SQLITE_FILE.format(port=server_port(settings)))


def store_options(settings: Settings) -> dict[str, Any]:
    """The chosen backend's options; the sqlite file defaults to one per port in the data directory."""
    options = dict(settings.queue_options.get(settings.queue_type) or {})
    if settings.queue_type == "sqlite" and not options.get("path"):
        options["path"] = default_sqlite_path(settings)
    return options


def sqlite_queue_file(settings: Settings) -> QueueFile:
    """The sqlite file's lock and life: the default file is ours (an empty one is removed at a clean stop)
    and takes over the earlier versions' file on gearmand's port; a file the user names is only locked."""
    from gearman_gateway.stores.sqlite_file import QueueFile  # only a server on sqlite loads its modules

    path = store_options(settings)["path"]
    if (settings.queue_options.get("sqlite") or {}).get("path"):
        return QueueFile(path)
    return QueueFile(
        path,
        option="--data-dir DIR",
        ours=True,
        legacy=os.path.join(settings.data_dir, LEGACY_SQLITE_FILE),
        take_over_legacy=server_port(settings) == GEARMAND_PORT,
    )


def make_queue_directory(settings: Settings) -> None:
    """The sqlite file's directory (the data directory unless --libsqlite3-db names a file elsewhere), or
    a StoreError that names it and the option that chose it."""
    queue_file = sqlite_queue_file(settings)
    directory = os.path.dirname(os.path.abspath(queue_file.path))
    try:
        os.makedirs(directory, mode=0o750, exist_ok=True)
    except OSError as error:
        what = "the data directory" if queue_file.ours else "the directory of the queue file"
        why = "a file is in the way" if isinstance(error, FileExistsError) else error.strerror or str(error)
        raise StoreError(f"cannot make {what} {directory} ({why}): choose another with {queue_file.option}") from None


def build_store(settings: Settings, reactor: Any) -> StoreRunner | None:
    if settings.queue_type == "memory":
        return None
    options = store_options(settings)
    if settings.shared:  # only a server in shared mode loads it
        from gearman_gateway.stores.shared_postgres import SharedPostgresStore

        return StoreRunner(
            SharedPostgresStore(lease=settings.shared_lease, listen=settings.shared_listen, **options), reactor
        )
    backend = create_store(settings.queue_type, **options)
    if settings.queue_type == "sqlite":
        make_queue_directory(settings)
        backend.file = sqlite_queue_file(settings)  # type: ignore[attr-defined]
    return StoreRunner(backend, reactor)


class StoreService(Service):
    """The durable store's life in the server's services: opened and replayed into the scheduler when the
    server starts (after the ports are bound and root is dropped, before the reactor runs, so replayed jobs
    come before the first client), closed when it stops (pending deletes written, the queue file's lock
    given up). Stopping comes after the connections have closed: the server stops its services in order."""

    name = "store"

    def __init__(
        self, runner: StoreRunner, scheduler: Scheduler, settings: Settings, cluster: SharedQueue | None = None
    ) -> None:
        self.runner = runner
        self.scheduler = scheduler
        self.settings = settings
        #: Shared mode's coordinator: started once the store is open, stopped before it closes.
        self.cluster = cluster

    def startService(self) -> None:  # noqa: N802
        runner = self.runner
        try:
            runner.open()
        except QueueHeld as error:
            raise QueueHeld(f"{error}{gearmand_table_hint(self.settings)}") from None
        rows = runner.load()
        if self.settings.import_gearmand_queue:
            rows += import_gearmand_rows(runner.backend, self.settings, rows)
        replayed = self.scheduler.replay(rows)
        dead = self.scheduler.totals().dead_letters
        log.log(25, "%s store: replayed %d jobs (%d in the dead-letter list)", runner.name, replayed - dead, dead)
        if self.cluster is not None:
            self.cluster.start()
        super().startService()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        if self.cluster is not None:
            self.cluster.close()
        else:
            self.runner.close()


def gearmand_table_hint(settings: Settings) -> str:
    """For a server refused a queue that another holds: gearmand's table option, which a gearmand user gives
    to keep servers apart, does not choose our queue (the message's end, or nothing)."""
    if not settings.gearmand_table:
        return ""
    option = GEARMAND_TABLE_OPTIONS.get(settings.queue_type, "queue.gearmand_table")
    return f"; {option} {settings.gearmand_table} names gearmand's queue, which only --import-gearmand-queue reads"


def import_gearmand_rows(backend: Store, settings: Settings, existing: list[StoredJob]) -> list[StoredJob]:
    """Jobs from the queue table gearmand wrote, made ours: new job ids after ``existing``, written to
    our table before they are replayed. Jobs whose (function, unique) we already hold are skipped, so
    importing twice does not double jobs that have a unique key."""
    table = settings.gearmand_table or GEARMAND_TABLES.get(settings.queue_type, "")
    found = backend.import_gearmand(table)
    held = {(row.function, row.unique) for row in existing if row.unique}
    next_id = max((row.job_id for row in existing), default=0) + 1
    rows = []
    for row in found:
        if row.unique and (row.function, row.unique) in held:
            continue
        row.job_id = next_id
        row.handle = b""
        next_id += 1
        rows.append(row)
    if rows:
        backend.add(rows)
    log.warning(
        "imported %d jobs from gearmand's %r (%d already held); the source is left as it was",
        len(rows),
        table,
        len(found) - len(rows),
    )
    return rows


def _policy(values: dict[str, Any] | None, base: RetryPolicy) -> RetryPolicy:
    if not values:
        return base
    merged = {**base.__dict__, **values}
    return RetryPolicy(**merged)


def retry_policies(settings: Settings) -> RetryPolicies:
    retries = settings.retries or {}
    default = _policy(retries.get("default"), RetryPolicy())
    functions = {
        str(name).encode(): _policy(values, default) for name, values in (retries.get("functions") or {}).items()
    }
    return RetryPolicies(default, functions)
