"""Job relay (issue 21 item 2): a foreground job submitted to one gateway runs on a worker connected only to
another, and the client gets every packet its worker sent, in order; a job stays local when it can."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from protocols.binary.codec import encode_request
from protocols.binary.packets import Packet
from tests.integration.conftest import free_port, wait_listening
from tests.integration.rawclient import Raw
from tests.integration.sharedqueue import RecordingWorker, new_database, shared_args, submit_background, wait_for

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our shared mode")


def scripted_worker(port: int, function: bytes, ending: int, ready: threading.Event, name: bytes = b"") -> Raw:
    """A raw worker that, for one job, sends DATA, WARNING, STATUS and then ``ending`` (COMPLETE, FAIL or
    EXCEPTION) with its ``name`` in the data."""
    raw = Raw(port)
    raw.send(Packet.CAN_DO, function)

    def run() -> None:
        ready.set()
        try:
            work()
        except (EOFError, OSError, AssertionError):
            pass  # closed by the test (a worker that never got its job)

    def work() -> None:
        raw.send(Packet.PRE_SLEEP)
        raw.expect(Packet.NOOP, timeout=20)
        raw.send(Packet.GRAB_JOB)
        handle, _, data = raw.expect(Packet.JOB_ASSIGN, timeout=10)
        raw.send(Packet.WORK_DATA, handle, b"part-1 of " + data)
        raw.send(Packet.WORK_WARNING, handle, b"careful")
        raw.send(Packet.WORK_STATUS, handle, b"1", b"2")
        raw.send(Packet.WORK_DATA, handle, b"part-2")
        if ending == Packet.WORK_FAIL:
            raw.send(Packet.WORK_FAIL, handle)
        else:
            raw.send(ending, handle, b"done by " + name)

    threading.Thread(target=run, daemon=True).start()
    return raw


def wait_relay_ready(server, function: bytes) -> None:
    """The client's server lists the function as served (by its relay) once a heartbeat has told it."""
    wait_for(lambda: f"{function.decode()}\t0\t0\t1" in server.admin("status"), 10, "the relay to serve it")


@pytest.fixture
def pair(gearmand, postgres_server):
    conninfo = new_database(postgres_server)
    return [gearmand(*shared_args(conninfo)) for _ in range(2)]


@pytest.mark.parametrize("ending", [Packet.WORK_COMPLETE, Packet.WORK_FAIL, Packet.WORK_EXCEPTION])
def test_every_packet_is_relayed_in_order(pair, ending) -> None:
    a, b = pair
    ready = threading.Event()
    worker = scripted_worker(b.port, b"far", ending, ready, b"b")
    ready.wait(5)
    wait_relay_ready(a, b"far")
    with Raw(a.port) as client:
        client.send(Packet.OPTION_REQ, b"exceptions")
        client.expect(Packet.OPTION_RES)
        client.send(Packet.SUBMIT_JOB, b"far", b"", b"x")
        handle = client.expect(Packet.JOB_CREATED)[0]
        got = [client.recv(15) for _ in range(5)]
    worker.close()
    expected_end = (ending, [handle] if ending == Packet.WORK_FAIL else [handle, b"done by b"])
    assert got == [
        (Packet.WORK_DATA, [handle, b"part-1 of x"]),
        (Packet.WORK_WARNING, [handle, b"careful"]),
        (Packet.WORK_STATUS, [handle, b"1", b"2"]),
        (Packet.WORK_DATA, [handle, b"part-2"]),
        expected_end,
    ]


