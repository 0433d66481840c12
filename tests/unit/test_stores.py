"""The durable stores against real servers (private PostgreSQL, MariaDB and Redis from tests/dbfixtures.py):
one contract suite for every backend, outages and crashes of the database, the import of tables that gearmand
wrote (reference §5.2, in its exact layout), and the time of a 1,000-job batch.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from gearman_gateway.stores import BACKENDS, GEARMAND_TABLES, OPTIONS, Store, StoredJob, StoreError, create_store
from tests.dbfixtures import DbServer, free_port

KINDS = ["memory", "sqlite", "postgres", "mysql", "redis"]
PERSISTENT = KINDS[1:]
SERVER_FIXTURES = {"postgres": "postgres_server", "mysql": "mariadb_server", "redis": "redis_server"}
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
    naming = {"prefix": f"{name}:"} if kind == "redis" else {"table": name}
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
    with pytest.raises(StoreError, match="add of 3 jobs"):
        store.add([job(10), job(11), job(2)])  # 2 is taken: the whole batch is refused
    with pytest.raises(StoreError):
        store.add([job(20), job(20)])
    assert ids(store.load()) == [1, 2, 3]
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
    assert ids(store.load()) == [1, 3]


def unreachable(kind: str, tmp_path: Path) -> dict[str, Any]:
    closed = free_port()  # nothing listens there
    return {
        "sqlite": {"path": str(tmp_path / "no" / "such" / "dir" / "queue.db")},
        "postgres": {"conninfo": f"host=127.0.0.1 port={closed} user=postgres dbname=postgres"},
        "mysql": {"host": "127.0.0.1", "port": closed, "user": "root", "db": "test"},
        "redis": {"host": "127.0.0.1", "port": closed},
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
    durable.server.start()
    assert durable.open().load() == jobs


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
    ],
)
def test_create_store_knows_our_names_and_gearmands(kind: str, name: str, tmp_path: Path) -> None:
    options = {"sqlite": {"path": str(tmp_path / "q.db")}, "mysql": {"db": "test"}}.get(name, {})
    store = create_store(kind, **options)  # builds without connecting
    assert store.name == name


def test_create_store_refuses_unknown_names_options_and_unsafe_tables(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown queue libmemcached"):
        create_store("libmemcached")
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
