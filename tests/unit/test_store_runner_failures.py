"""The store runner when a batch fails (issue 13): it never deletes a row it did not write, whatever made the
batch fail, acknowledges jobs a non-transactional store did keep, refuses only the batch of a duplicate id,
and schedules nothing after its close. A real runner on a reactor of its own,
with a real sqlite file and a real Redis server (tests/dbfixtures.py)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from gearman_gateway.reactor import GatewayReactor
from gearman_gateway.stores import StoreConflict, StoredJob, StoreError, create_store
from gearman_gateway.stores.runner import RETRY_MIN, StoreRunner

TABLE = "gearman_gateway_queue"
WAIT = 10.0


def job(job_id: int, function: bytes = b"ours", data: bytes = b"") -> StoredJob:
    return StoredJob(job_id, b"H:test:%d" % job_id, function, b"", 1, data or b"ours %d" % job_id)


def theirs(path: Path, *job_ids: int, lock: bool = False) -> sqlite3.Connection:
    """Rows another writer committed to the file with these ids; with ``lock``, it then keeps the
    file's write lock (the connection is returned: roll back or close it to let go)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    for job_id in job_ids:
        conn.execute(
            f"INSERT INTO {TABLE} VALUES (?, ?, x'', x'746865697273', 1, ?, 0, 0, '')",  # function b"theirs"
            (job_id, b"H:other:%d" % job_id, b"acknowledged %d" % job_id),
        )
    conn.execute("COMMIT")
    if lock:
        conn.execute("BEGIN IMMEDIATE")
    return conn


def rows(path: Path) -> list[tuple[int, str, bytes]]:
    with closing(sqlite3.connect(path)) as conn:
        found = conn.execute(f"SELECT job_id, function_name, data FROM {TABLE} ORDER BY job_id").fetchall()
    return [(job_id, bytes(function).decode(), bytes(data)) for job_id, function, data in found]


@pytest.fixture
def reactor() -> GatewayReactor:
    """A reactor of the test's own (not installed): started by ``drive`` and stopped at its end."""
    return GatewayReactor()


