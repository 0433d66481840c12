"""10,000 HTTP jobs over 50 concurrent keep-alive connections, every answer checked.

Workers: four processes speaking the binary protocol with plain sockets (WORK_COMPLETE and the next
GRAB_JOB in one write), each returning its workload reversed. Clients: 50 threads, each with one
http.client connection kept alive for all of its 200 requests.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tests.integration import test_http_frontend as frontend
from tests.integration.test_http_frontend import HttpServer, function_status, wait_for

web = frontend.web  # fixture

CONNECTIONS = 50
JOBS = 10_000
WORKERS = 4

WORKER = r"""
import socket, struct, sys

def packet(ptype, *args):
    body = b"\0".join(args)
    return b"\0REQ" + struct.pack(">II", ptype, len(body)) + body

CAN_DO, PRE_SLEEP, NOOP, GRAB_JOB, NO_JOB, JOB_ASSIGN, WORK_COMPLETE = 1, 4, 6, 9, 10, 11, 13
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
sock.sendall(packet(CAN_DO, b"reverse") + packet(GRAB_JOB))
buffer = b""
while True:
    while len(buffer) < 12 or len(buffer) < 12 + struct.unpack(">I", buffer[8:12])[0]:
        data = sock.recv(1 << 16)
        if not data:
            sys.exit(0)
        buffer += data
    ptype, size = struct.unpack(">II", buffer[4:12])
    body, buffer = buffer[12 : 12 + size], buffer[12 + size :]
    if ptype == JOB_ASSIGN:
        handle, _, workload = body.split(b"\0", 2)
        sock.sendall(packet(WORK_COMPLETE, handle, workload[::-1]) + packet(GRAB_JOB))
    elif ptype == NO_JOB:
        sock.sendall(packet(PRE_SLEEP))
    elif ptype == NOOP:
        sock.sendall(packet(GRAB_JOB))
"""


@pytest.fixture
def workers(web: HttpServer):
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(web.port)]) for _ in range(WORKERS)]
    wait_for(lambda: (function_status(web.server, "reverse") or (0, 0, 0))[2] == WORKERS, what="workers")
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(5)


def test_ten_thousand_jobs_over_fifty_keepalive_connections(web: HttpServer, workers) -> None:
    per_connection = JOBS // CONNECTIONS
    failures: list[str] = []
    done = [0] * CONNECTIONS
    sockets: list[set] = [set() for _ in range(CONNECTIONS)]

    def client(index: int) -> None:
        conn = web.connection(timeout=30)
        try:
            for i in range(per_connection):
                body = f"connection {index} job {i}".encode()
                conn.request("POST", "/reverse", body=body)
                response = conn.getresponse()
                result = response.read()
                if response.status != 200 or result != body[::-1]:
                    failures.append(f"{index}/{i}: {response.status} {result!r}")
                    return
                if response.getheader("X-Gearman-Command") != "WORK_COMPLETE":
                    failures.append(f"{index}/{i}: {response.getheaders()}")
                    return
                sockets[index].add(conn.sock.getsockname())
                done[index] += 1
        except Exception as error:  # reported below with the others
            failures.append(f"{index}: {error!r}")
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    assert not failures, failures[:5]
    assert sum(done) == JOBS
    assert all(len(ids) == 1 for ids in sockets)  # every client kept its one connection
    assert function_status(web.server, "reverse") == (0, 0, WORKERS)
    assert elapsed < 30, f"{JOBS} jobs took {elapsed:.1f} s"
    print(f"\n{JOBS} HTTP jobs over {CONNECTIONS} keep-alive connections in {elapsed:.1f} s")
