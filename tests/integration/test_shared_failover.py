"""Shared mode through a PostgreSQL failover (issue 21, docs/scale.md "PostgreSQL without a single point of
failure"): a primary and a streaming standby with synchronous replication, two gateways with a multi-host conninfo
(``target_session_attrs=read-write``); the primary crashes, the standby is promoted, the gateways resume on it.

Acknowledged means applied on the standby (``synchronous_commit = remote_apply``), so every job acknowledged before
the crash is on the promoted standby and runs; during the gap background submits are answered with an ERROR at
once (never a hang, never a false JOB_CREATED) while foreground jobs with a local worker keep running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.binary.packets import Packet
from tests import dbfixtures
from tests.dbfixtures import PostgresServer
from tests.integration.rawclient import Raw
from tests.integration.sharedqueue import RecordingWorker, runs, shared_args, submit_background, wait_for

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our shared mode")

LEASE = 2.0
DEAD_AFTER = 1.0
#: Longest a gateway may take to answer a submit while the database is away: an answer, not a hang.
ANSWER_WITHIN = 2.0
#: Seconds without a primary: longer than dead_after and than what is left of a lease.
GAP = 2.5 * DEAD_AFTER


@pytest.fixture
def primary_and_standby(db_root: Path) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and its synchronous streaming standby, this test's own."""
    servers: list[PostgresServer] = []
    try:
        servers.append(dbfixtures.start_postgres(db_root))
        servers.append(dbfixtures.start_postgres_standby(servers[0], db_root))
        servers[0].replicate_synchronously()
    except dbfixtures.DbUnavailable as exc:
        for server in servers:
            server.cleanup()
        dbfixtures.unavailable(str(exc))
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.cleanup()


def submit_once(port: int, function: bytes, data: bytes, kind: int = Packet.SUBMIT_JOB_BG) -> tuple[int, float]:
    """One submit on a new connection: the kind of the first answer (skipping JOB_CREATED for a foreground job,
    whose WORK_COMPLETE is what counts) and how long it took."""
    started = time.monotonic()
    with Raw(port) as client:
        client.send(kind, function, b"", data)
        answer, _ = client.recv(10)
        if kind == Packet.SUBMIT_JOB and answer == Packet.JOB_CREATED:
            answer, _ = client.recv(10)
    return answer, time.monotonic() - started


def queued_on(server: PostgresServer, function: bytes) -> int:
    with server.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM gearman_gateway_shared WHERE function_name = %s AND NOT dead", (function,)
        ).fetchone()
    return int(row[0])


def test_failover_to_a_promoted_standby_loses_no_acknowledged_job(gearmand, primary_and_standby) -> None:
    primary, standby = primary_and_standby
    conninfo = (
        f"host={primary.host},{standby.host} port={primary.port},{standby.port} user=postgres dbname=postgres "
        "target_session_attrs=read-write connect_timeout=2"
    )
    servers = [gearmand(*shared_args(conninfo, LEASE, DEAD_AFTER)) for _ in range(2)]
    slow = RecordingWorker(servers[0].port, b"held", delay=3.0)  # holds a job across the failover
    worker = RecordingWorker(servers[1].port, b"run", b"held")  # would run a job taken over
    for w in (slow, worker):
        w.start()
        assert w.ready.wait(5)

    # Acknowledged before the crash: jobs nobody can run yet (queued in the table), jobs that run at once, and
    # jobs of the slow worker's gateway, one of which it holds when the primary goes.
    waiting = submit_background(servers[0].port, b"later", [b"later-%d" % i for i in range(100)])
    waiting += submit_background(servers[1].port, b"later", [b"later-%d" % i for i in range(100, 200)])
    assert len(waiting) == 200
    submit_background(servers[0].port, b"run", [b"run-%d" % i for i in range(100)])
    held = [b"held-%d" % i for i in range(2)]
    submit_background(servers[0].port, b"held", held)
    wait_for(lambda: bool(slow.started_at), 10, "the slow worker to hold a job")

    primary.stop("immediate")
    # synchronous replication: every acknowledged job is on the standby already, read there before the promotion
    assert queued_on(standby, b"later") == 200

    # The gap: no primary, for longer than dead_after (every heartbeat and the held rows' leases go stale), as
    # while a failover manager decides. Background submits get an ERROR at once, whichever gateway they go to;
    # a foreground job with a local worker runs.
    gap_ends = time.monotonic() + GAP
    index = 0
    while time.monotonic() < gap_ends:
        answer, took = submit_once(servers[index % 2].port, b"run", b"gap-%d" % index)
        assert answer == Packet.ERROR, Packet(answer).name
        assert took < ANSWER_WITHIN, took
        index += 1
        time.sleep(0.05)
    answer, took = submit_once(servers[1].port, b"run", b"gap-foreground", Packet.SUBMIT_JOB)
    assert answer == Packet.WORK_COMPLETE and took < ANSWER_WITHIN, (Packet(answer).name, took)

    standby.promote()
    accepted: list[bytes] = []
    refused = 0
    deadline = time.monotonic() + 15
    while len(accepted) < 20 and time.monotonic() < deadline:
        data = b"after-%d" % (len(accepted) + refused)
        answer, took = submit_once(servers[len(accepted) % 2].port, b"run", data)
        assert took < ANSWER_WITHIN, took
        if answer == Packet.JOB_CREATED:
            accepted.append(data)
        else:
            assert answer == Packet.ERROR, Packet(answer).name
            refused += 1
            time.sleep(0.05)
    assert len(accepted) == 20, f"{refused} refusals and no recovery: {servers[0].log()[-2000:]}"

    late = RecordingWorker(servers[0].port, b"later")  # a worker for the queued jobs, after the failover
    late.start()
    assert late.ready.wait(5)
    everyone = [slow, worker, late]
    expected = {b"later-%d" % i for i in range(200)} | {b"run-%d" % i for i in range(100)} | set(held) | set(accepted)
    wait_for(lambda: expected <= set(runs(everyone)), 20, "every acknowledged job to run after the failover")
    time.sleep(LEASE)  # a takeover of the slow worker's jobs, if any, would run one twice by now
    counts = runs(everyone)
    for w in everyone:
        w.stop()
    assert set(counts) - {b"gap-foreground"} == expected
    twice = {data: n for data, n in counts.items() if n > 1}
    assert twice == {}, "\n=====\n".join(server.log()[-5000:] for server in servers)
    assert queued_on(standby, b"later") == 0  # the finished jobs' rows went from the new primary
    logs = servers[0].log() + servers[1].log()
    assert "LISTEN is back" in logs
    for server in servers:
        assert "cluster_listening\tyes" in server.admin("show store")
        assert "Traceback" not in server.log(), server.log()[-3000:]