def drive(reactor: GatewayReactor, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run the reactor until ``scenario`` is done; re-raise what it raised; fail after WAIT seconds."""
    failures: list[Any] = []

    def start() -> None:
        running = defer.ensureDeferred(scenario())
        running.addErrback(failures.append)
        running.addBoth(lambda _: reactor.stop())

    def too_long() -> None:
        failures.append(TimeoutError(f"the scenario took more than {WAIT}s"))
        reactor.stop()

    reactor.callWhenRunning(start)
    timer = reactor.callLater(WAIT, too_long)
    reactor.run(installSignalHandlers=False)
    if timer.active():
        timer.cancel()
    if failures:
        failure = failures[0]
        if isinstance(failure, Failure):
            failure.raiseException()
        raise failure


def added(runner: StoreRunner, row: StoredJob) -> defer.Deferred:
    """Fires with what the runner answers for this job: None once committed, else the StoreError."""
    answer: defer.Deferred = defer.Deferred()
    runner.add(row, answer.callback)
    return answer


async def until(reactor: GatewayReactor, condition: Callable[[], bool]) -> None:
    while not condition():
        await task.deferLater(reactor, 0.005, lambda: None)


@pytest.fixture
def sqlite_runner(reactor: GatewayReactor, tmp_path: Path) -> Iterator[tuple[StoreRunner, Path]]:
    path = tmp_path / "queue.db"
    runner = StoreRunner(create_store("sqlite", path=str(path), busy_timeout=0.3), reactor)
    runner.open()  # creates the table
    yield runner, path
    runner.close()


def test_a_batch_refused_for_an_existing_row_never_deletes_that_row(reactor, sqlite_runner) -> None:
    runner, path = sqlite_runner
    theirs(path, 1).close()

    async def scenario() -> None:
        refused = await added(runner, job(1))  # the id collides with their acknowledged job
        assert isinstance(refused, StoreError) and "UNIQUE" in str(refused)
        await until(reactor, lambda: runner.available)  # reconnected: the old runner deleted "its" rows here
        assert await added(runner, job(2)) is None  # committed with whatever was pending

    drive(reactor, scenario)
    assert rows(path) == [(1, "theirs", b"acknowledged 1"), (2, "ours", b"ours 2")]


def test_jobs_refused_while_the_store_goes_down_never_delete_rows_with_their_ids(reactor, sqlite_runner) -> None:
    """Job 2 waits while job 1's batch is held up by another writer's lock; that batch fails, so job 2 is
    refused without ever reaching the store: its id is another writer's row, which must stay."""
    runner, path = sqlite_runner
    other = theirs(path, 2, lock=True)

    async def scenario() -> None:
        first = added(runner, job(1))
        await until(reactor, lambda: runner.describe()["pending"] == 0)  # job 1's batch is being written
        second = added(runner, job(2))
        assert isinstance(await first, StoreError)  # database is locked (busy_timeout)
        assert isinstance(await second, StoreError)
        other.execute("ROLLBACK")
        await until(reactor, lambda: runner.available)
        assert await added(runner, job(3)) is None

    try:
        drive(reactor, scenario)
    finally:
        other.close()
    assert rows(path) == [(2, "theirs", b"acknowledged 2"), (3, "ours", b"ours 3")]


def test_jobs_refused_at_shutdown_never_delete_rows_with_their_ids(reactor, sqlite_runner) -> None:
    runner, path = sqlite_runner
    theirs(path, 1).close()
    answers: list[StoreError | None] = []
    runner.add(job(1), answers.append)  # pending, never written: the server stops first
    runner.remove(7)  # a finished job's delete is still written at shutdown
    runner.close()
    assert len(answers) == 1 and isinstance(answers[0], StoreError)
    assert rows(path) == [(1, "theirs", b"acknowledged 1")]


def test_a_redis_batch_whose_jobs_were_stored_acknowledges_them_when_a_later_change_fails(
    reactor, redis_server
) -> None:
    """Redis writes a batch's adds and its deletes in separate transactions. A user that may not DEL: the
    adds are stored, the delete fails; the stored jobs are acknowledged (the old runner refused them and
    then deleted their rows), the delete waits for the reconnect."""
    admin = redis_server.connect()
    user, prefix = f"nodel_{uuid.uuid4().hex[:8]}", f"q_{uuid.uuid4().hex[:8]}:"
    admin.acl_setuser(user, enabled=True, passwords=["+secret"], keys=["*"], commands=["+@all", "-del", "-unlink"])
    options = redis_server.store_options(prefix=prefix, username=user, password="secret")
    runner = StoreRunner(create_store("redis", **options), reactor)
    runner.open()

    async def scenario() -> None:
        assert await added(runner, job(1)) is None
        second = added(runner, job(2))
        runner.remove(1)  # same turn, same batch: job 1 finished
        assert await second is None
        assert not runner.available  # the delete failed: the store is down until it works again

    try:
        drive(reactor, scenario)
    finally:
        runner.close()
        admin.acl_deluser(user)
    reader = create_store("redis", **redis_server.store_options(prefix=prefix))
    reader.open()
    try:
        assert [row.job_id for row in reader.load()] == [1, 2]
    finally:
        reader.remove([1, 2])
        reader.close()
        admin.close()


def test_a_batch_refused_for_a_stored_job_id_refuses_only_that_batch(reactor, sqlite_runner, caplog) -> None:
    """A duplicate id (another writer's row: impossible with one server per queue, short of a row written by
    hand) is that batch's problem, not an outage: the store stays up, and the batch's other changes (here a
    finished job's delete) go out with the next one."""
    runner, path = sqlite_runner
    theirs(path, 1).close()

    async def scenario() -> None:
        assert await added(runner, job(5)) is None
        refused = added(runner, job(1))
        runner.remove(5)  # same turn, same batch
        error = await refused
        assert isinstance(error, StoreConflict) and "UNIQUE" in str(error)
        assert runner.available  # not down, no reconnect: the old runner refused every submit here
        assert await added(runner, job(2)) is None

    with caplog.at_level("WARNING", logger="gearman_gateway.store"):
        drive(reactor, scenario)
    assert rows(path) == [(1, "theirs", b"acknowledged 1"), (2, "ours", b"ours 2")]
    assert not any("unavailable" in record.getMessage() for record in caplog.records)
    assert any("its 1 jobs are refused, the store stays up" in record.getMessage() for record in caplog.records)


def test_closing_while_a_reconnect_is_pending_leaves_nothing_to_fire(reactor, sqlite_runner) -> None:
    """The reconnect scheduled when the store went down must not run after close(): it used to raise
    "cannot schedule new futures after shutdown" on the reactor."""
    runner, path = sqlite_runner
    other = theirs(path, lock=True)  # the file's write lock: the next commit fails (busy_timeout 0.3 s)
    failures: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            failures.append(event)

    async def scenario() -> None:
        assert isinstance(await added(runner, job(1)), StoreError)
        assert not runner.available  # down: a reconnect is due in RETRY_MIN seconds
        runner.close()
        await task.deferLater(reactor, RETRY_MIN * 4, lambda: None)  # past the time it was due

    globalLogPublisher.addObserver(observe)
    try:
        drive(reactor, scenario)
    finally:
        globalLogPublisher.removeObserver(observe)
        other.close()
    assert failures == [], [event["log_failure"].getTraceback() for event in failures]


def test_a_delete_not_yet_written_is_unwritten_until_it_is(reactor, sqlite_runner) -> None:
    """Shared mode renews the leases of the rows listed by ``unwritten()`` (a finished job whose delete waits for
    the store to come back must not be taken over and run again): a delete is listed while in flight and while
    kept from a failed batch, and no longer once committed."""
    runner, path = sqlite_runner

    async def scenario() -> None:
        assert await added(runner, job(1)) is None
        other = theirs(path, lock=True)  # the next commit fails (busy_timeout 0.3 s)
        try:
            runner.remove(1)
            assert runner.unwritten() == [1]  # pending
            await until(reactor, lambda: runner.describe()["pending"] == 0)
            assert runner.unwritten() == [1]  # in flight
            await until(reactor, lambda: not runner.available)
            assert runner.unwritten() == [1]  # kept for after the reconnect
        finally:
            other.close()
        await until(reactor, lambda: runner.available and not runner.unwritten())

    drive(reactor, scenario)
    assert rows(path) == []
