"""The reactor's side of a durable store: group commit on a thread of its own, and reconnection.

Everything the scheduler asks during one reactor turn (jobs to add, rows to delete, bury or revive) is
collected and handed to the store's thread as one batch; while a batch is being written the next one
grows, so under load a transaction carries many jobs. Only one batch is in flight, so operations reach
the database in the order they were asked.

When the store fails, the batch's new jobs are refused (their clients get an ERROR, never a false
JOB_CREATED), the store is marked down (admin `show store`, logs, metrics), new background submissions
are refused at once, and a reconnect loop with exponential back-off runs until the store answers again.
Deletes, buries and revives of a failed batch are kept and written after the reconnect.

A batch refused for a job id that is stored already (StoreConflict: with one server per queue it cannot
happen, short of a row written by hand) refuses that batch's jobs only: the store works, so it stays up and
the batch's other changes go out with the next one.

A store that finds its queue held by another server (QueueHeld, when the reconnect claims it again or the
claim's renewal finds another owner) stays down until the server restarts, so two servers never write one
queue: the other one has replayed this one's jobs by then. Backends whose claim expires unless renewed
(redis, memcached) get their ``keep_alive`` called every ``keep_alive_interval`` seconds.

A failed batch never deletes the rows of its new jobs afterwards: nothing in a row says who wrote it (two
servers on one host hand out the same handles and ids), so a row with one of those ids may be another
writer's acknowledged job — the very row that made the insert fail. A failure before the commit leaves
nothing behind anyway; only a connection lost during the COMMIT itself (a network database) leaves the
outcome unknown, and then a row that did get in is replayed at the next start: at least once, never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gearman_gateway.stores.base import QueueHeld, Store, StoreConflict, StoredJob, StoreError
from gearman_gateway.turns import end_of_turn

log = logging.getLogger("gearman_gateway.store")

#: Called once per add: None (committed), a StoreError, or another answer of the backend (HandedOff).
AddCallback = Callable[[Exception | None], None]

#: Shortest time between the starts of two commits: batches that would be tiny are given this long to grow.
MIN_COMMIT_INTERVAL = 0.005

#: Reconnect back-off: the first retry after RETRY_MIN seconds, doubling up to RETRY_MAX.
RETRY_MIN = 0.05
RETRY_MAX = 5.0


@dataclass
class _Batch:
    """New rows, and the last state asked for each existing row (remove, bury or revive): a row buried
    and revived in one batch must end revived, whatever order the backend applies kinds of change in."""

    adds: list[tuple[StoredJob, AddCallback]] = field(default_factory=list)
    marks: dict[int, tuple[str, str]] = field(default_factory=dict)  # job id -> (what, reason)
    #: The adds are committed although a later step failed (a backend without one-transaction ``write``).
    added: bool = False

    def __bool__(self) -> bool:
        return bool(self.adds or self.marks)

    def mark(self, job_id: int, what: str, reason: str = "") -> None:
        self.marks.pop(job_id, None)  # re-insert: dict order is the order of last requests
        self.marks[job_id] = (what, reason)

    def earlier(self, older: dict[int, tuple[str, str]]) -> None:
        """Put the marks of an older, failed batch before this one's (newer marks win)."""
        self.marks = {**older, **self.marks}

    def ids(self, what: str) -> list[int]:
        return [job_id for job_id, (kind, _) in self.marks.items() if kind == what]

    def buries(self) -> list[tuple[int, str]]:
        return [(job_id, reason) for job_id, (kind, reason) in self.marks.items() if kind == "bury"]