def test_relay_works_both_ways_and_stays_local_when_it_can(pair) -> None:
    a, b = pair
    ready_a, ready_b = threading.Event(), threading.Event()
    on_a = scripted_worker(a.port, b"onlya", Packet.WORK_COMPLETE, ready_a, b"a")
    on_b = scripted_worker(b.port, b"onlyb", Packet.WORK_COMPLETE, ready_b, b"b")
    ready_a.wait(5)
    ready_b.wait(5)
    wait_relay_ready(a, b"onlyb")
    wait_relay_ready(b, b"onlya")
    results = {}
    for server, function in ((a, b"onlyb"), (b, b"onlya")):
        with Raw(server.port) as client:
            client.send(Packet.SUBMIT_JOB, function, b"", b"y")
            client.expect(Packet.JOB_CREATED)
            packets = [client.recv(15) for _ in range(5)]
            results[function] = packets[-1]
            assert packets[-1][0] == Packet.WORK_COMPLETE, packets
    assert results[b"onlyb"][1][1] == b"done by b" and results[b"onlya"][1][1] == b"done by a"
    # both servers now have a worker for "both": a job submitted to a runs on a's
    ready_a2, ready_b2 = threading.Event(), threading.Event()
    local_a = scripted_worker(a.port, b"both", Packet.WORK_COMPLETE, ready_a2, b"local")
    local_b = scripted_worker(b.port, b"both", Packet.WORK_COMPLETE, ready_b2, b"remote")
    ready_a2.wait(5)
    ready_b2.wait(5)
    with Raw(a.port) as client:
        client.send(Packet.SUBMIT_JOB, b"both", b"", b"z")
        client.expect(Packet.JOB_CREATED)
        packets = [client.recv(15) for _ in range(5)]
    assert packets[-1][1][1] == b"done by local"
    for raw in (on_a, on_b, local_a, local_b):
        raw.close()


def test_peers_and_status_cluster_in_admin_and_json(gearmand, postgres_server) -> None:
    conninfo = new_database(postgres_server)
    http_port = free_port()
    a = gearmand(*shared_args(conninfo), "-r", "http", "--http-port", str(http_port))
    wait_listening(http_port, a.proc)
    b = gearmand(*shared_args(conninfo))
    ready = threading.Event()
    worker = scripted_worker(b.port, b"seen", Packet.WORK_COMPLETE, ready)
    ready.wait(5)
    with Raw(a.port) as client:
        for data in (b"1", b"2", b"3"):
            client.send(Packet.SUBMIT_JOB_BG, b"waiting", b"", data)  # nobody can do it: the cluster's, unowned
            client.expect(Packet.JOB_CREATED)
    wait_for(lambda: "waiting\t3\t0\t0" in b.admin("status cluster"), 10, "the cluster's count")
    wait_for(lambda: "seen\t0\t0\t1" in a.admin("status cluster"), 5, "b's worker, seen from a")
    # a counts the table every STATUS_INTERVAL (2 s): the JSON below shows what admin shows
    wait_for(lambda: "waiting\t3\t0\t0" in a.admin("status cluster"), 10, "the cluster's count, seen from a")
    peers = a.admin("peers").splitlines()
    assert len(peers) == 3 and peers[-1] == "."
    assert sum(line.endswith(" *") for line in peers) == 1
    assert all("\talive\t" in line for line in peers[:2])
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/_gearman/status", timeout=5) as response:
        status = json.load(response)
    assert [p["alive"] for p in status["cluster"]["peers"]] == [True, True]
    assert {"name": "waiting", "total": 3, "running": 0, "workers": 0} in status["cluster"]["functions"]
    worker.close()
    b.stop(signal.SIGKILL)
    wait_for(lambda: "\tdead\t" in a.admin("peers"), 10, "the killed server to be seen dead")


