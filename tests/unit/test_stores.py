"""The durable stores against real servers (private PostgreSQL, MariaDB, Redis and memcached from
tests/dbfixtures.py): one contract suite for every backend, outages and crashes of the database, the import of
tables that gearmand wrote (reference §5.2, in its exact layout), and the time of a 1,000-job batch.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from gearman_gateway.stores import (
    BACKENDS,
    GEARMAND_TABLES,
    OPTIONS,
    Store,
    StoreConflict,
    StoredJob,
    StoreError,
    create_store,
)
from gearman_gateway.stores.memcached import parse_servers
from tests.dbfixtures import DbServer, MemcachedServer, free_port, start_memcached

KINDS = ["memory", "sqlite", "postgres", "mysql", "redis", "memcached"]
PERSISTENT = KINDS[1:]  # outside our process (memcached too, though it keeps nothing across its own restart)
SERVER_FIXTURES = {
    "postgres": "postgres_server",
    "mysql": "mariadb_server",
    "redis": "redis_server",
    "memcached": "memcached_server",
}
#: Stores that lose every job when their server restarts or crashes (the documented limit of memcached).
FORGETFUL = {"memcached"}
_names = itertools.count(1)


@dataclass
class Backend:
    """How to build stores of one kind that all use the same table (or key prefix) of one test."""

    kind: str
    options: dict[str, Any]
    server: DbServer | None = None
    opened: list[Store] = field(default_factory=list)

    def store(self, **extra: Any) -> Store:
        return create_store(self.kind, **{**self.options, **extra})

    def open(self, **extra: Any) -> Store:
        store = self.store(**extra)
        store.open()
        self.opened.append(store)
        return store


def make_backend(kind: str, request: pytest.FixtureRequest, tmp_path: Path, own_server: bool = False) -> Backend:
    """A Backend on a fresh table; the database server is the session's, or the test's own if asked."""
    name = f"q{os.getpid()}_{next(_names)}"
    if kind == "memory":
        return Backend(kind, {})
    if kind == "sqlite":
        return Backend(kind, {"path": str(tmp_path / "queue.db"), "table": name})
    server = request.getfixturevalue(SERVER_FIXTURES[kind] + ("_fn" if own_server else ""))
    naming = {"prefix": f"{name}:"} if kind in ("redis", "memcached") else {"table": name}
    return Backend(kind, server.store_options(**naming), server)


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = make_backend(request.param, request, tmp_path)
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture(params=PERSISTENT)
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A persistent backend on a server of the test's own (which it may stop or kill)."""
    b = make_backend(request.param, request, tmp_path, own_server=True)
    yield b
    for store in b.opened:
        store.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


def job(i: int, **fields: Any) -> StoredJob:
    values: dict[str, Any] = {
        "handle": b"H:test:%d" % i,
        "function": b"fn",
        "unique": b"u%d" % i,
        "priority": i % 3,
        "data": b"payload %d" % i,
    }
    values.update(fields)
    return StoredJob(job_id=i, **values)


def ids(jobs: list[StoredJob]) -> list[int]:
    return [j.job_id for j in jobs]


# -- the contract, for every backend


def test_open_creates_an_empty_queue_and_opening_again_is_harmless(store: Store) -> None:
    assert store.load() == []
    store.open()
    store.add([job(1)])
    store.open()
    assert ids(store.load()) == [1]


def test_rows_come_back_whole_in_insertion_order(store: Store) -> None:
    first = [job(1), job(2, priority=0), job(3, priority=2)]
    second = [job(4, when=1795343275), job(5, unique=b"", data=b"")]
    store.add(first)
    store.add(second)
    assert store.load() == first + second


def test_remove_bury_and_revive(store: Store) -> None:
    store.add([job(i) for i in range(1, 7)])
    store.remove([2, 4, 999])  # an unknown id is ignored
    store.bury([3, 5, 998], "worker said no")
    loaded = {j.job_id: j for j in store.load()}
    assert list(loaded) == [1, 3, 5, 6]
    assert (loaded[3].dead, loaded[3].reason) == (True, "worker said no")
    assert (loaded[1].dead, loaded[1].reason) == (False, "")
    store.revive([3, 997])
    loaded = {j.job_id: j for j in store.load()}
    assert (loaded[3].dead, loaded[3].reason, loaded[5].dead) == (False, "", True)
    store.remove([5])  # a dead row goes the same way
    for call in (store.add, store.remove, store.revive):
        call([])
    store.bury([], "nothing")
    assert ids(store.load()) == [1, 3, 6]


