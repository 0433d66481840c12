"""Soak tests against the real `gearmand`: 10,000 connections at once while jobs flow, with the server's memory
bounded; workers killed at random under load; a slowloris HTTP client and a client that never reads, with
another client's latency measured during the attack. They run in the README's test command at full length:
the worker-killing load lasts 60 seconds, as issue 18 asks (``SOAK_SECONDS=N`` for another length)."""

from __future__ import annotations

import os
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import ServerFactory, free_port, wait_listening
from tests.integration.rawclient import Raw, submit
from tests.integration.test_http_frontend import wait_for

pytestmark = pytest.mark.soak

#: The worker-killing load's length (the whole suite stays within its 15 minutes with it: about 9 now).
LOAD_SECONDS = float(os.environ.get("SOAK_SECONDS") or 60)
CONNECTIONS = 10_000
#: The server's resident memory with 10,000 idle connections stays under this (measured 43 MiB here).
RSS_BOUND_MIB = 120


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"RLIMIT_NOFILE's hard limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def echo_latency(port: int) -> float:
    begun = time.monotonic()
    with Raw(port, timeout=10) as conn:
        assert conn.call(Packet.ECHO_REQ, b"ping") == (Packet.ECHO_RES, [b"ping"])
    return time.monotonic() - begun


class EchoWorker(threading.Thread):
    """A worker thread that answers ``function`` with its payload reversed until stopped."""

    def __init__(self, port: int, function: bytes) -> None:
        super().__init__(daemon=True)
        self.conn = Raw(port)
        self.conn.send(Packet.CAN_DO, function)
        self.stopping = False

    def run(self) -> None:
        conn = self.conn
        while not self.stopping:
            conn.send(Packet.GRAB_JOB)
            try:
                kind, args = conn.recv(timeout=0.5)
            except (TimeoutError, EOFError):
                return
            if kind == Packet.JOB_ASSIGN:
                conn.send(Packet.WORK_COMPLETE, args[0], args[2][::-1])
            elif kind == Packet.NO_JOB:
                conn.send(Packet.PRE_SLEEP)
                try:
                    conn.recv(timeout=0.2)  # NOOP
                except TimeoutError:
                    pass
                except EOFError:
                    return


def completions(client: Raw, count: int) -> list[bytes]:
    """The results of ``count`` foreground jobs (their JOB_CREATED come in between)."""
    results = []
    while len(results) < count:
        kind, args = client.recv()
        if kind == Packet.WORK_COMPLETE:
            results.append(args[1])
    return results


def test_ten_thousand_connections_while_jobs_flow(gearmand: ServerFactory) -> None:
    raise_fd_limit(CONNECTIONS + 500)
    server = gearmand("-q", "memory", "-b", "4096")  # gearmand raises its own RLIMIT_NOFILE to the hard limit
    worker = EchoWorker(server.port, b"rev")
    worker.start()
    idle: list[socket.socket] = []
    try:
        with Raw(server.port) as client:
            for n in range(CONNECTIONS):
                idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
                if n % 1000 == 0:  # jobs flow while the connections pile up
                    client.send(Packet.SUBMIT_JOB, b"rev", b"", b"%d" % n)
                    assert completions(client, 1) == [(b"%d" % n)[::-1]]
            wait_for(lambda: len(server.admin("workers").splitlines()) > CONNECTIONS, timeout=30, what="accepts")
            for n in range(200):  # and with all of them open
                client.send(Packet.SUBMIT_JOB, b"rev", b"", b"job%d" % n)
            assert sorted(completions(client, 200)) == sorted((b"job%d" % n)[::-1] for n in range(200))
            assert echo_latency(server.port) < 2.0
        rss = rss_mib(server.pid)
        print(f"RSS with {CONNECTIONS} connections: {rss:.1f} MiB")
        assert rss < RSS_BOUND_MIB, f"{rss:.0f} MiB resident with {CONNECTIONS} connections"
    finally:
        for sock in idle:
            sock.close()
        worker.stopping = True
        worker.join(5)
    wait_for(lambda: len(server.admin("workers").splitlines()) < 10, timeout=30, what="the closes")
    assert server.proc.poll() is None


