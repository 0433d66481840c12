"""Shared mode (issue 21, docs/scale.md): three real `gearmand` processes on one private PostgreSQL.

Workers are raw binary peers that record every payload they run, so "exactly once" and "nothing lost" are
counted, not assumed. Leases and heartbeats are short here (2 s, 1 s) to keep the tests fast.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import pytest

from protocols.binary.packets import Packet
from tests.integration.rawclient import Raw
from tests.integration.sharedqueue import (
    RecordingWorker,
    new_database,
    runs,
    shared_args,
    submit_background,
    wait_for,
)

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our shared mode")

LEASE = 2.0
DEAD_AFTER = 1.0


@pytest.fixture
def cluster(gearmand, postgres_server):
    """Factory: n gateways sharing a fresh database."""
    conninfo = new_database(postgres_server)

    def start(count: int = 3, *extra: str):
        return [gearmand(*shared_args(conninfo, LEASE, DEAD_AFTER), *extra) for _ in range(count)]

    start.conninfo = conninfo  # type: ignore[attr-defined]
    start.start_with = lambda lease, dead_after: gearmand(*shared_args(conninfo, lease, dead_after))  # type: ignore[attr-defined]
    return start


def test_3000_jobs_round_robin_run_exactly_once_with_workers_on_one_server(cluster) -> None:
    servers = cluster(3)
    worker = RecordingWorker(servers[2].port, b"count")
    worker.start()
    worker.ready.wait(5)
    payloads = [b"%d" % i for i in range(3000)]
    handles = []
    for index, server in enumerate(servers):
        handles += submit_background(server.port, b"count", payloads[index::3])
    assert len(set(handles)) == 3000  # cluster-unique handles, though the three servers share a host
    wait_for(lambda: len(worker.done) >= 3000, 60, "3000 jobs to run")
    time.sleep(0.3)  # any second run would show now
    worker.stop()
    counts = runs([worker])
    assert sorted(counts) == sorted(payloads)
    assert set(counts.values()) == {1}
    status = servers[0].admin("show store")
    assert "cluster_server" in status


def test_coalescing_across_servers(cluster) -> None:
    first, second = cluster(2)
    a = submit_background(first.port, b"once", [b"x"], unique=lambda _: b"same")
    b = submit_background(second.port, b"once", [b"y"], unique=lambda _: b"same")
    assert a == b  # the second submit is told the first one's handle
    worker = RecordingWorker(second.port, b"once")
    worker.start()
    wait_for(lambda: len(worker.done) == 1, 10, "the one job")
    time.sleep(1.5)  # a poll later: still one
    worker.stop()
    assert worker.done == [b"x"]


def test_priorities_and_fifo_hold_across_servers(cluster) -> None:
    first, second = cluster(2)
    submit_background(first.port, b"order", [b"low-1"], priority=Packet.SUBMIT_JOB_LOW_BG)
    submit_background(second.port, b"order", [b"normal-1"])
    submit_background(first.port, b"order", [b"normal-2"])
    submit_background(second.port, b"order", [b"high-1"], priority=Packet.SUBMIT_JOB_HIGH_BG)
    submit_background(first.port, b"order", [b"normal-3"])
    worker = RecordingWorker(second.port, b"order")
    worker.start()
    wait_for(lambda: len(worker.done) == 5, 10, "five jobs")
    worker.stop()
    assert worker.done == [b"high-1", b"normal-1", b"normal-2", b"normal-3", b"low-1"]


def grab_all(raw: Raw, count: int) -> list[bytes]:
    """A raw worker's grabs, one job at a time, each completed at once: the payloads in the order it got them."""
    seen: list[bytes] = []
    while len(seen) < count:
        raw.send(Packet.GRAB_JOB)
        kind, args = raw.recv(10)
        while kind == Packet.NOOP:
            kind, args = raw.recv(10)
        if kind == Packet.NO_JOB:
            raw.send(Packet.PRE_SLEEP)
            raw.expect(Packet.NOOP, timeout=10)
            continue
        assert kind == Packet.JOB_ASSIGN, (kind, args)
        seen.append(args[2])
        raw.send(Packet.WORK_COMPLETE, args[0], b"")
    return seen