def test_a_thousand_jobs_half_without_unique_are_all_kept(store: Store) -> None:
    jobs = [job(i, unique=b"" if i % 2 else b"u%d" % i) for i in range(1, 1001)]
    store.add(jobs)
    assert store.load() == jobs  # gearmand's sqlite queue keeps 1 of the 500 without unique
    store.remove(ids(jobs))
    assert store.load() == []


def test_binary_values_round_trip(store: Store) -> None:
    weird = job(
        7,
        handle=b"H:\xfe\xff:7",
        function=bytes(range(1, 256)),  # every byte but NUL, the protocol's separator
        unique=b"\xff\x80\xc3(-\x01",  # not UTF-8
        data=bytes(range(256)) * 4,
        reason="",
    )
    store.add([weird])
    store.bury([7], "naïve ☃ reason")
    assert store.load() == [replace(weird, dead=True, reason="naïve ☃ reason")]


def test_a_failing_batch_leaves_nothing(store: Store) -> None:
    store.add([job(1), job(2), job(3)])
    with pytest.raises(StoreConflict, match="add of 3 jobs"):  # the batch's fault, not an outage of the store
        store.add([job(10), job(11), job(2, data=b"not mine")])  # 2 is taken: the whole batch is refused
    with pytest.raises(StoreError):
        store.add([job(20), job(20)])
    assert store.load() == [job(1), job(2), job(3)]  # the row that was there is untouched
    store.add([job(10), job(11)])  # the store is still usable
    assert ids(store.load()) == [1, 2, 3, 10, 11]


def test_a_new_store_on_the_same_table_sees_the_rows(durable: Backend) -> None:
    jobs = [job(1, dead=True, reason="x"), job(2, when=1795343275)]
    first = durable.open()
    first.add(jobs)
    first.close()
    assert durable.open().load() == jobs


def test_a_store_that_is_not_open_raises_store_error(durable: Backend) -> None:
    store = durable.store()
    for call in (lambda: store.add([job(1)]), lambda: store.remove([1]), store.load, lambda: store.bury([1], "r")):
        with pytest.raises(StoreError, match="not open"):
            call()
    store.close()  # closing a closed store is fine


