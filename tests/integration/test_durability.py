"""Durable queues end to end: our `gearmand` on real SQLite, PostgreSQL, MariaDB and Redis.

Each database is a private instance from tests/dbfixtures.py; the server is the real entry point,
stopped with SIGTERM or SIGKILL and started again on the same store.
"""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from protocols.binary.packets import Packet
from tests.integration.conftest import free_port
from tests.integration.rawclient import Raw, worker

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our durable queues")

SUBMIT_BG = {0: Packet.SUBMIT_JOB_HIGH_BG, 1: Packet.SUBMIT_JOB_BG, 2: Packet.SUBMIT_JOB_LOW_BG}


class Durable:
    """Starts our server again and again on one store (same config, same port)."""

    def __init__(self, gearmand, tmp_path: Path, queue: dict, *extra: str) -> None:
        self.gearmand = gearmand
        self.config = tmp_path / f"gearmand-{uuid.uuid4().hex[:8]}.yaml"
        self.config.write_text(yaml.safe_dump({"queue": queue}))
        self.port = free_port()
        self.extra = extra
        self.server = None

    def start(self, *more: str):
        self.server = self.gearmand("--config", str(self.config), *self.extra, *more, port=self.port)
        return self.server


def queue_config(kind: str, request, tmp_path: Path, server_fixture: str | None = None) -> dict:
    """The YAML `queue:` section for a backend, on a private database and a table of this test's own."""
    table = "q_" + uuid.uuid4().hex[:10]
    if kind == "sqlite":
        return {"type": "sqlite", "sqlite": {"path": str(tmp_path / "queue.db"), "table": table}}
    db = request.getfixturevalue(server_fixture or f"{'mariadb' if kind == 'mysql' else kind}_server")
    options = db.store_options()
    if kind == "redis":
        options["prefix"] = table + ":"
    else:
        options["table"] = table
    return {"type": kind, kind: options}


def submit_pipelined(port: int, jobs: list[tuple[int, bytes, bytes]]) -> list[bytes]:
    """Send every submit at once, then read the JOB_CREATED of each, in order."""
    with Raw(port, timeout=60) as client:
        client.send_raw(
            b"".join(
                __import__("protocols.binary.codec", fromlist=["encode_request"]).encode_request(
                    SUBMIT_BG[priority], b"durable", unique, data
                )
                for priority, unique, data in jobs
            )
        )
        return [client.expect(Packet.JOB_CREATED)[0] for _ in jobs]


def drain(port: int, function: bytes = b"durable") -> list[tuple[bytes, bytes]]:
    """A worker takes and completes every job it can get: (handle, data) in the order received."""
    got = []
    with worker(port, function) as w:
        while True:
            w.send(Packet.GRAB_JOB)
            ptype, args = w.recv()
            if ptype == Packet.NO_JOB:
                return got
            assert ptype == Packet.JOB_ASSIGN
            got.append((args[0], args[2]))
            w.send(Packet.WORK_COMPLETE, args[0], b"")


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mysql", "redis"])
def test_thousand_background_jobs_survive_a_restart(kind, request, tmp_path, gearmand) -> None:
    durable = Durable(gearmand, tmp_path, queue_config(kind, request, tmp_path))
    server = durable.start()
    jobs = [(i % 3, (b"u%d" % i) if i % 2 else b"", b"payload-%d-\x00\xff" % i) for i in range(1000)]
    handles = submit_pipelined(server.port, jobs)
    assert len(set(handles)) == 1000
    assert "durable\t1000\t0\t0" in server.admin("status")
    assert server.stop(signal.SIGTERM) == 0

    server = durable.start()
    assert "replayed 1000 jobs" in server.log()
    assert server.admin("prioritystatus").startswith("durable\t334\t333\t333\t0")
    with Raw(server.port) as client:  # new handles continue after the replayed ones
        client.send(Packet.SUBMIT_JOB_BG, b"other", b"", b"new")
        assert client.expect(Packet.JOB_CREATED)[0] not in handles
    delivered = drain(server.port)
    payloads = [data for _, data in delivered]
    assert Counter(payloads) == Counter(data for _, _, data in jobs)  # all of them, exactly once
    expected_order = [data for _, _, data in sorted(jobs, key=lambda j: j[0])]  # priority, then FIFO
    assert payloads == expected_order
    by_payload = {data: handle for (_, _, data), handle in zip(jobs, handles, strict=True)}
    assert all(by_payload[data] == handle for handle, data in delivered)  # handles survive the restart
    assert server.stop(signal.SIGTERM) == 0

    server = durable.start()  # completed jobs are deleted for good
    assert "replayed 1 jobs" in server.log() and drain(server.port) == []  # only the "other" job


