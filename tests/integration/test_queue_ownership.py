"""One server per queue on PostgreSQL, MariaDB, Redis and memcached (issue 13), with our real `gearmand`.

Two gearmand instances on one table (key prefix) used to replay and run each other's jobs at start and then
collide on job ids, which marked the store down for good. Now the second one does not start: exit 1 and one
line naming the holder. It starts once the first has stopped (cleanly or killed), and replays the jobs once.
A server cut off from its queue long enough for another to take it over stays without it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from gearman_gateway.stores.mysql import lock_name
from gearman_gateway.stores.ownership import APPLICATION, HOST
from protocols.binary.packets import Packet
from tests.integration.conftest import RunningServer, ServerFactory
from tests.integration.rawclient import Raw, worker

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our durable queues")

KINDS = ["postgres", "mysql", "redis", "memcached"]
FIXTURES = {
    "postgres": "postgres_server",
    "mysql": "mariadb_server",
    "redis": "redis_server",
    "memcached": "memcached_server",
}
FUNCTION = b"owned"
WAIT = 20.0


class Queue:
    """One queue (a table or key prefix of its own on the session's database server) and its YAML config."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path, **extra: Any) -> None:
        self.kind = kind
        self.db = request.getfixturevalue(FIXTURES[kind])
        self.name = "own_" + uuid.uuid4().hex[:10]
        naming = {"prefix": self.name + ":"} if kind in ("redis", "memcached") else {"table": self.name}
        self.options = self.db.store_options(**naming, **extra)
        self.config = tmp_path / f"{self.name}.yaml"
        self.config.write_text(yaml.safe_dump({"queue": {"type": kind, kind: self.options}}))

    @property
    def owner_key(self) -> bytes:
        return f"{self.name}:owner".encode()

    def owner_value(self) -> bytes | None:
        raw = self.db.connect()
        try:
            return raw.get(self.owner_key)
        finally:
            raw.close()

    def wait_renewals(self, count: int) -> None:
        """Until the owner key has been renewed ``count`` times (redis: its time to live went up again;
        memcached: its CAS unique changed)."""
        raw = self.db.connect()
        try:

            def version() -> Any:
                return raw.pttl(self.owner_key) if self.kind == "redis" else raw.gets(self.owner_key)[1]

            seen, last = 0, version()
            deadline = time.monotonic() + WAIT
            while seen < count:
                assert time.monotonic() < deadline, "the owner key was not renewed"
                time.sleep(0.02)
                now = version()
                assert now is not None and now != -2, "the owner key expired although its server lives"
                if (now > last) if self.kind == "redis" else (now != last):
                    seen += 1
                last = now
        finally:
            raw.close()


def start(gearmand: ServerFactory, queue: Queue, wait: bool = True) -> RunningServer:
    return gearmand("--config", str(queue.config), wait=wait)


def refused(gearmand: ServerFactory, queue: Queue) -> str:
    """A server started on the queue exits 1 with one line saying why; that line."""
    server = start(gearmand, queue, wait=False)
    assert server.proc.wait(WAIT) == 1
    output = server.log()
    assert "Traceback" not in output and "replayed" not in output, output  # it never read the queue
    [line] = [line for line in output.splitlines() if "gearmand: cannot start:" in line]
    return line[line.index("gearmand: cannot start:") :]


def submit_bg(port: int, data: bytes) -> tuple[int, list[bytes]]:
    with Raw(port) as client:
        client.send(Packet.SUBMIT_JOB_BG, FUNCTION, b"", data)
        return client.recv(timeout=30)


def drain(port: int) -> list[bytes]:
    """A worker completes every job it can get: their payloads."""
    got = []
    with worker(port, FUNCTION) as w:
        while True:
            w.send(Packet.GRAB_JOB)
            ptype, args = w.recv()
            if ptype == Packet.NO_JOB:
                return got
            assert ptype == Packet.JOB_ASSIGN
            got.append(args[2])
            w.send(Packet.WORK_COMPLETE, args[0], b"")


def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def session_of(queue: Queue, server: RunningServer) -> list[int]:
    """PostgreSQL: the backend pids of a gearmand's sessions (our application_name names it)."""
    with queue.db.connect() as conn:
        found = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"{APPLICATION} {server.pid}@{HOST}",)
        ).fetchall()
    return [pid for (pid,) in found]


