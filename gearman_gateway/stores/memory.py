"""The in-memory store (gearmand's ``builtin``): nothing survives the process, by choice.

It keeps the same contract as the durable backends (atomic batches, duplicate job ids refused, insertion
order), so the scheduler and the tests can run against it without a database.
"""

from __future__ import annotations

from dataclasses import replace

from gearman_gateway.stores.base import StoreConflict, StoredJob


class MemoryStore:
    """Rows in a dict keyed by job id; a dict keeps insertion order, which is the replay order."""

    name = "memory"

    def __init__(self) -> None:
        self._rows: dict[int, StoredJob] = {}
        self.where = "memory store"

    def open(self) -> None:
        """Nothing to connect to; rows survive close/open (only the process ending loses them)."""

    def close(self) -> None:
        """Nothing to release."""

    def add(self, jobs: list[StoredJob]) -> None:
        """All or nothing, like a SQL transaction: a job id already stored refuses the whole batch."""
        batch: set[int] = set()
        for job in jobs:
            if job.job_id in self._rows or job.job_id in batch:
                raise StoreConflict(f"{self.where}: add of {len(jobs)} jobs failed: duplicate job id {job.job_id}")
            batch.add(job.job_id)
        for job in jobs:
            self._rows[job.job_id] = replace(job)  # a copy: the caller may reuse its object

    def remove(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            self._rows.pop(job_id, None)

    def bury(self, job_ids: list[int], reason: str) -> None:
        self._mark(job_ids, True, reason)

    def revive(self, job_ids: list[int]) -> None:
        self._mark(job_ids, False, "")

    def _mark(self, job_ids: list[int], dead: bool, reason: str) -> None:
        for job_id in job_ids:
            row = self._rows.get(job_id)
            if row is not None:
                row.dead = dead
                row.reason = reason

    def load(self) -> list[StoredJob]:
        return [replace(row) for row in self._rows.values()]

    def import_gearmand(self, table: str) -> list[StoredJob]:
        """gearmand's builtin queue keeps nothing, so there is never anything to import."""
        return []
