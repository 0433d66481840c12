"""The durable job history's parts: the retention's syntax, the settings it is refused with, and the
bounded writer on a real sqlite file (a locked file makes writes fail; the oldest unwritten go first)."""

from __future__ import annotations

import queue
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from gearman_gateway import durable_history, monitoring
from gearman_gateway.durable_history import build
from gearman_gateway.history import History
from gearman_gateway.history_table import parse_retention
from gearman_gateway.scheduler import Scheduler
from gearman_gateway.stores.sqlite import SqliteStore
from tests.unit.test_job_observer import worker_for


@pytest.mark.parametrize(
    ("text", "seconds"), [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0), ("45s", 45.0), ("2w", 1209600.0)]
)
def test_retention_units(text: str, seconds: float) -> None:
    assert parse_retention(text) == seconds
    assert parse_retention(90) == 90.0 and parse_retention("1.5") == 1.5


@pytest.mark.parametrize("bad", ["", "7x", "-1d", "0", 0, True, "d"])
def test_bad_retention_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_retention(bad)
    with pytest.raises(monitoring.MonitoringError, match="monitoring.history.retention must be a time"):
        monitoring.validate({"history": {"enabled": True, "durable": True, "retention": bad}})


def test_durable_needs_the_history_and_a_store_that_holds_it() -> None:
    with pytest.raises(monitoring.MonitoringError, match="needs monitoring.history.enabled: true"):
        monitoring.validate({"history": {"durable": True}})
    with pytest.raises(monitoring.MonitoringError, match="buffer must be a whole number >= 1"):
        monitoring.validate({"history": {"enabled": True, "durable": True, "buffer": 0}})
    block = {"history": {"enabled": True, "durable": True, "retention": "1h"}}
    monitoring.validate(block)
    for kind in ("sqlite", "postgres", "mysql"):
        monitoring.check_durable_store(block, kind)
    for kind in ("memory", "redis", "memcached"):
        with pytest.raises(monitoring.MonitoringError, match=f"needs the sqlite, postgres or mysql queue, not {kind}"):
            monitoring.check_durable_store(block, kind)
    monitoring.check_durable_store({"history": {"enabled": True}}, "memory")  # not durable: any store


class ThreadedClock(Clock):
    """A fake clock that also takes the writer thread's answers (``callFromThread``), run by ``settle``."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: queue.Queue = queue.Queue()

    def callFromThread(self, f: Any, *args: Any) -> None:  # noqa: N802
        self.answers.put((f, args))

    def settle(self) -> None:
        f, args = self.answers.get(timeout=10)
        f(*args)


class Durable:
    """A scheduler with a history of 2 and a durable history on a real sqlite file, on a fake clock."""

    def __init__(self, path: Path, buffer: int = 5) -> None:
        self.clock = clock = ThreadedClock()
        clock.advance(1_000_000)
        self.sched = Scheduler(clock, handle_prefix=b"H:t")
        history = History(size=2)
        self.sched.add_observer(history)
        self.durable = build(history, SqliteStore(path, busy_timeout=0.05), "sqlite", 3600.0, buffer=buffer)
        self.sched.add_observer(self.durable)
        self.durable.writer.open()
        self.durable.start()
        self.worker = worker_for(self.sched, b"f")
        self.handles: list[bytes] = []

    def run(self, count: int) -> None:
        for _ in range(count):
            job = self.sched.submit(b"f", b"x")
            self.handles.append(job.handle)
            self.clock.advance(0.1)
            self.sched.grab(self.worker)
            self.sched.work_complete(self.worker, job.handle, b"")


def test_a_backlog_goes_in_short_transactions_one_after_the_other(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(durable_history, "MAX_BATCH", 2)
    d = Durable(tmp_path / "q.sqlite3", buffer=100)
    d.run(5)
    d.durable.flush(d.clock)
    d.clock.settle()  # 2 written; 3 left, so the next batch goes at once
    assert d.durable.written == 2 and len(d.durable.pending) == 1  # 2 more in flight
    d.clock.settle()
    assert d.durable.written == 4 and len(d.durable.pending) == 1 and d.clock.answers.empty()
    d.durable.flush(d.clock)  # the rest with the next tick
    d.clock.settle()
    assert d.durable.written == 5 and not d.durable.pending
    d.durable.stop()


def test_a_locked_store_keeps_the_newest_unwritten_records_and_counts_the_drops(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite3"
    d = Durable(path)
    clock, durable, run, handles = d.clock, d.durable, d.run, d.handles

    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the file: writes fail after busy_timeout
    run(3)
    durable.flush(clock)
    clock.settle()
    assert durable.failing and len(durable.pending) == 3 and durable.written == 0
    run(4)
    durable.flush(clock)  # 7 unwritten, 5 kept: the 2 oldest go
    assert durable.dropped == 2
    clock.settle()
    lock.execute("ROLLBACK")
    durable.flush(clock)
    clock.settle()
    assert not durable.failing and durable.written == 5 and not durable.pending
    entries, source = durable.entries(limit=10)
    assert source == "memory+store" and [e.handle for e in entries] == handles[:1:-1]
    assert durable.stats()["history_dropped"] == 2
    durable.stop()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM gearman_gateway_queue_history").fetchone()[0] == 5
    lock.close()