def test_jobs_held_where_the_last_worker_left_are_relayed_to_a_worker_elsewhere(pair) -> None:
    a, b = pair
    leaving = RecordingWorker(a.port, b"moved", delay=30)  # takes one job and is stopped before finishing it
    leaving.start()
    leaving.ready.wait(5)
    payloads = [b"m-%d" % i for i in range(5)]
    submit_background(a.port, b"moved", payloads)  # a's worker can do it: a holds them
    wait_for(lambda: bool(leaving.started_at), 10, "a's worker to take a job")
    leaving.stop()  # it finishes its one job and disconnects: a holds the other four with no worker
    elsewhere = RecordingWorker(b.port, b"moved")
    elsewhere.start()
    wait_for(lambda: len(elsewhere.done) >= 4, 15, "a's held jobs to run on b")
    elsewhere.stop()
    assert sorted(leaving.done + elsewhere.done) == sorted(payloads)  # its one job was finished as it stopped
    wait_for(lambda: "moved\t0\t0" in a.admin("status"), 5, "a to have finished them")


def run_relayed(port: int, function: bytes, data: bytes) -> tuple[bytes, bytes]:
    """A foreground job submitted to ``port``: its handle and its WORK_COMPLETE's data (after any WORK_DATA,
    WARNING or STATUS), checking that nothing else (a second result) follows."""
    with Raw(port) as client:
        client.send(Packet.SUBMIT_JOB, function, b"", data)
        handle = client.expect(Packet.JOB_CREATED)[0]
        kind, args = client.recv(10)
        while kind in (Packet.WORK_DATA, Packet.WORK_WARNING, Packet.WORK_STATUS):
            kind, args = client.recv(10)
        assert (kind, args[0]) == (Packet.WORK_COMPLETE, handle), (kind, args)
        result = args[1]
        with pytest.raises(TimeoutError):
            client.recv(0.3)
    return handle, result


@pytest.fixture
def polling_pair(gearmand, postgres_server):
    """a polls (--shared-listen off): it takes its relayed jobs' events only on its poll, after the heartbeat
    that may already have told it the peer's worker left (the order that hung the client)."""
    conninfo = new_database(postgres_server)
    return gearmand(*shared_args(conninfo), "--shared-listen", "off"), gearmand(*shared_args(conninfo))