def test_older_unclaimed_jobs_run_before_new_ones_of_a_server_with_a_worker(cluster) -> None:
    """FIFO across servers with a local worker: jobs submitted where the worker is (inserted as that server's,
    no claim round trip) still run after the older jobs that waited in the table, priorities first. A poll
    every second (dead_after 3) leaves no time for the poll's claim to take the older ones first."""
    a, b, c = (cluster.start_with(lease=10.0, dead_after=3.0) for _ in range(3))
    submit_background(a.port, b"order", [b"normal-1"])
    submit_background(b.port, b"order", [b"normal-2"])
    submit_background(a.port, b"order", [b"high-1"], priority=Packet.SUBMIT_JOB_HIGH_BG)
    submit_background(b.port, b"order", [b"normal-3"])
    submit_background(a.port, b"order", [b"low-1"], priority=Packet.SUBMIT_JOB_LOW_BG)
    with Raw(c.port) as worker:
        worker.send(Packet.CAN_DO, b"order")
        wait_for(lambda: "order\t0\t0\t1" in c.admin("status"), 5, "the worker's CAN_DO")
        with Raw(c.port) as client:
            for data, kind in ((b"local-1", Packet.SUBMIT_JOB_BG), (b"local-high", Packet.SUBMIT_JOB_HIGH_BG),
                               (b"local-2", Packet.SUBMIT_JOB_BG)):  # fmt: skip
                client.send(kind, b"order", b"", data)
            for _ in range(3):
                client.expect(Packet.JOB_CREATED, timeout=10)
        seen = grab_all(worker, 8)
    assert seen == [
        b"high-1",
        b"local-high",
        b"normal-1",
        b"normal-2",
        b"normal-3",
        b"local-1",
        b"local-2",
        b"low-1",
    ]


def test_a_claim_under_way_never_queues_older_jobs_behind_a_batchs_new_ones(cluster) -> None:
    """FIFO, the window of this gateway's own claim: an older job submitted elsewhere (its NOTIFY starts a claim
    here) and, right after, a new one submitted where the worker is: whether the claim or the batch commits
    first, the worker gets the older one first, round after round."""
    a, c = cluster(2)
    with Raw(c.port) as worker, Raw(a.port) as elsewhere, Raw(c.port) as here:
        worker.send(Packet.CAN_DO, b"fifo")
        wait_for(lambda: "fifo\t0\t0\t1" in c.admin("status"), 5, "the worker's CAN_DO")
        for round_ in range(15):
            elsewhere.send(Packet.SUBMIT_JOB_BG, b"fifo", b"", b"old-%d" % round_)
            elsewhere.expect(Packet.JOB_CREATED, timeout=10)
            here.send(Packet.SUBMIT_JOB_BG, b"fifo", b"", b"new-%d" % round_)
            here.expect(Packet.JOB_CREATED, timeout=10)
            assert grab_all(worker, 2) == [b"old-%d" % round_, b"new-%d" % round_]


def stream(port: int, function: bytes, prefix: bytes, stop: threading.Event, acknowledged: list[bytes]) -> None:
    """Background submits one after the other until ``stop`` or until the server goes away; ``acknowledged``
    gets every payload whose JOB_CREATED came back (a job sent and not acknowledged may or may not run)."""
    index = 0
    try:
        with Raw(port) as client:
            while not stop.is_set():
                data = prefix + b"%d" % index
                client.send(Packet.SUBMIT_JOB_BG, function, b"", data)
                client.expect(Packet.JOB_CREATED, timeout=10)
                acknowledged.append(data)
                index += 1
    except (OSError, EOFError):
        pass  # the server was killed mid-stream


def c_client(port: int, function: str, payloads: list[str]) -> None:
    """Debian's C `gearman` submits background jobs (one per argument); exit 0: every one acknowledged."""
    subprocess.run(
        ["gearman", "-b", "-h", "127.0.0.1", "-p", str(port), "-f", function, *payloads], check=True, timeout=20
    )


def test_a_server_killed_mid_stream_loses_no_acknowledged_job(cluster) -> None:
    """SIGKILL while clients are still submitting to it and to the others: every acknowledged job runs, those the
    dead server held (its worker's, and those it claimed from the others) included, all within lease + 1 s."""
    doomed, survivor, submitter = cluster(3)
    slow = RecordingWorker(doomed.port, b"slow", delay=30)  # takes a job and never finishes before the kill
    slow.start()
    slow.ready.wait(5)
    stop = threading.Event()
    on_doomed: list[bytes] = []
    on_submitter: list[bytes] = []
    streams = [
        threading.Thread(target=stream, args=(doomed.port, b"slow", b"d-", stop, on_doomed), daemon=True),
        threading.Thread(target=stream, args=(submitter.port, b"slow", b"s-", stop, on_submitter), daemon=True),
    ]
    for thread in streams:
        thread.start()
    c_payloads = [f"c-{i}" for i in range(30)]
    c_before = threading.Thread(target=c_client, args=(submitter.port, "slow", c_payloads[:15]), daemon=True)
    c_before.start()
    # the doomed server holds jobs of its own (its worker can do them) and claims the submitter's
    wait_for(lambda: len(on_doomed) >= 50 and bool(slow.started_at), 10, "submits to the doomed server")
    claimed = re.compile(r"cluster_claimed\t[1-9]")
    wait_for(lambda: bool(claimed.search(doomed.admin("show store"))), 5, "the doomed server to claim others' jobs")
    assert streams[0].is_alive()  # still submitting
    doomed.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    before_kill = set(on_submitter)  # with the dead server's own: all acknowledged before the kill
    # the rescuer at once: the bound below is the cluster's, not the time this test takes with its C clients
    rescuer = RecordingWorker(survivor.port, b"slow")
    rescuer.start()
    streams[0].join(5)
    held = list(on_doomed)  # acknowledged by the dead server: its rows, held by it
    c_before.join(20)
    c_client(survivor.port, "slow", c_payloads[15:])  # the C client on the survivor after the kill
    time.sleep(0.2)  # the submitter's stream goes on a little after the kill
    stop.set()
    streams[1].join(5)
    acknowledged = set(held) | set(on_submitter) | {p.encode() for p in c_payloads}
    wait_for(lambda: acknowledged <= set(runs([rescuer])), LEASE + DEAD_AFTER + 15, "every acknowledged job to run")
    rescuer.stop()
    slow.stop()
    late = {data: rescuer.started_at[data] - killed_at for data in set(held) | before_kill}
    assert max(late.values()) < LEASE + 1.0, sorted(late.items(), key=lambda item: -item[1])[:3]
    counts = runs([rescuer])
    assert set(counts.values()) == {1}  # the dead server finished none of them: each ran once
    assert len(held) >= 50 and len(on_submitter) > 0