WORKER_SCRIPT = r"""
import os, random, sys, time
sys.path.insert(0, sys.argv[3])
from protocols.binary.packets import Packet
from tests.integration.rawclient import Raw
conn = Raw(int(sys.argv[1]))
conn.send(Packet.CAN_DO, b"soak")
out = os.open(sys.argv[2], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
while True:
    conn.send(Packet.GRAB_JOB)
    kind, args = conn.recv(timeout=None)
    if kind == Packet.JOB_ASSIGN:
        time.sleep(random.random() * 0.01)
        os.write(out, args[2] + b"\n")
        conn.send(Packet.WORK_COMPLETE, args[0], args[2])
    elif kind == Packet.NO_JOB:
        conn.send(Packet.PRE_SLEEP)
        conn.recv(timeout=None)
"""


@pytest.mark.timeout(LOAD_SECONDS + 180)
def test_workers_killed_at_random_under_load(gearmand: ServerFactory, tmp_path: Path) -> None:
    """Every foreground client gets its result (or WORK_FAIL) and every background job runs."""
    server = gearmand("-q", "memory")
    done_file = tmp_path / "done"
    root = str(Path(__file__).resolve().parents[2])

    def spawn() -> subprocess.Popen:
        argv = [sys.executable, "-c", WORKER_SCRIPT, str(server.port), str(done_file), root]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    workers = [spawn() for _ in range(4)]
    stop = threading.Event()
    outcomes: list[int] = []
    background: list[bytes] = []
    errors: list[BaseException] = []

    def foreground(index: int) -> None:
        try:
            with Raw(server.port, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    payload = b"fg-%d-%d" % (index, n)
                    client.send(Packet.SUBMIT_JOB, b"soak", b"", payload)
                    client.expect(Packet.JOB_CREATED)
                    while True:
                        kind, args = client.recv()
                        if kind in (Packet.WORK_COMPLETE, Packet.WORK_FAIL):
                            assert kind == Packet.WORK_FAIL or args[1] == payload
                            outcomes.append(kind)
                            break
                    n += 1
        except BaseException as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def submit_background() -> None:
        try:
            with Raw(server.port, timeout=60) as client:
                n = 0
                while not stop.is_set():
                    payload = b"bg-%d" % n
                    submit(client, b"soak", payload, ptype=Packet.SUBMIT_JOB_BG)
                    background.append(payload)
                    n += 1
                    time.sleep(0.002)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=foreground, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=submit_background))
    for thread in threads:
        thread.start()
    kills = 0
    deadline = time.monotonic() + LOAD_SECONDS
    rng = random.Random(18)
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.05, 0.4))
            victim = rng.randrange(len(workers))
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait()
            workers[victim] = spawn()
            kills += 1
        stop.set()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert all(not thread.is_alive() for thread in threads), "a foreground client got no answer"
        ran = set()
        wait_for(
            lambda: ran.update(done_file.read_bytes().split()) or set(background) <= ran,
            timeout=60,
            what="every background job to run",
        )
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert kills >= LOAD_SECONDS and len(outcomes) > 100 and len(background) > 100
    assert server.proc.poll() is None


def test_slowloris_and_a_client_that_never_reads_stall_nobody(gearmand: ServerFactory) -> None:
    http_port = free_port()
    server = gearmand("-q", "memory", "-r", "http", "--http-port", str(http_port), "--max-output-buffer", "4000000")
    wait_listening(http_port, server.proc)
    baseline = min(echo_latency(server.port) for _ in range(5))
    # slowloris: 300 HTTP connections, each sending its request line and headers a few bytes at a time
    slow = [socket.create_connection(("127.0.0.1", http_port), timeout=10) for _ in range(300)]
    request = b"POST /rev HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-Pad: " + b"a" * 100
    # a client that never reads: it asks for ~60 MB of echoes and reads none of them
    deaf = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    deaf.setblocking(False)
    echo = b"\0REQ" + (16).to_bytes(4, "big") + (60000).to_bytes(4, "big") + b"x" * 60000
    latencies = []
    sent = 0
    for step in range(0, len(request), 4):
        for conn in slow:
            conn.send(request[step : step + 4])
        try:
            sent += deaf.send(echo * 10)
        except (BlockingIOError, ConnectionResetError, BrokenPipeError):
            pass
        latencies.append(echo_latency(server.port))
    worst = max(latencies)
    assert worst < 1.0, f"another client's echo took {worst:.3f}s (baseline {baseline:.4f}s)"
    # the server stopped reading the deaf client once its replies backed up (and would cut it off at
    # --max-output-buffer): what it holds for it stays bounded
    assert sent < len(echo) * 10 * len(latencies) and rss_mib(server.pid) < RSS_BOUND_MIB
    for conn in slow:
        conn.close()
    deaf.close()
    assert echo_latency(server.port) < 1.0