def _stream(port: int, acked: list[bytes], stop: threading.Event, client_id: int) -> None:
    """Submit background jobs, a window of 20 at a time, recording each payload once acknowledged."""
    from protocols.binary.codec import encode_request

    try:
        with Raw(port, timeout=30) as client:
            counter = itertools.count()
            in_flight: list[bytes] = []
            while not stop.is_set():
                while len(in_flight) < 20:
                    data = b"c%d-%d" % (client_id, next(counter))
                    client.send_raw(encode_request(Packet.SUBMIT_JOB_BG, b"durable", b"", data))
                    in_flight.append(data)
                client.expect(Packet.JOB_CREATED)
                acked.append(in_flight.pop(0))
    except (EOFError, OSError, AssertionError):
        return  # the server was killed under us


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_mid_stream_loses_no_acknowledged_job(kind, request, tmp_path, gearmand) -> None:
    durable = Durable(gearmand, tmp_path, queue_config(kind, request, tmp_path))
    server = durable.start()
    acked: list[list[bytes]] = [[] for _ in range(4)]
    done_before: list[bytes] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_stream, args=(server.port, acked[i], stop, i)) for i in range(4)]
    for thread in threads:
        thread.start()

    def working() -> None:  # a worker completes jobs while the stream runs
        try:
            with worker(server.port, b"durable") as w:
                while not stop.is_set():
                    w.send(Packet.GRAB_JOB)
                    ptype, args = w.recv(timeout=5)
                    if ptype == Packet.JOB_ASSIGN:
                        w.send(Packet.WORK_COMPLETE, args[0], b"")
                        done_before.append(args[2])
        except (EOFError, OSError, TimeoutError):
            return

    worker_thread = threading.Thread(target=working)
    worker_thread.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acked)) < 3000:
        assert time.monotonic() < deadline, "the stream is too slow"
        time.sleep(0.01)
    server.stop(signal.SIGKILL)
    stop.set()
    for thread in [*threads, worker_thread]:
        thread.join(10)
    acknowledged = {data for client in acked for data in client}

    server = durable.start()
    after = [data for _, data in drain(server.port)]
    delivered = set(done_before) | set(after)
    lost = acknowledged - delivered
    assert not lost, f"{len(lost)} acknowledged jobs lost, e.g. {sorted(lost)[:5]}"
    duplicated = set(done_before) & set(after)
    unacknowledged_kept = set(after) - acknowledged - set(done_before)
    print(
        f"\n{kind}: {len(acknowledged)} acknowledged, {len(done_before)} done before the kill, "
        f"{len(after)} after restart, {len(duplicated)} run twice (done but not yet deleted at the kill), "
        f"{len(unacknowledged_kept)} committed but unacknowledged"
    )
    assert len(after) == len(set(after))  # nothing replayed twice


GEARMAND_ROWS = [  # (unique, function, priority, data, when) as gearmand 1.1.20 writes them
    ("k1", "imp", 1, b"normal", 0),
    ("k2", "imp", 0, b"high", 0),
    ("k3", "imp", 2, b"low", 0),
    ("", "imp", 1, b"nouniq", 0),
]


def test_replay_of_a_queue_table_gearmand_wrote_sqlite(tmp_path, gearmand) -> None:
    path = tmp_path / "gearmand.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE gearman_queue ( unique_key TEXT, function_name TEXT, priority INTEGER, data BLOB, "
            "when_to_run INTEGER, PRIMARY KEY (unique_key, function_name))"
        )
        db.executemany(
            "INSERT OR REPLACE INTO gearman_queue (unique_key, function_name, priority, data, when_to_run) "
            "VALUES (?,?,?,?,?)",
            GEARMAND_ROWS,
        )
    server = gearmand("-q", "libsqlite3", "--libsqlite3-db", str(path), "--import-gearmand-queue")
    assert "imported 4 jobs" in server.log()
    assert [data for _, data in drain(server.port, b"imp")] == [b"high", b"normal", b"nouniq", b"low"]


