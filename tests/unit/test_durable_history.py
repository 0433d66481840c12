"""The durable job history's parts: the retention's syntax, the settings it is refused with, and the
bounded writer on a real sqlite file (a locked file makes writes fail; the oldest unwritten go first)."""

from __future__ import annotations

import queue
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from gearman_gateway import monitoring
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


def test_a_locked_store_keeps_the_newest_unwritten_records_and_counts_the_drops(tmp_path: Path) -> None:
    clock = ThreadedClock()
    clock.advance(1_000_000)
    sched = Scheduler(clock, handle_prefix=b"H:t")
    history = History(size=2)
    sched.add_observer(history)
    path = tmp_path / "q.sqlite3"
    durable = build(history, SqliteStore(path, busy_timeout=0.05), "sqlite", 3600.0, buffer=5)
    sched.add_observer(durable)
    durable.writer.open()
    durable.start()
    worker = worker_for(sched, b"f")
    handles = []

    def run(count: int) -> None:
        for _ in range(count):
            job = sched.submit(b"f", b"x")
            handles.append(job.handle)
            clock.advance(0.1)
            sched.grab(worker)
            sched.work_complete(worker, job.handle, b"")

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