class StoreRunner:
    shares_uniques = False  # the DurableStore protocol: foreground uniques are no business of one server's store

    def __init__(self, backend: Store, reactor: Any) -> None:
        self.backend = backend
        self.reactor = reactor
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-{backend.name}")
        self._at_end_of_turn = end_of_turn(reactor)
        self._pending = _Batch()
        self._scheduled = False
        self._in_flight = False
        self._writing: _Batch | None = None  # the batch in flight, for ``unwritten``
        self.available = False
        self.last_error = ""
        self.down_since: float | None = None
        self._retry_delay = RETRY_MIN
        self._reconnecting = False
        self._closed = False
        #: Another server holds the queue: down for good (see the module's docstring).
        self.lost = False
        self._timers: dict[str, Any] = {}  # "reconnect", "keep_alive" -> the reactor's pending call
        self._last_commit_start = 0.0
        # figures for admin and metrics
        self.commits = 0
        self.rows_added = 0
        self.rows_removed = 0
        self.last_commit_seconds = 0.0
        self.commit_seconds_total = 0.0

    @property
    def name(self) -> str:
        return self.backend.name

    # -- start-up (before the reactor runs: plain blocking calls)

    def open(self) -> None:
        self.backend.open()
        self.available = True
        self._keep_alive_later()

    def load(self) -> list[StoredJob]:
        return self.backend.load()

    # -- the scheduler's calls

    def add(self, row: StoredJob, callback: AddCallback) -> None:
        """Make ``row`` durable; ``callback(None)`` once committed, ``callback(error)`` if not."""
        if not self.available:
            callback(StoreError(self.last_error or f"{self.name} store is unavailable"))
            return
        self._pending.adds.append((row, callback))
        self._schedule()

    def remove(self, job_id: int) -> None:
        self._pending.mark(job_id, "remove")
        self._schedule()

    def bury(self, job_id: int, reason: str) -> None:
        self._pending.mark(job_id, "bury", reason)
        self._schedule()

    def revive(self, job_id: int) -> None:
        self._pending.mark(job_id, "revive")
        self._schedule()

    # -- batching

    def _schedule(self) -> None:
        if not self._scheduled and not self._in_flight and self.available:
            self._scheduled = True
            wait = self._last_commit_start + MIN_COMMIT_INTERVAL - time.monotonic()
            if wait > 0:
                # under load, let the batch grow a little: fewer, larger transactions cost far less
                # (each one is a round of thread hand-offs and a commit) for at most this much latency
                self.reactor.callLater(wait, self._flush)
            else:
                self._at_end_of_turn(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight or not self._pending or not self.available or self._closed:
            return
        batch, self._pending = self._pending, _Batch()
        self._in_flight = True
        self._writing = batch
        started = self._last_commit_start = time.monotonic()
        future = self._thread.submit(self._write, batch)
        future.add_done_callback(lambda f: self.reactor.callFromThread(self._written, batch, f, started))

    def _write(self, batch: _Batch) -> dict[int, Exception] | None:
        """On the store's thread: one transaction for the whole batch where the backend can (SQL), else
        one per kind of change. A backend's ``write`` may answer some adds otherwise than with success: job id
        -> what their callbacks get (shared mode's HandedOff)."""
        backend = self.backend
        adds = [row for row, _ in batch.adds]
        removes, buries, revives = batch.ids("remove"), batch.buries(), batch.ids("revive")
        write_all = getattr(backend, "write", None)
        if write_all is not None:
            return write_all(adds, removes, buries, revives)
        if adds:
            backend.add(adds)
            batch.added = True  # read on the reactor thread once the future is done
        if removes:
            backend.remove(removes)
        for job_id, reason in buries:
            backend.bury([job_id], reason)
        if revives:
            backend.revive(revives)
        return None

    def _written(self, batch: _Batch, future: Future, started: float) -> None:
        self._in_flight = False
        self._writing = None
        error = future.exception()
        if error is None:
            elapsed = time.monotonic() - started
            self.commits += 1
            self.last_commit_seconds = elapsed
            self.commit_seconds_total += elapsed
            self.rows_added += len(batch.adds)
            self.rows_removed += len(batch.ids("remove"))
            if self.down_since is not None:
                log.warning("%s store is back after %.1fs", self.name, time.time() - self.down_since)
                self.down_since = None
                self.last_error = ""
            self._retry_delay = RETRY_MIN  # only a real commit proves the store works again
            outcomes = future.result()
            if outcomes:
                for row, callback in batch.adds:
                    self._answer([(row, callback)], outcomes.get(row.job_id))
            else:
                self._answer(batch.adds, None)
        elif isinstance(error, StoreConflict) and not batch.added:
            # nothing of the batch is kept (one transaction, or a non-transactional store that undid its adds)
            log.error("%s; its %d jobs are refused, the store stays up", error, len(batch.adds))
            self._pending.earlier(batch.marks)
            self._answer(batch.adds, error)
        else:
            store_error = error if isinstance(error, StoreError) else StoreError(f"{self.name} store: {error}")
            self._went_down(store_error)
            # changes to rows that exist are kept for after the reconnect; the refused jobs' ids are not
            # touched (see the module's docstring)
            self._pending.earlier(batch.marks)
            if batch.added:  # in the store: acknowledge them, only the changes are retried
                self.rows_added += len(batch.adds)
                self._answer(batch.adds, None)
            else:
                self._answer(batch.adds, store_error)
        if self._pending:
            self._schedule()

    def _answer(self, adds: list[tuple[StoredJob, AddCallback]], error: Exception | None) -> None:
        for _, callback in adds:
            try:
                callback(error)
            except Exception:  # one submitter's failure must not leave the others unanswered
                log.exception("answering a submit after the store's commit failed")

    # -- outage and recovery

    def _went_down(self, error: StoreError) -> None:
        if isinstance(error, QueueHeld):
            self._give_up(error)
        self.last_error = str(error)
        if self.available:
            self.available = False
            if self.down_since is None:
                self.down_since = time.time()
                if not self.lost:
                    log.error(
                        "%s store unavailable: %s; background jobs are refused until it is back", self.name, error
                    )
        adds, self._pending.adds = self._pending.adds, []  # never sent to the store: nothing to undo
        self._answer(adds, error)
        self._reconnect_later()

    def _give_up(self, error: QueueHeld) -> None:
        """Another server holds the queue: never write it again in this process (see the module's docstring)."""
        if not self.lost:
            self.lost = True
            log.error(
                "%s; this server no longer writes its queue: background jobs are refused until it is restarted",
                error,
            )

    def _reconnect_later(self) -> None:
        if self._reconnecting or self._closed or self.lost:
            return
        self._reconnecting = True
        self._timers["reconnect"] = self.reactor.callLater(self._retry_delay, self._reconnect)
        self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)

    def _reconnect(self) -> None:
        self._timers.pop("reconnect", None)
        if self._closed:
            return
        # open() drops the old connection itself; close() would also give up what the store holds for
        # the process's life (the sqlite file's lock, the claim of the queue)
        future = self._thread.submit(self.backend.open)
        future.add_done_callback(lambda f: self.reactor.callFromThread(self._reconnected, f))

    def unwritten(self) -> list[int]:
        """The ids of rows with a delete, bury or revive not yet committed (pending, in flight, or kept from a
        failed batch): a shared store keeps their leases, or another server would run a finished job again."""
        writing = self._writing.marks if self._writing is not None else {}
        return [*writing, *self._pending.marks]

    def retry_now(self) -> None:
        """The database answers again (another connection to it works): reconnect now instead of at the end of
        the back-off, so submits are refused no longer than needed."""
        call = self._timers.get("reconnect")
        if call is not None and call.active():
            call.reset(0)

    def _reconnected(self, future: Future) -> None:
        self._reconnecting = False
        if self._closed:
            return
        error = future.exception()
        if error is not None:
            self.last_error = str(error)
            if isinstance(error, QueueHeld):
                self._give_up(error)
            self._reconnect_later()
            return
        log.info("%s store: reconnected; the next commit shows whether it is back", self.name)
        self.available = True
        self._schedule()

    # -- the claim's renewal (backends whose claim expires)

    def _keep_alive_later(self) -> None:
        interval = getattr(self.backend, "keep_alive_interval", None)
        if interval and not self._closed and not self.lost and "keep_alive" not in self._timers:
            self._timers["keep_alive"] = self.reactor.callLater(interval, self._keep_alive)

    def _keep_alive(self) -> None:
        self._timers.pop("keep_alive", None)
        if self._closed:
            return
        if not self.available:  # the reconnect claims the queue again
            self._keep_alive_later()
            return
        future = self._thread.submit(self.backend.keep_alive)  # type: ignore[attr-defined]
        future.add_done_callback(lambda f: self.reactor.callFromThread(self._kept_alive, f))

    def _kept_alive(self, future: Future) -> None:
        if self._closed:
            return
        error = future.exception()
        if error is not None and self.available:
            self._went_down(error if isinstance(error, StoreError) else StoreError(f"{self.name} store: {error}"))
        self._keep_alive_later()

    # -- shutdown

    def close(self, timeout: float = 10.0) -> None:
        """Write what is pending (completed jobs' deletes above all) and stop the thread. Once: later
        submissions are refused."""
        if self._closed:
            return
        self._closed = True
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
        batch, self._pending = self._pending, _Batch()
        if batch and self.available:
            adds, batch.adds = batch.adds, []  # never sent to the store: nothing to undo
            self._answer(adds, StoreError("server is shutting down"))
            try:
                self._thread.submit(self._write, batch).result(timeout)
            except Exception as error:  # the store is going away with us; say what was not written
                log.error("%s store: last changes not written at shutdown: %s", self.name, error)
        self.available = False
        self.last_error = "the store is closed"
        self._thread.submit(self.backend.close)
        self._thread.shutdown(wait=True)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "state": "up" if self.available else "down",
            "down_since": self.down_since,
            "last_error": self.last_error,
            "commits": self.commits,
            "rows_added": self.rows_added,
            "rows_removed": self.rows_removed,
            "last_commit_seconds": self.last_commit_seconds,
            "commit_seconds_total": self.commit_seconds_total,
            "pending": len(self._pending.adds) + len(self._pending.marks),
        }