def test_batch_add_of_1000_jobs_is_fast(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    store = backend.open()
    jobs = [job(i, data=b"x" * 100) for i in range(1, 1001)]
    started = time.perf_counter()
    store.add(jobs)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n  {backend.kind}: one add() of 1000 jobs in {elapsed * 1000:.1f} ms = {1000 / elapsed:,.0f} rows/s")
    assert elapsed < 5.0
    assert len(store.load()) == 1000


# -- the database in trouble


@contextmanager
def outage(backend: Backend) -> Iterator[None]:
    """The backend's database is out of reach inside the block (server stopped; for sqlite, the file is
    locked by another process) and back after it."""
    if backend.kind == "sqlite":
        with closing(sqlite3.connect(backend.options["path"], isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            yield
            other.execute("ROLLBACK")
    else:
        assert backend.server is not None
        backend.server.stop()
        yield
        backend.server.start()


def test_an_outage_gives_store_errors_and_reopen_works_after_it(durable: Backend) -> None:
    store = durable.open(**({"busy_timeout": 0.2} if durable.kind == "sqlite" else {}))
    store.add([job(1)])
    with outage(durable):
        with pytest.raises(StoreError, match=durable.kind) as failed:
            store.add([job(2)])
        print(failed.value)
        if durable.kind != "sqlite":  # sqlite opens a locked file fine; its writes fail
            with pytest.raises(StoreError, match="connect failed"):
                store.open()
    store.open()
    store.add([job(3)])
    assert ids(store.load()) == ([3] if durable.kind in FORGETFUL else [1, 3])


def unreachable(kind: str, tmp_path: Path) -> dict[str, Any]:
    closed = free_port()  # nothing listens there
    return {
        "sqlite": {"path": str(tmp_path / "no" / "such" / "dir" / "queue.db")},
        "postgres": {"conninfo": f"host=127.0.0.1 port={closed} user=postgres dbname=postgres"},
        "mysql": {"host": "127.0.0.1", "port": closed, "user": "root", "db": "test"},
        "redis": {"host": "127.0.0.1", "port": closed},
        "memcached": {"servers": f"127.0.0.1:{closed}"},
    }[kind]


@pytest.mark.parametrize("kind", PERSISTENT)
def test_an_unreachable_database_fails_at_once_with_a_readable_error(kind: str, tmp_path: Path) -> None:
    store = create_store(kind, **unreachable(kind, tmp_path))
    started = time.monotonic()
    with pytest.raises(StoreError, match=rf"^{kind} store .*connect failed: .+") as failed:
        store.open()
    assert time.monotonic() - started < 3.0
    print(failed.value)
    with pytest.raises(StoreError, match="not open"):
        store.add([job(1)])


SQLITE_CRASH = """
import os, signal, sys
from gearman_gateway.stores import StoredJob, create_store
store = create_store("sqlite", path=sys.argv[1], synchronous=sys.argv[2])
store.open()
for batch in range(10):
    store.add([StoredJob(i, b"H:%d" % i, b"fn", b"", 1, b"%d" % i) for i in range(batch * 100 + 1, batch * 100 + 101)])
    print(batch * 100 + 100, flush=True)  # acknowledged
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_every_acknowledged_batch_survives_a_crash_of_the_database(durable: Backend) -> None:
    """Server SIGKILLed with its children (sqlite: the process that holds the file) right after the adds."""
    if durable.kind == "sqlite":
        for synchronous in ("full", "normal"):
            path = durable.options["path"] + synchronous
            run = subprocess.run(
                [sys.executable, "-c", SQLITE_CRASH, path, synchronous], capture_output=True, text=True
            )
            assert run.returncode == -9, run.stderr
            assert run.stdout.split()[-1] == "1000"
            store = create_store("sqlite", path=path)
            store.open()
            assert ids(store.load()) == list(range(1, 1001))
            store.close()
        return
    assert durable.server is not None
    jobs = [job(i) for i in range(1, 1001)]
    store = durable.open()
    for start in range(0, 1000, 100):
        store.add(jobs[start : start + 100])
    durable.server.kill()
    store.close()  # this store is gone with the database's crash; the next one replays
    durable.server.start()
    # memcached keeps nothing across a crash of its own: the reason for the warning and for docs/persistence.md
    assert durable.open().load() == ([] if durable.kind in FORGETFUL else jobs)


@contextmanager
def table_locked(backend: Backend, table: str) -> Iterator[None]:
    """Another session holds an exclusive lock on the table."""
    assert backend.server is not None
    if backend.kind == "postgres":
        with backend.server.connect(autocommit=False) as other:  # type: ignore[attr-defined]
            other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            yield
            other.rollback()
    else:
        with closing(backend.server.connect()) as other:  # type: ignore[attr-defined]
            other.cursor().execute(f"LOCK TABLES {table} WRITE")
            yield
            other.cursor().execute("UNLOCK TABLES")


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_locked_table_fails_after_the_lock_timeout(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend = make_backend(kind, request, tmp_path)
    store = backend.open(lock_timeout=0.3)
    store.add([job(1)])
    with table_locked(backend, backend.options["table"]):
        started = time.monotonic()
        with pytest.raises(StoreError, match="add of 1 jobs failed") as failed:
            store.add([job(2)])
        assert time.monotonic() - started < 3.0
        print(failed.value)
    store.add([job(3)])  # no reopen needed: the failed transaction was rolled back
    assert ids(store.load()) == [1, 3]
    store.close()


def test_a_frozen_redis_times_out(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """SIGSTOP: the kernel still accepts the connection, nothing answers; socket_timeout bounds the wait."""
    backend = make_backend("redis", request, tmp_path, own_server=True)
    store = backend.open(socket_timeout=0.3)
    assert backend.server is not None
    backend.server.pause()
    try:
        with pytest.raises(StoreError, match="add of 1 jobs failed"):
            store.add([job(1)])
    finally:
        backend.server.resume()
    store.open()
    store.add([job(2)])
    assert ids(store.load()) == [2]
    store.close()


# -- import of the tables gearmand wrote (reference §5.2)

#: (CREATE TABLE, INSERT, the INSERT's column order) exactly as gearmand 1.1.20 has them, per backend.
GEARMAND_SQL = {
    "sqlite": (
        "CREATE TABLE gearman_queue ( unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, "
        "when_to_run INTEGER, PRIMARY KEY (unique_key, function_name))",
        "INSERT OR REPLACE INTO gearman_queue (priority, unique_key, function_name, data, when_to_run) "
        "VALUES (?,?,?,?,?)",
        ("priority", "unique", "function", "data", "when"),
    ),
    "postgres": (
        "CREATE TABLE IF NOT EXISTS queue (unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, "
        "data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))",
        "INSERT INTO queue (priority, unique_key, function_name, data, when_to_run) VALUES(%s,%s,%s,%s::BYTEA,%s)",
        ("priority", "unique", "function", "data", "when"),
    ),
    "mysql": (
        "CREATE TABLE gearman_queue (unique_key VARCHAR(64), function_name VARCHAR(255), priority INT, "
        "data LONGBLOB, when_to_run INT, unique key (unique_key, function_name))",
        "INSERT INTO gearman_queue (unique_key, function_name, priority, data, when_to_run) VALUES(%s,%s,%s,%s,%s)",
        ("unique", "function", "priority", "data", "when"),
    ),
}

#: The rows of reference §5.3 (gearmand binds unique and function as text, data as a blob).
GEARMAND_ROWS = [
    {"unique": "k1", "function": "pq", "priority": 1, "data": b"normal", "when": 0},
    {"unique": "k2", "function": "pq", "priority": 0, "data": b"high", "when": 0},
    {"unique": "k3", "function": "pq", "priority": 2, "data": b"low", "when": 0},
    {"unique": "k4", "function": "pq", "priority": 1, "data": b"epoch", "when": 1795343275},
    {"unique": "", "function": "pq", "priority": 1, "data": b"nouniq2", "when": 0},
    {"unique": "9c371e8a-2f0c-4b7e", "function": "f-x", "priority": 1, "data": bytes(range(256)), "when": 0},
]


def as_imported(row: dict[str, Any]) -> StoredJob:
    return StoredJob(
        0, b"", row["function"].encode(), row["unique"].encode(), row["priority"], row["data"], row["when"]
    )


def raw_connection(backend: Backend) -> Any:
    if backend.kind == "sqlite":
        return sqlite3.connect(backend.options["path"], isolation_level=None)
    assert backend.server is not None
    return backend.server.connect()  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql"])
def test_import_of_a_table_gearmand_wrote(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend = make_backend(kind, request, tmp_path, own_server=True)  # gearmand's default table name is free there
    create, insert, order = GEARMAND_SQL[kind]
    with closing(raw_connection(backend)) as conn:
        cur = conn.cursor()
        cur.execute(create)
        if kind == "sqlite":  # the empty unique collides; INSERT OR REPLACE keeps the later job
            cur.execute(insert, tuple({**GEARMAND_ROWS[4], "data": b"nouniq"}[c] for c in order))
        for row in GEARMAND_ROWS:
            cur.execute(insert, tuple(row[c] for c in order))
        store = backend.open()
        imported = store.import_gearmand(GEARMAND_TABLES[kind])
        cur.execute(f"SELECT COUNT(*) FROM {GEARMAND_TABLES[kind]}")
        (left,) = cur.fetchone()
    expected = [as_imported(row) for row in GEARMAND_ROWS]
    assert imported == expected if kind == "sqlite" else sorted(imported, key=repr) == sorted(expected, key=repr)
    assert left == len(GEARMAND_ROWS)  # the source table is left as it was
    assert store.load() == []  # importing reads; adding the jobs is the caller's


def test_import_of_an_old_sqlite_table_without_when_to_run(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB)")
        conn.execute("INSERT INTO gearman_queue VALUES ('a', 'f', 2, x'00ff')")
        conn.commit()
    store = create_store("libsqlite3", path=str(path))
    store.open()
    assert store.import_gearmand("gearman_queue") == [StoredJob(0, b"", b"f", b"a", 2, b"\x00\xff", 0)]
    with pytest.raises(StoreError, match="import of gearmand table missing"):
        store.import_gearmand("missing")
    store.close()


def test_import_of_redis_keys_gearmand_wrote(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    backend = make_backend("redis", request, tmp_path, own_server=True)
    assert backend.server is not None
    raw = backend.server.connect()  # type: ignore[attr-defined]
    # 1.1.16 and later (checked against Debian's gearmand 1.1.20): a hash of data and priority digits
    raw.hset("_gear_-pq-k1", mapping={"data": b"normal", "priority": b"1"})
    raw.hset("_gear_-pq-k2", mapping={"data": b"high", "priority": b"0"})
    raw.hset("_gear_-pq-9c371e8a-2f0c-4b7e", mapping={"data": bytes(range(256)), "priority": b"2"})
    raw.set("_gear_-old-u1", b"from 1.1.15")  # 1.1.15 and older: the data as a plain string
    raw.hset("_gear_-my-fn-u2", mapping={"data": b"m", "priority": b"1", "function": b"my-fn", "unique": b"u2"})
    raw.set("_gear_other", b"not a queue key")
    raw.set("unrelated", b"x")
    store = backend.open()
    assert store.import_gearmand("_gear_") == [
        StoredJob(0, b"", b"my-fn", b"u2", 1, b"m"),  # newer gearmand names them in fields
        StoredJob(0, b"", b"old", b"u1", 1, b"from 1.1.15"),
        StoredJob(0, b"", b"pq", b"9c371e8a-2f0c-4b7e", 2, bytes(range(256))),
        StoredJob(0, b"", b"pq", b"k1", 1, b"normal"),
        StoredJob(0, b"", b"pq", b"k2", 0, b"high"),
    ]
    assert len(raw.keys("_gear_*")) == 6  # left as they were
    assert store.load() == []
    raw.close()


def test_import_of_memcached_items_gearmand_wrote(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """gearmand 1.1.20's libmemcached queue (checked against Debian's, see also tests/integration/
    test_memcached_queue.py): key <prefix><function>-<unique>, value the data, flags the priority, no expiry."""
    backend = make_backend("memcached", request, tmp_path, own_server=True)
    assert backend.server is not None
    raw = backend.server.connect()  # type: ignore[attr-defined]
    raw.set(b"gear_pq-k1", b"normal", flags=1)
    raw.set(b"gear_pq-k2", b"high", flags=0)
    raw.set(b"gear_pq-9c371e8a-2f0c-4b7e", bytes(range(256)), flags=2)
    raw.set(b"gear_my-fn-u2", b"m", flags=1)  # gearmand reads it back as function "my", unique "fn-u2"
    raw.set(b"gear_odd-u3", b"x", flags=7)  # not a priority: normal
    raw.set(b"gear_nodash", b"skipped, as gearmand skips it")
    raw.set(b"gear-other", b"not a queue key")
    raw.set(b"unrelated", b"x")
    store = backend.open()
    assert store.import_gearmand("gear_") == [
        StoredJob(0, b"", b"my", b"fn-u2", 1, b"m"),
        StoredJob(0, b"", b"odd", b"u3", 1, b"x"),
        StoredJob(0, b"", b"pq", b"9c371e8a-2f0c-4b7e", 2, bytes(range(256))),
        StoredJob(0, b"", b"pq", b"k1", 1, b"normal"),
        StoredJob(0, b"", b"pq", b"k2", 0, b"high"),
    ]
    assert raw.get(b"gear_pq-k1") == b"normal"  # left as it was
    assert store.load() == []
    raw.close()


# -- memcached: what a cache that is not a database gives


def memcached_store(*servers: MemcachedServer, **options: Any) -> Store:
    store = create_store("libmemcached", servers=",".join(s.servers for s in servers), **options)
    store.open()
    return store


def memcached_load(*servers: MemcachedServer, **options: Any) -> list[StoredJob]:
    """What a store that starts on these servers replays (it closes again: one store per queue at a time)."""
    store = memcached_store(*servers, **options)
    try:
        return store.load()
    finally:
        store.close()


def metadump_keys(server: MemcachedServer) -> set[bytes]:
    """Every key memcached's LRU crawler lists now."""
    with socket.create_connection((server.host, server.port), timeout=5) as conn:
        conn.sendall(b"lru_crawler metadump all\r\n")
        with conn.makefile("rb") as reply:
            lines = list(iter(reply.readline, b"END\r\n"))
    return {unquote_to_bytes(line[4:].split(b" ")[0]) for line in lines if line.startswith(b"key=")}


def test_memcached_warns_at_open_that_jobs_can_be_lost(
    memcached_server: MemcachedServer, db_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        memcached_store(memcached_server, prefix="warn:").close()
    [warning] = [r.getMessage() for r in caplog.records if r.name.endswith("memcached")]
    assert "evicts them" in warning and "restart of memcached loses them all" in warning
    caplog.clear()
    no_evictions = start_memcached(db_root, "-M")  # memcached refuses new items when full instead
    try:
        with caplog.at_level("WARNING"):
            store = memcached_store(no_evictions)
            store.close()
            store.open()  # a reconnect does not repeat it
        [warning] = [r.getMessage() for r in caplog.records if r.name.endswith("memcached")]
        assert "evicts" not in warning and "restart of memcached loses them all" in warning
    finally:
        no_evictions.cleanup()


def test_memcached_job_too_large_refuses_its_batch_with_a_readable_error(memcached_server: MemcachedServer) -> None:
    store = memcached_store(memcached_server, prefix=f"big{os.getpid()}:")
    store.add([job(1)])
    with pytest.raises(StoreError, match=r"add of 3 jobs failed: .*too large.*item size limit") as failed:
        store.add([job(2), job(3), job(4, data=b"x" * 2_000_000)])  # memcached's default limit is 1 MB
    assert "b'" not in str(failed.value)  # memcached's words, not a Python bytes repr
    assert ids(store.load()) == [1]  # 2 and 3 were stored, then deleted again
    store.close()


def test_memcached_skips_items_under_its_prefix_that_it_did_not_write(
    memcached_server: MemcachedServer, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"foreign{os.getpid()}:"
    store = memcached_store(memcached_server, prefix=prefix)
    store.add([job(1)])
    raw = memcached_server.connect()
    raw.set(f"{prefix}job:2".encode(), b"someone else's value")
    raw.set(f"{prefix}job:x".encode(), b"not even an id")
    with caplog.at_level("WARNING"):
        assert store.load() == [job(1)]
    assert sum("not a job this store wrote" in r.getMessage() for r in caplog.records) == 2
    raw.close()
    store.close()


def test_memcached_servers_list_spreads_jobs_and_finds_them_after_the_list_changes(db_root: Path) -> None:
    a, b, c = (start_memcached(db_root) for _ in range(3))
    try:
        first = memcached_store(a, b)
        jobs = [job(i) for i in range(1, 101)]
        first.add(jobs)
        keys = [b"gearman_gateway_queue:job:%d" % i for i in range(1, 101)]
        held = [len(server.connect().get_many(keys)) for server in (a, b)]
        assert sum(held) == 100 and min(held) > 20  # each job once, spread over both
        first.close()
        assert memcached_load(b, a) == jobs  # the order of the list does not matter
        grown = memcached_store(a, b, c)  # a new server: jobs now "at home" on c are still found on a and b
        assert grown.load() == jobs
        grown.bury([5, 60], "failed")
        grown.remove([i for i in range(1, 101) if i not in (5, 60)])
        grown.close()
        assert [(j.job_id, j.dead) for j in memcached_load(a, b)] == [(5, True), (60, True)]
        grown.open()
        grown.remove([5, 60])
        grown.close()
        assert memcached_load(a) == memcached_load(b) == []
    finally:
        for server in (a, b, c):
            server.cleanup()


def test_memcached_replays_from_its_index_when_the_key_dump_cannot_list_keys(
    db_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """memcached's LRU crawler off (or a proxy in between): the index alone; gearmand's layout needs the dump."""
    server = start_memcached(db_root, "-o", "no_lru_crawler")
    try:
        store = memcached_store(server)
        store.add([job(1), job(2)])
        store.remove([1])
        store.close()
        with caplog.at_level("WARNING"):
            assert memcached_load(server) == [job(2)]
        assert any("cannot list its keys" in r.getMessage() and "lru crawler disabled" in r.getMessage()
                   for r in caplog.records)  # fmt: skip
        store.open()
        with pytest.raises(StoreError, match=r"cannot list its keys .*1\.4\.31"):
            store.import_gearmand("gear_")
        store.close()
    finally:
        server.cleanup()


def test_memcached_replays_jobs_whose_index_memcached_evicted_and_rebuilds_it(
    memcached_server: MemcachedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The key dump finds what the index lost (here deleted by hand, as an eviction would); load() re-indexes."""
    prefix = f"evicted{os.getpid()}:"
    jobs = [job(i) for i in (1, 2, 5000, 9000)]  # three buckets of the index
    writer = memcached_store(memcached_server, prefix=prefix)
    writer.add(jobs)
    writer.close()
    # memcached's key dump can miss an item its LRU maintainer is moving, as fresh items are: wait until they
    # have settled, as the jobs of a server that crashed and restarted have (the index covers the rest)
    keys = {f"{prefix}job:{j.job_id}".encode() for j in jobs}
    deadline = time.monotonic() + 10
    while not keys <= metadump_keys(memcached_server):
        assert time.monotonic() < deadline, "memcached's key dump never listed the jobs"
    raw = memcached_server.connect()
    assert raw.delete(f"{prefix}index:1".encode())  # the bucket of 5000
    with caplog.at_level("WARNING"):
        assert memcached_load(memcached_server, prefix=prefix) == jobs
    assert any("1 jobs found only by the key dump" in r.getMessage() for r in caplog.records)
    assert raw.delete(f"{prefix}job:1".encode())  # an evicted job: gone, and said so
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert memcached_load(memcached_server, prefix=prefix) == jobs[1:]
    assert any("1 indexed jobs are gone" in r.getMessage() for r in caplog.records)
    raw.close()


@pytest.mark.parametrize(
    ("text", "servers"),
    [
        ("127.0.0.1:11211", [("127.0.0.1", 11211)]),
        ("a:1, b:2", [("a", 1), ("b", 2)]),
        ("a b,c", [("a", 11211), ("b", 11211), ("c", 11211)]),
        ("[::1]:11212,[::1] ::1", [("::1", 11212), ("::1", 11211), ("::1", 11211)]),
    ],
)
def test_memcached_server_lists_as_gearmand_takes_them(text: str, servers: list[tuple[str, int]]) -> None:
    assert parse_servers(text) == servers


@pytest.mark.parametrize("text", ["", " , ", "h:x", "h:0", "h:1:2", "[::1]:x"])
def test_memcached_bad_server_lists_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="memcached store"):
        create_store("memcached", servers=text)


def test_memory_has_nothing_to_import() -> None:
    assert create_store("builtin").import_gearmand("anything") == []


# -- the factory


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("builtin", "memory"),
        ("memory", "memory"),
        ("libsqlite3", "sqlite"),
        ("libpq", "postgres"),
        ("Postgres", "postgres"),
        ("postgresql", "postgres"),
        ("MySQL", "mysql"),
        ("redis", "redis"),
        ("libmemcached", "memcached"),
        ("memcached", "memcached"),
    ],
)
def test_create_store_knows_our_names_and_gearmands(kind: str, name: str, tmp_path: Path) -> None:
    options = {"sqlite": {"path": str(tmp_path / "q.db")}, "mysql": {"db": "test"}}.get(name, {})
    store = create_store(kind, **options)  # builds without connecting
    assert store.name == name


def test_create_store_refuses_unknown_names_options_and_unsafe_tables(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown queue libtokyocabinet"):
        create_store("libtokyocabinet")  # gearmand's, not in Debian's build, not ours
    with pytest.raises(ValueError, match="unknown option libsqlite3_db"):
        create_store("sqlite", libsqlite3_db="x")
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        create_store("sqlite", path=str(tmp_path / "q.db"), table="q; DROP TABLE x")
    with pytest.raises(ValueError, match="database file is required"):
        create_store("sqlite", path="")


def test_the_options_table_documents_every_constructor_argument() -> None:
    for kind, target in BACKENDS.items():
        module, _, name = target.partition(":")
        store_class = getattr(importlib.import_module(module), name)
        assert set(inspect.signature(store_class).parameters) == set(OPTIONS[kind]), kind
        assert getattr(store_class, "gearmand_table", None) == GEARMAND_TABLES.get(kind), kind


def test_our_table_name_on_a_gearmand_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(GEARMAND_SQL["sqlite"][0])
    store = create_store("sqlite", path=str(path), table="gearman_queue")
    with pytest.raises(StoreError, match="import option"):
        store.open()