def test_a_relayed_job_whose_worker_left_right_after_it_reaches_its_client(polling_pair) -> None:
    a, b = polling_pair
    for round_ in range(3):  # Debian's C worker, gone as soon as its one job is done
        worker = subprocess.Popen(
            ["gearman", "-w", "-c", "1", "-h", "127.0.0.1", "-p", str(b.port), "-f", "leaving", "--", "rev"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_relay_ready(a, b"leaving")
            _, result = run_relayed(a.port, b"leaving", b"job-%d" % round_)
            assert result == b"%d-boj" % round_
            assert worker.wait(5) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        wait_for(lambda: "leaving\t0\t0\t0" in a.admin("status"), 5, "a to forget the relayed job")


def test_a_local_worker_connecting_mid_relay_does_not_run_the_job_again(pair) -> None:
    a, b = pair
    far = RecordingWorker(b.port, b"mid", delay=1.5)
    far.start()
    far.ready.wait(5)
    wait_relay_ready(a, b"mid")
    result: list[tuple[bytes, bytes]] = []
    client = threading.Thread(target=lambda: result.append(run_relayed(a.port, b"mid", b"once")), daemon=True)
    client.start()
    wait_for(lambda: bool(far.started_at), 10, "b's worker to take the relayed job")
    near = RecordingWorker(a.port, b"mid")
    near.start()
    near.ready.wait(5)
    # a's relay stops offering "mid" (a has a worker of its own now) and keeps the job: 1 queued, 1 running,
    # 1 worker (the new one)
    wait_for(lambda: "mid\t1\t1\t1" in a.admin("status"), 5, "a's relay to give up the function")
    client.join(10)
    assert result and result[0][1] == b"ok"
    time.sleep(0.3)  # a second run would show now
    assert far.done == [b"once"] and near.done == []
    assert "mid\t0\t0\t1" in a.admin("status")
    near.stop()
    far.stop()


@pytest.fixture
def trio(gearmand, postgres_server):
    conninfo = new_database(postgres_server)
    return [gearmand(*shared_args(conninfo)) for _ in range(3)]


def submit_foreground(port: int, function: bytes, unique: bytes, data: bytes) -> tuple[Raw, bytes]:
    """A raw client with one foreground job submitted and acknowledged: the client and the job's handle."""
    client = Raw(port)
    client.send(Packet.SUBMIT_JOB, function, unique, data)
    return client, client.expect(Packet.JOB_CREATED, timeout=10)[0]


def result_of(client: Raw, handle: bytes) -> tuple[int, list[bytes]]:
    with client:
        return client.recv(20)


@pytest.mark.parametrize("first_on", ["no worker", "the worker"])
def test_foreground_jobs_coalesce_across_gateways(trio, first_on) -> None:
    """Two clients on two gateways, one function and unique: one job runs and both get its result, whether the
    first client's gateway relays it or runs it on its own worker."""
    a, b, c = trio
    worker = RecordingWorker(c.port, b"co", delay=1.5)
    worker.start()
    worker.ready.wait(5)
    for server in (a, b):
        wait_relay_ready(server, b"co")
    first, second = (a, b) if first_on == "no worker" else (c, a)
    client_1, handle_1 = submit_foreground(first.port, b"co", b"same", b"first")
    wait_for(lambda: b"first" in worker.started_at, 10, "the first job to start")
    client_2, handle_2 = submit_foreground(second.port, b"co", b"same", b"second")
    assert result_of(client_1, handle_1) == (Packet.WORK_COMPLETE, [handle_1, b"ok"])
    assert result_of(client_2, handle_2) == (Packet.WORK_COMPLETE, [handle_2, b"ok"])
    time.sleep(0.5)  # a second run would show now
    worker.stop()
    assert worker.done == [b"first"]


def test_a_foreground_job_joins_a_background_job_of_another_gateway(trio) -> None:
    """A background job submitted to one gateway runs on a second one's worker; a foreground client of a third
    gateway with its unique gets its result, and the job runs once."""
    a, b, c = trio
    worker = RecordingWorker(c.port, b"bgfg", delay=1.5)
    worker.start()
    worker.ready.wait(5)
    wait_relay_ready(b, b"bgfg")
    submit_background(a.port, b"bgfg", [b"background"], unique=lambda _: b"shared-unique")
    wait_for(lambda: b"background" in worker.started_at, 10, "the background job to start")
    client, handle = submit_foreground(b.port, b"bgfg", b"shared-unique", b"foreground")
    assert result_of(client, handle) == (Packet.WORK_COMPLETE, [handle, b"ok"])
    time.sleep(0.5)
    worker.stop()
    assert worker.done == [b"background"]


def test_a_foreground_job_run_by_a_local_worker_is_joined_from_another_gateway(gearmand, postgres_server) -> None:
    """Workers on two gateways: a foreground job running on its own gateway's worker registered its unique (in
    a group commit it did not wait for), so a client of a third gateway with that unique watches it (a watcher
    row, no relay row that the other gateway's idle worker could take) and gets its result."""
    import psycopg

    conninfo = new_database(postgres_server)
    a, b, c = (gearmand(*shared_args(conninfo)) for _ in range(3))
    busy = RecordingWorker(a.port, b"reg", delay=2.0)
    idle = RecordingWorker(c.port, b"reg")
    for worker in (busy, idle):
        worker.start()
        worker.ready.wait(5)
    wait_relay_ready(b, b"reg")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        client_1, handle_1 = submit_foreground(a.port, b"reg", b"one-unique", b"first")
        wait_for(lambda: b"first" in busy.started_at, 10, "the first job to start on a's worker")
        # the registration's commit is not waited for: a client of another gateway that comes before it is the
        # documented window (its job is relayed and may run elsewhere)
        registered = "SELECT count(*) FROM gearman_gateway_shared WHERE unique_key = 'one-unique'"
        wait_for(lambda: conn.execute(registered).fetchone()[0] == 1, 5, "a's job to register its unique")
        client_2, handle_2 = submit_foreground(b.port, b"reg", b"one-unique", b"second")
        watchers = "SELECT count(*) FROM gearman_gateway_shared_watchers"
        wait_for(lambda: conn.execute(watchers).fetchone()[0] == 1, 5, "b's client to watch a's job")
        assert result_of(client_2, handle_2) == (Packet.WORK_COMPLETE, [handle_2, b"ok"])
        assert result_of(client_1, handle_1) == (Packet.WORK_COMPLETE, [handle_1, b"ok"])
        wait_for(lambda: conn.execute(watchers).fetchone()[0] == 0, 10, "the watcher to go with the final event")
        wait_for(lambda: conn.execute(registered).fetchone()[0] == 0, 10, "the registration to go once the job ended")
    time.sleep(0.5)
    for worker in (busy, idle):
        worker.stop()
    assert (busy.done, idle.done) == ([b"first"], [])


def test_a_gateway_with_its_own_worker_watches_a_unique_held_elsewhere(gearmand, postgres_server) -> None:
    """A foreground job whose unique a job on another gateway holds is not run by its own gateway's idle worker:
    the gateway waits for its unique's registration, finds it held, and its client watches that job."""
    conninfo = new_database(postgres_server)
    a, b = (gearmand(*shared_args(conninfo)) for _ in range(2))
    busy = RecordingWorker(a.port, b"held", delay=1.5)
    idle = RecordingWorker(b.port, b"held")
    for worker in (busy, idle):
        worker.start()
        worker.ready.wait(5)
    client_1, handle_1 = submit_foreground(a.port, b"held", b"u-held", b"first")
    wait_for(lambda: b"first" in busy.started_at, 10, "the first job to start on a's worker")
    client_2, handle_2 = submit_foreground(b.port, b"held", b"u-held", b"second")
    assert result_of(client_2, handle_2) == (Packet.WORK_COMPLETE, [handle_2, b"ok"])
    assert result_of(client_1, handle_1) == (Packet.WORK_COMPLETE, [handle_1, b"ok"])
    time.sleep(0.3)  # a second run would show now
    for worker in (busy, idle):
        worker.stop()
    assert (busy.done, idle.done) == ([b"first"], [])


def test_clients_of_two_gateways_with_workers_at_the_same_moment_get_one_run(gearmand, postgres_server) -> None:
    """Two clients with one unique on two gateways, each with a worker, submitted at once (within the first
    registration's commit): whichever registers first runs it, the other client watches it."""
    conninfo = new_database(postgres_server)
    a, b = (gearmand(*shared_args(conninfo)) for _ in range(2))
    on_a = RecordingWorker(a.port, b"race", delay=0.5)
    on_b = RecordingWorker(b.port, b"race", delay=0.5)
    for worker in (on_a, on_b):
        worker.start()
        worker.ready.wait(5)
    rounds = 5
    clients = []
    for round_ in range(rounds):
        unique = b"u-race-%d" % round_
        first, second = (a, b) if round_ % 2 else (b, a)
        raws = [Raw(server.port) for server in (first, second)]
        for raw, data in zip(raws, (b"x-%d" % round_, b"y-%d" % round_), strict=True):
            raw.send(Packet.SUBMIT_JOB, b"race", unique, data)
        clients += [(raw, raw.expect(Packet.JOB_CREATED, timeout=10)[0]) for raw in raws]
    for raw, handle in clients:
        assert result_of(raw, handle) == (Packet.WORK_COMPLETE, [handle, b"ok"])
    time.sleep(0.3)
    for worker in (on_a, on_b):
        worker.stop()
    ran = sorted(on_a.done + on_b.done)
    assert len(ran) == rounds, ran
    assert {data.split(b"-")[1] for data in ran} == {b"%d" % round_ for round_ in range(rounds)}


def status_of(port: int, handle: bytes) -> list[bytes]:
    with Raw(port) as client:
        client.send(Packet.GET_STATUS, handle)
        return client.expect(Packet.STATUS_RES, timeout=10)


def test_get_status_of_a_job_handed_to_the_cluster(gearmand, postgres_server) -> None:
    """GET_STATUS and /jobs/<handle> on the gateway a background job was submitted to, while another gateway's
    worker holds it: known and running, read from the table; unknown once it is done."""
    conninfo = new_database(postgres_server)
    http_port = free_port()
    a = gearmand(*shared_args(conninfo), "-r", "http", "--http-port", str(http_port))
    wait_listening(http_port, a.proc)
    b = gearmand(*shared_args(conninfo))
    (handle,) = submit_background(a.port, b"far-status", [b"s"])  # nobody can do it: handed to the cluster
    assert status_of(a.port, handle) == [handle, b"1", b"0", b"0", b"0"]
    url = f"http://127.0.0.1:{http_port}/_gearman/jobs/{handle.decode()}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert (body["known"], body["running"]) == (True, False)
    worker = RecordingWorker(b.port, b"far-status", delay=1.5)
    worker.start()
    wait_for(lambda: b"s" in worker.started_at, 10, "b's worker to take the job")
    assert status_of(a.port, handle) == [handle, b"1", b"1", b"0", b"0"]
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    assert (body["known"], body["running"]) == (True, True)
    wait_for(lambda: worker.done == [b"s"], 10, "the job to finish")
    wait_for(lambda: status_of(a.port, handle)[1] == b"0", 5, "its row to go")
    worker.stop()
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=5)
    assert error.value.code == 404


@pytest.mark.parametrize("when", ["registered", "registering"])
def test_a_registered_foreground_job_promoted_to_background_keeps_one_row(gearmand, postgres_server, when) -> None:
    """A background submit with the unique of a foreground job run here (registered, or its registration under
    way): the registration row becomes the job's background row (no second row that another gateway could run),
    the job runs once, and its row goes when it is done."""
    import psycopg

    conninfo = new_database(postgres_server)
    a = gearmand(*shared_args(conninfo))
    worker = RecordingWorker(a.port, b"promo", delay=1.0)
    worker.start()
    worker.ready.wait(5)
    rows = "SELECT handle, reply_to FROM gearman_gateway_shared WHERE unique_key = 'u-promo'"
    with psycopg.connect(conninfo, autocommit=True) as conn, Raw(a.port) as client, Raw(a.port) as other:
        # registering: both submits in one read of one connection, so in one reactor turn: the registration is
        # written at the end of that turn, after the promotion came
        fg_submit = encode_request(Packet.SUBMIT_JOB, b"promo", b"u-promo", b"fg")
        bg_submit = encode_request(Packet.SUBMIT_JOB_BG, b"promo", b"u-promo", b"bg")
        if when == "registering":
            bg = client
            client.send_raw(fg_submit + bg_submit)
        else:
            bg = other
            client.send_raw(fg_submit)
            handle = client.expect(Packet.JOB_CREATED, timeout=10)[0]
            wait_for(lambda: b"fg" in worker.started_at, 10, "the job to start")
            bg.send_raw(bg_submit)
        if when == "registering":
            handle = client.expect(Packet.JOB_CREATED, timeout=10)[0]
        assert bg.expect(Packet.JOB_CREATED, timeout=10) == [handle]
        found = conn.execute(rows).fetchall()
        assert [(bytes(h), r) for h, r in found] == [(handle, None)]  # one row, a background one
        assert client.recv(10) == (Packet.WORK_COMPLETE, [handle, b"ok"])
        wait_for(lambda: conn.execute(rows).fetchall() == [], 10, "the done job's row to go")
    time.sleep(0.3)
    worker.stop()
    assert worker.done == [b"fg"]