def test_replay_of_a_queue_table_gearmand_wrote_postgres(request, gearmand, postgres_server) -> None:
    table = "gq_" + uuid.uuid4().hex[:8]
    with postgres_server.connect() as db:
        db.execute(
            f"CREATE TABLE {table} (unique_key VARCHAR(64), function_name VARCHAR(255), priority INTEGER, "
            "data BYTEA, when_to_run INTEGER, UNIQUE (unique_key, function_name))"
        )
        for row in GEARMAND_ROWS:
            db.execute(
                f"INSERT INTO {table} (unique_key, function_name, priority, data, when_to_run) "
                "VALUES (%s, %s, %s, %s, %s)",
                row,
            )
    server = gearmand(
        "-q", "libpq", "--libpq-conninfo", postgres_server.conninfo, "--libpq-table", table, "--import-gearmand-queue"
    )
    assert "imported 4 jobs" in server.log()
    assert [data for _, data in drain(server.port, b"imp")] == [b"high", b"normal", b"nouniq", b"low"]


def _submit_bg(port: int, data: bytes) -> tuple[int, list[bytes]]:
    with Raw(port) as client:
        client.send(Packet.SUBMIT_JOB_BG, b"durable", b"", data)
        return client.recv(timeout=30)


def _wait_store(server, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while f"state\t{state}" not in server.admin("show store"):
        assert time.monotonic() < deadline, server.admin("show store")
        time.sleep(0.05)


def test_database_outage_gives_errors_not_false_acknowledgements(request, tmp_path, gearmand) -> None:
    queue = queue_config("postgres", request, tmp_path, "postgres_server_fn")
    database = request.getfixturevalue("postgres_server_fn")
    server = Durable(gearmand, tmp_path, queue).start()
    assert _submit_bg(server.port, b"before")[0] == Packet.JOB_CREATED
    database.stop("immediate")
    acknowledged = []
    for i in range(5):  # the first ones fail on commit, later ones at once while the store is down
        ptype, args = _submit_bg(server.port, b"during-%d" % i)
        assert ptype == Packet.ERROR and args[0] == b"QUEUE_ERROR", (ptype, args)
    _wait_store(server, "down")
    assert "store unavailable" in server.log()
    with Raw(server.port) as client, worker(server.port, b"fgonly") as w:  # foreground jobs keep working
        client.send(Packet.SUBMIT_JOB, b"fgonly", b"", b"x")
        handle = client.expect(Packet.JOB_CREATED)[0]
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        w.send(Packet.WORK_COMPLETE, handle, b"fine")
        assert client.expect(Packet.WORK_COMPLETE) == [handle, b"fine"]
    database.start()
    _wait_store(server, "up")
    ptype, args = _submit_bg(server.port, b"after")
    assert ptype == Packet.JOB_CREATED
    assert "store is back" in server.log()
    acknowledged = [b"before", b"after"]
    assert sorted(data for _, data in drain(server.port)) == sorted(acknowledged)


def test_locked_table_gives_errors_then_recovers(request, tmp_path, gearmand) -> None:
    queue = queue_config("postgres", request, tmp_path)
    queue["postgres"]["lock_timeout"] = 0.3
    database = request.getfixturevalue("postgres_server")
    server = Durable(gearmand, tmp_path, queue).start()
    assert _submit_bg(server.port, b"first")[0] == Packet.JOB_CREATED
    table = queue["postgres"]["table"]
    locker = database.connect(autocommit=False)
    try:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        ptype, args = _submit_bg(server.port, b"blocked")
        assert ptype == Packet.ERROR and args[0] == b"QUEUE_ERROR"
    finally:
        locker.rollback()
        locker.close()
    _wait_store(server, "up")
    assert _submit_bg(server.port, b"later")[0] == Packet.JOB_CREATED
    assert sorted(data for _, data in drain(server.port)) == [b"first", b"later"]


def test_retries_and_dead_letters_survive_a_restart(tmp_path, gearmand) -> None:
    durable = Durable(
        gearmand, tmp_path, {"type": "sqlite"}, "--fail-retries", "2", "--fail-backoff", "0.05", "--dead-letter"
    )
    server = durable.start()
    assert _submit_bg(server.port, b"flaky")[0] == Packet.JOB_CREATED
    attempts = 0
    with worker(server.port, b"durable") as w:
        while attempts < 3:
            w.send(Packet.GRAB_JOB)
            ptype, args = w.recv()
            if ptype == Packet.NO_JOB:
                w.send(Packet.PRE_SLEEP)
                w.expect(Packet.NOOP, timeout=10)  # woken when the back-off ends
                continue
            attempts += 1
            if attempts < 3:
                w.send(Packet.WORK_FAIL, args[0])
            else:
                w.send(Packet.WORK_EXCEPTION, args[0], b"bad data")
    deadline = time.monotonic() + 10
    while "durable" not in server.admin("show dead jobs"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "WORK_EXCEPTION: bad data" in server.admin("show dead jobs")
    assert server.stop(signal.SIGTERM) == 0
    server = durable.start()
    dead = server.admin("show dead jobs")
    assert "WORK_EXCEPTION: bad data" in dead, dead
    assert server.admin("requeue dead all") == "OK 1\r\n"
    assert [data for _, data in drain(server.port)] == [b"flaky"]
    assert server.admin("show dead jobs") == ".\n"


def test_pipelined_acknowledgements_keep_request_order_with_joins(tmp_path, gearmand) -> None:
    """A submit that joins a job whose commit is pending is answered in its own place."""
    from protocols.binary.codec import encode_request

    server = gearmand()
    with Raw(server.port) as first, Raw(server.port) as second:
        first.send(Packet.SUBMIT_JOB_BG, b"ord", b"a", b"1")
        second.send_raw(
            encode_request(Packet.SUBMIT_JOB_BG, b"ord", b"b", b"2")
            + encode_request(Packet.SUBMIT_JOB_BG, b"ord", b"a", b"3")
            + encode_request(Packet.ECHO_REQ, b"after")
        )
        handle_a = first.expect(Packet.JOB_CREATED)[0]
        handle_b = second.expect(Packet.JOB_CREATED)[0]
        assert handle_b != handle_a
        assert second.expect(Packet.JOB_CREATED)[0] == handle_a
        assert second.expect(Packet.ECHO_RES) == [b"after"]
        first.send_raw(
            encode_request(Packet.SUBMIT_JOB_BG, b"ord", b"c", b"4")
            + encode_request(Packet.SUBMIT_JOB_BG, b"ord", b"d", b"5")
            + encode_request(Packet.SUBMIT_JOB_BG, b"ord", b"c", b"6")
        )
        c1, d, c2 = (first.expect(Packet.JOB_CREATED)[0] for _ in range(3))
        assert c1 == c2 != d


def test_dead_letter_failing_again_in_one_commit_stays_dead(tmp_path, gearmand) -> None:
    durable = Durable(gearmand, tmp_path, {"type": "sqlite"}, "--dead-letter")
    server = durable.start()
    assert _submit_bg(server.port, b"poison")[0] == Packet.JOB_CREATED
    with worker(server.port, b"durable") as w:
        w.send(Packet.GRAB_JOB)
        handle = w.expect(Packet.JOB_ASSIGN)[0]
        w.send(Packet.WORK_FAIL, handle)
        assert w.call(Packet.ECHO_REQ, b"sync") == (Packet.ECHO_RES, [b"sync"])
        # requeue and fail again within one group commit: revive then bury must end buried
        w.send_raw(b"requeue dead " + handle + b"\n")
        w.send(Packet.GRAB_JOB)
        w.send(Packet.WORK_FAIL, handle)
        assert w.sock.recv(100).startswith(b"OK")
    deadline = time.monotonic() + 5
    while handle.decode() not in server.admin("show dead jobs"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert server.stop(signal.SIGTERM) == 0
    server = durable.start()
    assert handle.decode() in server.admin("show dead jobs")
    assert "durable\t0\t0\t0" in server.admin("status")
