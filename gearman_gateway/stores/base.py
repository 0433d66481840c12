"""The durable-store interface (DESIGN.md seam 3) that every backend implements.

Backends are plain blocking code: the server runs them on one thread of their own (never the reactor
thread) and batches calls, so one ``add`` call carries every background job submitted during a reactor
turn (group commit) and one ``remove`` call every job finished in it.

Rows keep gearmand's columns (unique_key, function_name, priority, data, when_to_run) and add our own
``job_id`` as the key (so jobs without a unique never overwrite each other, unlike gearmand's sqlite
queue), the job ``handle`` (status by handle keeps working across a restart) and ``dead`` (a dead-letter
row: the job failed for good and waits for an operator to requeue or delete it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class StoreError(Exception):
    """The store could not do what was asked (unreachable, locked, full, ...); the message says why."""


class QueueHeld(StoreError):
    """Another live server holds this queue (or took it over while this one was cut off from it): trying
    again does not help, and running on would make two servers replay and run the same jobs."""


class StoreConflict(StoreError):
    """A batch was refused whole because a row with one of its job ids exists: the store itself works, so
    this refuses that batch's jobs and is no outage."""


class HandedOff(Exception):
    """A store's answer to one add: the row is committed but the job is the cluster's, not this server's (no
    worker here can run it, or it coalesced with a job held elsewhere: ``handle`` is then that job's). The
    scheduler acknowledges it and keeps no copy. Not a StoreError: nothing failed."""

    def __init__(self, handle: bytes = b"") -> None:
        super().__init__("handed off to the cluster")
        self.handle = handle


@dataclass(slots=True)
class StoredJob:
    job_id: int
    handle: bytes
    function: bytes
    unique: bytes
    priority: int  # 0 high, 1 normal, 2 low (gearmand's numbers)
    data: bytes
    when: int = 0  # epoch seconds; 0 = run now
    dead: bool = False
    reason: str = ""  # why it is dead (empty for live jobs)


class Store(Protocol):
    name: str

    def open(self) -> None:
        """Connect, claim the queue for this server (QueueHeld if another one holds it) and create the table
        if missing. Raises StoreError; called again to reconnect, which keeps or takes the claim again."""

    def close(self) -> None:
        """Release the connection and the claim; safe to call when not open."""

    def add(self, jobs: list[StoredJob]) -> None:
        """Insert these rows in ONE transaction: all are durable when it returns, or StoreError
        (StoreConflict when one of the ids is stored already: nothing of the batch is then kept)."""

    def remove(self, job_ids: list[int]) -> None:
        """Delete these rows (live or dead) in one transaction; unknown ids are ignored."""

    def bury(self, job_ids: list[int], reason: str) -> None:
        """Mark these rows dead (dead-letter list) with a reason, in one transaction."""

    def revive(self, job_ids: list[int]) -> None:
        """Mark these dead rows live again (an operator requeued them)."""

    # Optional: ``write(adds, removes, buries, revives)`` applies a whole group commit in ONE transaction;
    # the runner uses it when a backend has it (the SQL ones), else the calls above one by one.
    # Optional: ``keep_alive()`` every ``keep_alive_interval`` seconds renews a claim that expires unless
    # renewed (redis, memcached); QueueHeld when another server has taken the queue over.

    def load(self) -> list[StoredJob]:
        """Every row, live and dead, in insertion order: the start-up replay."""

    def import_gearmand(self, table: str) -> list[StoredJob]:
        """Rows of a queue table in gearmand's own layout for this backend (job_id and handle are 0/b"";
        the caller assigns them and adds the jobs to our table). The source table is left untouched."""
