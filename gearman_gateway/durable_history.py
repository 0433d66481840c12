"""Durable job history (``monitoring.history.durable``): finished jobs written to the configured store,
kept for ``retention``, read when the in-memory ring cannot answer.

Off the job path: ``DurableHistory`` is a lazy observer, so the scheduler only records each end in its
ring as before; once a second (or when the ring is about to overwrite ends it has not heard) it takes
the new ends, and a thread of its own writes them in one transaction, one batch in flight at a time.
Unwritten records are bounded (``buffer``): when the store is slow or down the oldest go first, each one
counted (``dropped``) and logged once per outage. Rows older than the retention are deleted every
``prune_interval`` seconds on the same thread.

Reads (admin `show history`, GET /_gearman/history) take the ring first; only when it holds fewer jobs
than asked for (or not all of the asked time range) the older ones come from the table, on a read
connection of the reactor's, bounded by a short statement timeout (sqlite reads never wait for the
writer in WAL mode).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service

from gearman_gateway.history import HistoryEntry, pick
from gearman_gateway.history_table import HistoryTable
from gearman_gateway.scheduler.listener import JobObserver
from gearman_gateway.stores.base import StoreError
from gearman_gateway.stores.sql import one_line

if TYPE_CHECKING:
    from gearman_gateway.history import History
    from gearman_gateway.scheduler.listener import Ended

log = logging.getLogger("gearman_gateway.history")

#: Unwritten records kept at most by default.
BUFFER = 10000
#: Records written in one transaction at most; a bigger backlog goes in several, one after the other.
MAX_BATCH = 2000
#: Seconds between two batches.
FLUSH_INTERVAL = 1.0
#: Seconds a read from the table may take (PostgreSQL's statement timeout on the read connection).
READ_TIMEOUT = 2.0


class DurableHistory(JobObserver):
    """Collects the ends for the table (module docstring); ``entries`` answers from the ring and the table."""

    lazy = True

    def __init__(
        self, history: History, writer: HistoryTable, reader: HistoryTable, retention: float, buffer: int = BUFFER
    ) -> None:
        self.history = history
        self.writer = writer
        self.reader = reader
        self.retention = retention
        self.buffer = buffer
        self.pending: deque[tuple[Any, ...]] = deque()  # HistoryEntry's fields, oldest first
        self.written = 0
        self.dropped = 0
        self.pruned = 0
        self.failing = False  # the last write failed (logged once until one succeeds)
        self._dropping = False  # records were dropped since the last write that succeeded (logged once)
        self._observing: Any = None
        self._in_flight = False
        self._executor: ThreadPoolExecutor | None = None
        self._reactor: Any = None

    def stats(self) -> dict[str, Any]:
        """For admin `show store` and the metrics."""
        return {
            "history_table": self.writer.table,
            "history_retention_seconds": self.retention,
            "history_written": self.written,
            "history_dropped": self.dropped,
            "history_pruned": self.pruned,
            "history_pending": len(self.pending),
        }

    # -- collecting (reactor thread)

    def attached(self, observing: Any) -> None:
        self._observing = observing

    def jobs_finished(self, ended: list[Ended]) -> None:
        self.pending.extend(self.history.rows(ended))  # plain tuples: the cheapest to build, and the rows
        self._trim()

    def _trim(self) -> None:
        over = len(self.pending) - self.buffer
        if over > 0:
            for _ in range(over):
                self.pending.popleft()
            if not self._dropping:  # once per outage; the count is in `show store` and the metrics
                log.warning("durable history: %d unwritten records kept at most, the oldest dropped", self.buffer)
            self._dropping = True
            self.dropped += over

    # -- writing (a thread of its own, one batch in flight)

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gg-history")

    def flush(self, reactor: Any) -> None:
        """Hear the new ends and hand what waits to the thread (unless a batch is in flight), at most
        MAX_BATCH records a transaction."""
        self._reactor = reactor
        if self._observing is not None:
            self._observing.tell(self)
        if self._in_flight or not self.pending or self._executor is None:
            return
        pending = self.pending
        if len(pending) <= MAX_BATCH:
            batch = list(pending)
            pending.clear()
        else:  # a short transaction: the queue's own commits share the store (sqlite: one writer at a time)
            batch = [pending.popleft() for _ in range(MAX_BATCH)]
        self._in_flight = True
        future = self._executor.submit(self.writer.write, batch)
        future.add_done_callback(lambda f: reactor.callFromThread(self._written, batch, f))

    def _written(self, batch: list[tuple[Any, ...]], future: Future) -> None:
        self._in_flight = False
        error = future.exception()
        if error is None:
            self.written += len(batch)
            if self.failing:
                log.warning("durable history: %s writes again (%d dropped so far)", self.writer.where, self.dropped)
            self.failing = self._dropping = False
            if len(self.pending) >= MAX_BATCH:  # a backlog: the next batch now, not in a second
                self.flush(self._reactor)
            return
        if not self.failing:
            log.error("durable history: cannot write to %s: %s (records wait, bounded)", self.writer.where, error)
        self.failing = True
        self.pending.extendleft(reversed(batch))  # older than what came meanwhile: back in front
        self._trim()

    def prune(self, reactor: Any) -> None:
        if self._executor is None:
            return
        before = time.time() - self.retention
        future = self._executor.submit(self.writer.prune, before)
        future.add_done_callback(lambda f: reactor.callFromThread(self._pruned, f))

    def _pruned(self, future: Future) -> None:
        error = future.exception()
        if error is not None:
            log.warning("durable history: pruning %s failed: %s", self.writer.where, error)
            return
        count = future.result()
        self.pruned += count
        if count:
            log.info("durable history: %d records older than the retention deleted", count)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is left (at the server's stop), then close."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if self._observing is not None:
            self._observing.tell(self)
        batch = list(self.pending)
        self.pending.clear()
        if batch:
            try:
                executor.submit(self.writer.write, batch).result(timeout)
                self.written += len(batch)
            except Exception as error:
                log.error("durable history: %d records not written at stop: %s", len(batch), error)
        executor.submit(self.writer.close).result(timeout)
        executor.shutdown(wait=False)
        self.reader.close()

    # -- reading (reactor thread)

    def entries(
        self,
        function: bytes | None = None,
        outcome: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> tuple[list[HistoryEntry], str]:
        """Newest first, and which source answered: ``memory``, or ``memory+store`` when the ring held
        fewer than asked (or not the whole range since ``since``) and older jobs came from the table."""
        history = self.history
        if self._observing is not None:
            self._observing.tell(self)  # the ends the ring's view has let go of but the table does not have yet
        found = history.entries(function, outcome, since, limit)
        if limit is not None and len(found) >= limit:
            return found, "memory"
        oldest = None
        for oldest_entry in history:
            oldest = oldest_entry.finished
        if since is not None and oldest is not None and oldest < since and len(history) == history.size:
            return found, "memory"  # the ring reaches back past ``since``
        # what the ring no longer holds: unwritten records first, then the table
        before = oldest
        left = None if limit is None else limit - len(found)
        newest_first = map(HistoryEntry._make, reversed(self.pending))
        unwritten = (e for e in newest_first if before is None or e.finished < before)
        older = pick(unwritten, function, outcome, since, left)
        found += older
        if limit is not None and len(found) >= limit:
            return found, "memory"
        if older:
            before = older[-1].finished
        try:
            rest = self.reader.entries(function, outcome, since, before, None if limit is None else limit - len(found))
        except Exception as error:
            log.warning("durable history: cannot read %s: %s", self.reader.where, error)
            return found, "memory (store unreadable)"
        return found + rest, "memory+store"


class DurableHistoryService(Service):
    """The table made at start, the flush and prune timers while running, the last records written at stop."""

    name = "durable history"

    def __init__(self, durable: DurableHistory, reactor: Any) -> None:
        self.durable = durable
        self.reactor = reactor
        self._calls: list[Any] = []

    def startService(self) -> None:  # noqa: N802
        from twisted.internet.task import LoopingCall

        durable = self.durable
        try:
            durable.writer.open()
            durable.reader.open(statement_timeout=READ_TIMEOUT)
        except Exception as error:  # a driver's error: say which table and setting, on one line
            durable.writer.close()
            raise StoreError(
                f"durable history (monitoring.history.durable): cannot open {durable.writer.where}: {one_line(error)}"
            ) from None
        durable.start()
        log.log(
            25,
            "durable history in %s, kept %s seconds (%d unwritten at most)",
            durable.writer.where,
            f"{durable.retention:g}",
            durable.buffer,
        )
        prune_every = min(3600.0, max(0.5, durable.retention / 4))
        for call, every in ((durable.flush, FLUSH_INTERVAL), (durable.prune, prune_every)):
            loop = LoopingCall(call, self.reactor)
            loop.clock = self.reactor
            loop.start(every, now=call is durable.prune)
            self._calls.append(loop)
        super().startService()

    def stopService(self) -> None:  # noqa: N802
        for loop in self._calls:
            if loop.running:
                loop.stop()
        self._calls.clear()
        self.durable.stop()
        return super().stopService()


def build(history: History, store: Any, kind: str, retention: float, buffer: int) -> DurableHistory:
    return DurableHistory(history, HistoryTable(store, kind), HistoryTable(store, kind), retention, buffer)