def lock_released(queue: Queue, server: RunningServer) -> bool:
    """Whether the database has seen the end of a killed server's session (and dropped its lock)."""
    if queue.kind == "postgres":
        return not session_of(queue, server)
    conn = queue.db.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT IS_USED_LOCK(%s)", (lock_name(queue.db.database, queue.name),))
        return cur.fetchone()[0] is None
    finally:
        conn.close()


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_server_on_one_queue_does_not_start_until_the_first_stops(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, gearmand: ServerFactory
) -> None:
    queue = Queue(kind, request, tmp_path)
    first = start(gearmand, queue)
    for i in range(3):
        assert submit_bg(first.port, b"job-%d" % i)[0] == Packet.JOB_CREATED
    line = refused(gearmand, queue)
    print(line)
    assert f"{kind} store " in line and ": in use by another server (" in line
    assert "every server needs a queue of its own" in line and f"queue.{kind}." in line
    assert "mysql connection " in line if kind == "mysql" else f"({first.pid}@{HOST}" in line
    # the first one is unharmed: its store is up and takes jobs (the second one used to make it refuse them all)
    assert "state\tup" in first.admin("show store")
    assert submit_bg(first.port, b"job-3")[0] == Packet.JOB_CREATED
    assert first.stop() == 0

    second = start(gearmand, queue)
    assert "replayed 4 jobs" in second.log()
    assert Counter(drain(second.port)) == Counter(b"job-%d" % i for i in range(4))  # each once


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_server_leaves_its_queue_to_the_next_one(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, gearmand: ServerFactory
) -> None:
    """SQL: the database ends the dead server's session, and its lock with it. Redis, memcached: the owner key
    outlives the server, but it names a process of this machine that is gone, so the next server takes it over
    without waiting for its expiry."""
    queue = Queue(kind, request, tmp_path)
    first = start(gearmand, queue)
    for i in range(2):
        assert submit_bg(first.port, b"job-%d" % i)[0] == Packet.JOB_CREATED
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    if kind in ("postgres", "mysql"):
        until(lambda: lock_released(queue, first), "the database never ended the killed server's session")
    else:
        assert f"{first.pid}@{HOST}".encode() in (queue.owner_value() or b"")  # left behind by the kill

    second = start(gearmand, queue)
    assert "replayed 2 jobs" in second.log()
    assert sorted(drain(second.port)) == [b"job-0", b"job-1"]


def test_two_servers_on_one_postgres_table_when_the_first_loses_its_session(
    request: pytest.FixtureRequest, tmp_path: Path, gearmand: ServerFactory
) -> None:
    """The database ends the first server's session (as after a network cut) and a second server starts on the
    table meanwhile: it replays the first one's jobs. The first one's reconnect finds the table taken and must
    stay without it (a reconnect that took the lock back would make two servers run the same jobs)."""
    queue = Queue("postgres", request, tmp_path)
    first = start(gearmand, queue)
    assert submit_bg(first.port, b"before")[0] == Packet.JOB_CREATED
    with queue.db.connect() as conn:
        [pid] = session_of(queue, first)
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    until(lambda: not session_of(queue, first), "the first server's session did not end")

    second = start(gearmand, queue)
    assert "replayed 1 jobs" in second.log()
    ptype, args = submit_bg(first.port, b"refused")  # its connection is gone: the commit fails
    assert ptype == Packet.ERROR and args[0] == b"QUEUE_ERROR", (ptype, args)
    until(lambda: "no longer writes its queue" in first.log(), "the first server never said it lost its queue")
    assert "in use by another server" in first.log()
    for _ in range(3):  # and it stays so: no reconnect takes the table back
        ptype, args = submit_bg(first.port, b"refused")
        assert ptype == Packet.ERROR and b"in use by another server" in args[1], (ptype, args)
    assert "state\tdown" in first.admin("show store")
    assert session_of(queue, first) == []

    assert submit_bg(second.port, b"after")[0] == Packet.JOB_CREATED
    assert sorted(drain(second.port)) == [b"after", b"before"]


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_a_frozen_server_loses_its_queue_to_the_next_and_says_so(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, gearmand: ServerFactory
) -> None:
    """owner_ttl 1 s: the live server renews its key (renewed every third of a second, it outlives its 1 s and
    a second server is refused); frozen (SIGSTOP), it lets the key expire and a second server takes the queue
    over; thawed, its next renewal finds the other's key: its store goes down for good, with an error in its
    log."""
    queue = Queue(kind, request, tmp_path, owner_ttl=1)
    first = start(gearmand, queue)
    assert submit_bg(first.port, b"before")[0] == Packet.JOB_CREATED
    queue.wait_renewals(4)
    assert "in use by another server" in refused(gearmand, queue)

    os.kill(first.pid, signal.SIGSTOP)
    try:
        until(lambda: queue.owner_value() is None, "the frozen server's owner key never expired")
        second = start(gearmand, queue)
        assert "replayed 1 jobs" in second.log()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    until(lambda: "took this queue over" in first.log(), "the thawed server never saw its queue taken over")
    assert "no longer writes its queue" in first.log()
    assert "state\tdown" in first.admin("show store")
    ptype, args = submit_bg(first.port, b"refused")
    assert ptype == Packet.ERROR and args[0] == b"QUEUE_ERROR", (ptype, args)
    assert f"{second.pid}@{HOST}".encode() in (queue.owner_value() or b"")

    assert submit_bg(second.port, b"after")[0] == Packet.JOB_CREATED
    assert sorted(drain(second.port)) == [b"after", b"before"]
