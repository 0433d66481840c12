"""Shared mode behind PgBouncer in transaction mode (docs/scale.md): with ``--shared-listen off`` two gateways
work through a pooler that hands each transaction whichever server session is free. No LISTEN (it would need a
session of its own), no session settings carried from one transaction to the next, no prepared statements
(PgBouncer 1.18 cannot route them): background jobs are claimed and foreground jobs relayed on the poll."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocols.binary.packets import Packet
from tests.dbfixtures import _as_postgres_user
from tests.integration.conftest import free_port, wait_listening
from tests.integration.sharedqueue import RecordingWorker, new_database, shared_args, submit_background, wait_for
from tests.integration.test_shared_relay import run_relayed, scripted_worker, wait_relay_ready

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our shared mode")

PGBOUNCER = "/usr/sbin/pgbouncer"


@pytest.fixture
def pgbouncer(postgres_server) -> Iterator[int]:
    """A private PgBouncer in transaction mode, two server sessions, in front of the session's PostgreSQL: its
    port. Missing under CI=true is a failure (scripts/setup --test installs it)."""
    if not os.access(PGBOUNCER, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{PGBOUNCER} is missing: scripts/setup --test installs pgbouncer")
        pytest.skip(f"{PGBOUNCER} is not installed")
    directory = Path(tempfile.mkdtemp(prefix="gg-pgbouncer-"))
    directory.chmod(0o755)
    port = free_port()
    (directory / "users.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={postgres_server.host} port={postgres_server.port}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {directory}/users.txt\npool_mode = transaction\n"
        "default_pool_size = 2\nmax_client_conn = 50\n"
    )
    for path in directory.iterdir():
        path.chmod(0o644)
    proc = subprocess.Popen(
        [PGBOUNCER, str(directory / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **_as_postgres_user(),
    )
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)
        shutil.rmtree(directory, ignore_errors=True)


def test_two_gateways_poll_through_a_transaction_pooler(gearmand, postgres_server, pgbouncer) -> None:
    conninfo = new_database(postgres_server).replace(f"port={postgres_server.port}", f"port={pgbouncer}")
    a, b = (gearmand(*shared_args(conninfo), "--shared-listen", "off") for _ in range(2))
    # background: submitted to a, which has no worker for it; b's worker claims it on b's poll
    worker = RecordingWorker(b.port, b"pooled")
    worker.start()
    worker.ready.wait(5)
    payloads = [b"p-%d" % i for i in range(20)]
    submit_background(a.port, b"pooled", payloads)
    wait_for(lambda: len(worker.done) >= len(payloads), 10, "b to claim and run a's jobs")
    worker.stop()
    assert sorted(worker.done) == sorted(payloads)
    # foreground, relayed both ways, several times (psycopg would have prepared its statements by the fifth)
    for server, other, name in ((a, b, b"tob"), (b, a, b"toa")):
        for round_ in range(3):
            ready = threading.Event()
            far = scripted_worker(other.port, name, Packet.WORK_COMPLETE, ready, b"far")
            ready.wait(5)
            wait_relay_ready(server, name)
            _, result = run_relayed(server.port, name, b"%d" % round_)
            assert result == b"done by far"
            far.close()
    for server in (a, b):
        assert "failing" not in server.log(), server.log()  # no claim, relay or renewal ever failed
