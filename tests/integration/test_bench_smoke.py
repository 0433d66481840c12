"""Benchmark smoke test: a small fg run with bench/loadgen.py, judged only against baselines measured in the same
test run, never against absolute times. It fails on a gross regression only: ten times worse than the ratio
measured when the test was written (see docs/performance.md for the real figures).

- fg jobs/s of our server against the GRAB_JOB -> NO_JOB round-trip rate of the same server (the loopback and
  reactor floor: an fg job needs a few such round trips);
- fg jobs/s of our server against Debian's gearmand doing the same fg run (where it is installed);
- RSS per idle worker connection: within issue 6's ceiling, and below gearmand's in the same run (a memory
  figure repeats closely, so this one needs no tenfold margin);
- HTTP requests per CPU-second of our server, a new connection per request (issue 15).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RunningServer, free_port, wait_listening

LOADGEN = Path(__file__).resolve().parents[2] / "bench" / "loadgen.py"
C_WORKER = "/usr/bin/gearman"  # Debian's C client: with -w and no command it answers every job at once
FG = ("-s", "fg", "-n", "2000", "-c", "8", "-w", "8", "-b", "64")
PING = ("-s", "ping", "-n", "4000", "-c", "8")
#: fg jobs/s over ping round trips/s of the same server when this test was written: 0.17 to 0.32 (loadgen.py
#: with one process limits fg more than ping); 0.18 to 0.24 at 33ab74d.
FG_PER_PING = 0.2
#: Our fg jobs/s over gearmand's in this small run: 0.54 to 0.76 when this test was written, 1.2 to 1.5 since
#: held grabs and acknowledgements that travel with their results (33ab74d).
FG_VS_GEARMAND = 1.0
#: How much worse than those ratios fails the test.
GROSS = 10.0
#: 800 idle workers (CAN_DO another function, GRAB_JOB, PRE_SLEEP): within a default limit of 1,024 descriptors.
IDLE = ("-s", "idle", "-i", "800", "-n", "200", "-c", "4", "-w", "4", "-b", "64")
#: Issue 6's ceiling for RSS per idle connection, KiB. Ours measured at 5,000 connections: 0.9–1.0 since
#: 56fb373, 1.1–1.2 since 246554c, 2.0–2.1 before; gearmand 10.7.
IDLE_RSS_LIMIT_KB = 4.0


def loadgen(server: RunningServer, *options: str) -> dict[str, Any]:
    """One loadgen.py run (one generator process: this is a smoke test, not a measurement) -> its JSON line."""
    argv = [sys.executable, str(LOADGEN), "-p", str(server.port), "-P", str(server.pid), "-j", "1", "-t", "30"]
    done = subprocess.run([*argv, *options], capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, f"loadgen failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    row = json.loads(done.stdout.splitlines()[-1])
    assert row["completed"] == row["jobs"] and row["errors"] == 0, row
    return row


def best(server: RunningServer, options: tuple[str, ...], key: str = "jobs_per_s", runs: int = 2) -> float:
    """The best of ``runs`` (other tests share the CPUs: the best run is the least disturbed one)."""
    return max(loadgen(server, *options)[key] for _ in range(runs))


def test_fg_is_not_grossly_slower_than_round_trips_on_the_same_server(gearmand) -> None:
    server = gearmand("-q", "memory")
    ping = best(server, PING)
    fg = best(server, FG)
    ratio = fg / ping
    print(f"fg {fg:.0f} jobs/s, ping {ping:.0f} round trips/s, ratio {ratio:.2f} (written at ~{FG_PER_PING})")
    assert ratio >= FG_PER_PING / GROSS, f"fg jobs/s is {ratio:.3f} of the round-trip rate: a gross regression"


def test_fg_is_not_grossly_slower_than_gearmand(gearmand, real_gearmand) -> None:
    ours, reference = gearmand("-q", "memory"), real_gearmand()
    rates: dict[str, list[float]] = {"ours": [], "gearmand": []}
    for _ in range(2):  # interleaved, so a burst of load elsewhere hits both
        rates["gearmand"].append(loadgen(reference, *FG)["jobs_per_s"])
        rates["ours"].append(loadgen(ours, *FG)["jobs_per_s"])
    ratio = max(rates["ours"]) / max(rates["gearmand"])
    print(f"fg jobs/s {rates}, ours/gearmand {ratio:.2f} (written at ~{FG_VS_GEARMAND})")
    assert ratio >= FG_VS_GEARMAND / GROSS, f"fg jobs/s is {ratio:.3f} of gearmand's: a gross regression"


def test_idle_connections_cost_little_memory_next_to_gearmand(gearmand, real_gearmand) -> None:
    """Freshly started servers, so that the growth is not hidden by memory freed earlier."""
    ours = loadgen(gearmand("-q", "memory"), *IDLE)["rss_per_idle_conn_kb"]
    theirs = loadgen(real_gearmand(), *IDLE)["rss_per_idle_conn_kb"]
    print(f"RSS per idle connection: ours {ours} KiB, gearmand {theirs} KiB")
    assert ours <= IDLE_RSS_LIMIT_KB, f"{ours} KiB of RSS per idle connection: over the {IDLE_RSS_LIMIT_KB} KiB ceiling"
    assert ours < theirs, f"{ours} KiB per idle connection, gearmand {theirs}: more than the C server"


# -- HTTP (issue 15): requests per CPU-second of the server, on a new connection per request

#: HTTP requests (a new connection each, ``Connection: close``) per CPU-second of our server when this test
#: was written, with the C worker answering at once: 4,050–4,170 (about 250 µs of server CPU per request, the
#: kernel's share included) on a loaded 2-vCPU machine; 1,360–1,490 before the fast path of issue 15.
HTTP_REQUESTS_PER_CPU_SECOND = 4000.0
HTTP_REQUESTS = 1500
HTTP_THREADS = 4


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_requests(port: int, count: int, tag: str) -> int:
    """``count`` POSTs, each on its own connection, from HTTP_THREADS threads; the number answered 200."""
    answered = [0] * HTTP_THREADS

    def client(index: int) -> None:
        for i in range(count // HTTP_THREADS):
            body = f"{tag} {index} {i}".encode()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(
                    b"POST /bench HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                answer = b""
                while data := sock.recv(65536):
                    answer += data
            answered[index] += answer.startswith(b"HTTP/1.1 200 ")

    threads = [threading.Thread(target=client, args=(index,)) for index in range(HTTP_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return sum(answered)


def test_http_requests_per_cpu_second_are_not_grossly_fewer(gearmand) -> None:
    if not os.access(C_WORKER, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{C_WORKER} is missing: scripts/setup --test installs gearman-tools")
        pytest.skip(f"{C_WORKER} is not installed")
    http_port = free_port()
    server = gearmand("-q", "memory", "-r", "http", "--http-port", str(http_port))
    wait_listening(http_port, server.proc)
    worker = subprocess.Popen(
        [C_WORKER, "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", "bench"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert http_requests(http_port, 40, "warm-up") == 40  # the worker has registered, the paths are warm
        rates = []
        for run in range(2):  # the best of two: other tests share the CPUs
            before = cpu_seconds(server.pid)
            answered = http_requests(http_port, HTTP_REQUESTS, f"run {run}")
            used = cpu_seconds(server.pid) - before
            assert answered == HTTP_REQUESTS
            rates.append(answered / max(used, 0.01))
    finally:
        worker.terminate()
        worker.wait(5)
    rate = max(rates)
    print(f"HTTP requests per CPU-second of the server: {rates} (written at ~{HTTP_REQUESTS_PER_CPU_SECOND:.0f})")
    assert rate >= HTTP_REQUESTS_PER_CPU_SECOND / GROSS, f"{rate:.0f} HTTP requests per CPU-second: a gross regression"
