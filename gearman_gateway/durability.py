"""From settings to the durability pieces: the store (behind its runner), the gearmand import, the
retry policies for failed background jobs."""

from __future__ import annotations

import logging
import os
from typing import Any

from gearman_gateway.config import Settings
from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy
from gearman_gateway.stores import GEARMAND_TABLES, Store, StoredJob, create_store
from gearman_gateway.stores.runner import StoreRunner

log = logging.getLogger("gearman_gateway.store")

SQLITE_FILE = "queue.sqlite3"


def store_options(settings: Settings) -> dict[str, Any]:
    """The chosen backend's options; the sqlite file defaults to one in the data directory."""
    options = dict(settings.queue_options.get(settings.queue_type) or {})
    if settings.queue_type == "sqlite" and not options.get("path"):
        options["path"] = os.path.join(settings.data_dir, SQLITE_FILE)
    return options


def build_store(settings: Settings, reactor: Any) -> StoreRunner | None:
    if settings.queue_type == "memory":
        return None
    options = store_options(settings)
    if settings.queue_type == "sqlite":
        os.makedirs(os.path.dirname(os.path.abspath(options["path"])), mode=0o750, exist_ok=True)
    return StoreRunner(create_store(settings.queue_type, **options), reactor)


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
