"""`-q libmemcached` end to end: our `gearmand` on a private memcached (tests/dbfixtures.py), killed with SIGKILL
and started again; and the items Debian's gearmand 1.1.20 writes there, imported by ours.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from protocols.binary.codec import encode_request
from protocols.binary.packets import Packet
from tests.dbfixtures import MemcachedServer
from tests.integration.conftest import RunningServer, ServerFactory, free_port
from tests.integration.rawclient import Raw, worker

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our memcached queue")

SUBMIT_BG = {0: Packet.SUBMIT_JOB_HIGH_BG, 1: Packet.SUBMIT_JOB_BG, 2: Packet.SUBMIT_JOB_LOW_BG}


def submit_pipelined(port: int, function: bytes, jobs: list[tuple[int, bytes, bytes]]) -> list[bytes]:
    """Send every background submit at once, then read each JOB_CREATED, in order."""
    with Raw(port, timeout=60) as client:
        client.send_raw(b"".join(encode_request(SUBMIT_BG[p], function, unique, data) for p, unique, data in jobs))
        return [client.expect(Packet.JOB_CREATED)[0] for _ in jobs]


def drain(port: int, function: bytes) -> list[tuple[bytes, bytes]]:
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


def start_on(gearmand: ServerFactory, memcached: MemcachedServer, port: int, *extra: str) -> RunningServer:
    return gearmand("-q", "libmemcached", f"--libmemcached-servers={memcached.servers}", *extra, port=port)


def test_background_jobs_survive_a_sigkill_of_the_server(
    gearmand: ServerFactory, memcached_server_fn: MemcachedServer
) -> None:
    port = free_port()
    server = start_on(gearmand, memcached_server_fn, port)
    assert "memcached keeps jobs in memory only" in server.log()  # the warning, at start
    jobs = [(i % 3, (b"u%d" % i) if i % 2 else b"", b"payload-%d-\x00\xff" % i) for i in range(600)]
    handles = submit_pipelined(port, b"cached", jobs)
    assert len(set(handles)) == 600
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL  # no shutdown code runs

    server = start_on(gearmand, memcached_server_fn, port)
    assert "memcached store: replayed 600 jobs" in server.log()
    delivered = drain(port, b"cached")
    payloads = [data for _, data in delivered]
    assert Counter(payloads) == Counter(data for _, _, data in jobs)  # all of them, exactly once
    assert payloads == [data for _, _, data in sorted(jobs, key=lambda job: job[0])]  # priority, then FIFO
    by_payload = {data: handle for (_, _, data), handle in zip(jobs, handles, strict=True)}
    assert all(by_payload[data] == handle for handle, data in delivered)  # handles survive the restart
    assert server.stop(signal.SIGTERM) == 0  # writes the last deletes (a SIGKILL now would replay some: at-least-once)

    server = start_on(gearmand, memcached_server_fn, port)  # completed jobs were deleted for good
    assert "replayed 0 jobs" in server.log() and drain(port, b"cached") == []


#: (priority, unique, data) submitted to Debian's gearmand; a function name with a "-" comes back cut at it,
#: in gearmand's own replay too (reference §5.2), so the jobs here use one without.
GEARMAND_JOBS = [(1, b"k1", b"normal"), (0, b"k2", b"high"), (2, b"k3", b"low"), (1, b"k-4", b"unique with a dash")]


def test_items_debian_gearmand_wrote_are_imported(
    gearmand: ServerFactory, real_gearmand: ServerFactory, memcached_server_fn: MemcachedServer
) -> None:
    theirs = real_gearmand("-q", "libmemcached", f"--libmemcached-servers={memcached_server_fn.servers}")
    submit_pipelined(theirs.port, b"imp", GEARMAND_JOBS)
    theirs.stop(signal.SIGKILL)
    raw = memcached_server_fn.connect()
    assert raw.get(b"gear_imp-k1") == b"normal"  # gearmand's layout, as the store reads it
    raw.close()

    port = free_port()
    ours = start_on(gearmand, memcached_server_fn, port, "--import-gearmand-queue")
    assert "imported 4 jobs from gearmand's 'gear_'" in ours.log()
    assert "replayed 4 jobs" in ours.log()
    # within a priority in key order: gearmand's items keep no submission order
    assert [data for _, data in drain(port, b"imp")] == [b"high", b"unique with a dash", b"normal", b"low"]
    assert ours.stop() == 0
    ours = start_on(gearmand, memcached_server_fn, port)  # without the option: only our own items count
    assert "replayed 0 jobs" in ours.log() and drain(port, b"imp") == []