def test_a_server_cut_off_is_taken_over_and_comes_back(cluster) -> None:
    """A gateway that stops answering without dying (SIGSTOP: as a lost network looks to the others, no
    heartbeat, no lease renewal) has its leased jobs run elsewhere within lease + 1 s; when it comes back
    (SIGCONT) it serves again. The job its own worker was running may then be finished twice: at-least-once,
    as docs/scale.md says; the test only asks that each job ran, and that nothing is lost."""
    frozen, survivor = cluster(2)
    stuck = RecordingWorker(frozen.port, b"cut", delay=4)  # holds one job across the freeze
    stuck.start()
    stuck.ready.wait(5)
    held = submit_background(frozen.port, b"cut", [b"held-%d" % i for i in range(5)])
    wait_for(lambda: bool(stuck.started_at), 10, "the frozen server's worker to take a job")
    frozen.proc.send_signal(signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        rescuer = RecordingWorker(survivor.port, b"cut")
        rescuer.start()
        wanted = {b"held-%d" % i for i in range(5)}
        wait_for(lambda: wanted <= set(runs([rescuer, stuck])), LEASE + DEAD_AFTER + 15, "the held jobs to run")
        late = [rescuer.started_at[data] - stopped_at for data in wanted if data in rescuer.started_at]
        assert late and max(late) < LEASE + 1.0, late
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    assert len(held) == 5
    stuck.stop()  # its slow job ends now; a quick worker takes its place
    fresh = RecordingWorker(frozen.port, b"cut")
    fresh.start()
    # back: it takes submits again, and its jobs run
    again = submit_background(frozen.port, b"cut", [b"after-%d" % i for i in range(3)])
    assert len(again) == 3
    everyone = [rescuer, stuck, fresh]
    wait_for(lambda: {b"after-0", b"after-1", b"after-2"} <= set(runs(everyone)), 20, "jobs after the return")
    rescuer.stop()
    fresh.stop()
    assert "Traceback" not in frozen.log(), frozen.log()[-3000:]


def test_postgres_restart_mid_run_loses_nothing(gearmand, postgres_server_fn) -> None:
    conninfo = postgres_server_fn.conninfo
    servers = [gearmand(*shared_args(conninfo, LEASE, DEAD_AFTER)) for _ in range(2)]
    worker = RecordingWorker(servers[1].port, b"survive")
    worker.start()
    worker.ready.wait(5)
    acknowledged = submit_background(servers[0].port, b"survive", [b"before-%d" % i for i in range(200)])
    assert len(acknowledged) == 200
    postgres_server_fn.restart("immediate")
    refused = 0
    accepted: list[bytes] = []
    deadline = time.monotonic() + 20
    index = 0
    while len(accepted) < 100 and time.monotonic() < deadline:
        with Raw(servers[0].port) as client:
            data = b"after-%d" % index
            client.send(Packet.SUBMIT_JOB_BG, b"survive", b"", data)
            kind, _ = client.recv(10)
        index += 1
        if kind == Packet.JOB_CREATED:
            accepted.append(data)
        else:
            refused += 1
            time.sleep(0.05)
    assert len(accepted) == 100
    expected = {b"before-%d" % i for i in range(200)} | set(accepted)
    wait_for(lambda: expected <= set(runs([worker])), 30, "every acknowledged job to run after the restart")
    worker.stop()
    logs = servers[0].log() + servers[1].log()
    assert refused or "store unavailable" in logs  # the outage was seen...
    assert "LISTEN is back" in logs  # ...and LISTEN re-established
    assert "cluster_listening\tyes" in servers[1].admin("show store")


PHP = "/usr/bin/php"
PHP_CLIENT = """<?php
// One GearmanClient per server, tried in order: libgearman 1.1 with several servers on one client can miss a
// JOB_CREATED that is not already there at its first read (it then polls the other server only; docs/scale.md).
$clients = [];
foreach (explode(",", $argv[1]) as $server) {
    $c = new GearmanClient();
    $c->setTimeout(5000);
    // php-gearman connects at once to set its exception option, and throws for a server that is down
    try { $c->addServers($server); $clients[] = $c; } catch (GearmanException $e) { fwrite(STDERR, "down: $server\n"); }
}
for ($i = 0; $i < (int)$argv[4]; $i++) {
    $done = false;
    foreach ($clients as $c) {
        try { $c->doBackground($argv[2], $argv[3] . $i); } catch (GearmanException $e) { continue; }
        if ($c->returnCode() == GEARMAN_SUCCESS) { $done = true; break; }
    }
    if (!$done) { fwrite(STDERR, "job $i: no server took it\n"); exit(1); }
}
"""


def test_php_and_c_clients_on_two_servers_with_one_killed(cluster, tmp_path) -> None:
    """php-gearman submits to both servers (its own list), one server is SIGKILLed with jobs of its own in hand,
    php-gearman goes on with the other, and the C `gearman` worker on the survivor runs every acknowledged job."""
    if (
        not os.access(PHP, os.X_OK)
        or subprocess.run([PHP, "-r", "exit(class_exists('GearmanClient') ? 0 : 1);"]).returncode
    ):
        pytest.fail("php-gearman is missing: scripts/setup --test installs php-cli and php-gearman")
    doomed, survivor = cluster(2)
    script = tmp_path / "client.php"
    script.write_text(PHP_CLIENT)
    both = f"127.0.0.1:{doomed.port},127.0.0.1:{survivor.port}"
    held = RecordingWorker(doomed.port, b"mixed", delay=30)  # the doomed server holds (and runs) jobs of its own
    held.start()
    held.ready.wait(5)
    subprocess.run([PHP, str(script), both, "mixed", "before-", "20"], check=True, timeout=30)
    wait_for(lambda: bool(held.started_at), 10, "the doomed server's worker to take a job")
    doomed.stop(signal.SIGKILL)
    subprocess.run([PHP, str(script), both, "mixed", "after-", "20"], check=True, timeout=30)
    seen_file = tmp_path / "seen.txt"
    out = subprocess.run(
        ["gearman", "-w", "-f", "mixed", "-c", "40", "-h", "127.0.0.1", "-p", str(survivor.port), "-t", "20000",
         "--", "sh", "-c", f"cat >> {seen_file}; echo >> {seen_file}"],
        capture_output=True, timeout=40, check=False,
    )  # fmt: skip
    held.stop()
    seen = seen_file.read_text().split() if seen_file.exists() else []
    assert sorted(seen) == sorted([f"before-{i}" for i in range(20)] + [f"after-{i}" for i in range(20)]), out


def test_primary_stopped_and_started_again_nothing_lost_nothing_taken_twice(gearmand, postgres_server_fn) -> None:
    """PostgreSQL's primary goes away for longer than dead_after and comes back (docs/scale.md, HA): every
    gateway was cut off, so none may take the others' jobs over on its return; each job runs once."""
    servers = [gearmand(*shared_args(postgres_server_fn.conninfo, LEASE, DEAD_AFTER)) for _ in range(2)]
    slow = RecordingWorker(servers[0].port, b"ha", delay=4.0)  # holds a job across the outage
    fast = RecordingWorker(servers[1].port, b"ha")
    for worker in (slow, fast):
        worker.start()
        worker.ready.wait(5)
    payloads = [b"ha-%d" % i for i in range(30)]
    submit_background(servers[0].port, b"ha", payloads[:2])  # held by the slow worker's gateway (8 s of work)
    submit_background(servers[1].port, b"ha", payloads[2:])
    wait_for(lambda: bool(slow.started_at), 10, "the slow worker to hold a job")
    postgres_server_fn.stop("fast")
    time.sleep(DEAD_AFTER * 2.5)  # every heartbeat is stale by now
    postgres_server_fn.start()
    wait_for(lambda: sum(runs([slow, fast]).values()) >= 30, 30, "every job to run")
    time.sleep(LEASE + DEAD_AFTER)  # a takeover, if any, would run a job twice by now
    counts = runs([slow, fast])
    slow.stop()
    fast.stop()
    assert sorted(counts) == sorted(payloads)
    assert set(counts.values()) == {1}, {data: n for data, n in counts.items() if n > 1}
