"""One poison job must not stop a whole function (issue 13, item 9).

The issue's scenario on the real server: one job that kills every worker that takes it, queued ahead of 50
ordinary ones; a worker process (the project's Worker library) that os._exit()s on the poison payload and
is started again by the test whenever it dies. With the default unlimited retries the 50 must all run
(gearmand runs them all: a requeued job goes to the tail), background or foreground, on sqlite and in
memory. Then the poison job, still retried for ever, is visible: admin `show poison jobs`, the JSON status,
the Prometheus counter and gauge, one log line at the third death.

A died job waits behind every job that has not failed, not only behind those of its own priority and
function: a poison HIGH job ahead of 50 normal ones, and a poison job of one function ahead of 50 jobs of
another that the same worker does, must not stop the 50 either (gearmand's tail of the priority would).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gearman_gateway.client import Client
from protocols.binary.codec import encode_request
from protocols.binary.packets import Packet
from tests.integration.conftest import RunningServer
from tests.integration.rawclient import Raw
from tests.integration.test_http_frontend import HttpServer, start_http

TIMEOUT = 60.0
FUNCTION = "poisoned"
OTHER = "poisoned_too"  # a second function of the same worker
ORDINARY = [f"job {n}" for n in range(50)]

WORKER = """
import os, sys
from gearman_gateway.worker import Worker

def run(job):
    if job.workload == b"poison":
        os._exit(3)  # the worker process dies with the job, as a segfault or an OOM kill would
    print(job.workload.decode(), flush=True)
    return job.workload.upper()

worker = Worker(sys.argv[1])
for function in sys.argv[2:]:
    worker.add_function(function, run)
print("ready", flush=True)
worker.work_forever()
"""


class RestartedWorker:
    """A worker process of ``functions`` started again whenever it dies; ``ran`` lists the payloads it
    completed."""

    def __init__(self, server: RunningServer, tmp_path: Path, functions: tuple[str, ...] = (FUNCTION,)) -> None:
        self.script = tmp_path / "poisoned_worker.py"
        self.script.write_text(WORKER)
        self.server = server
        self.functions = functions
        self.ran: list[str] = []
        self.deaths = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), self.server.address, *self.functions],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run_until(self, done, deadline: float, max_deaths: int) -> None:
        """Read what the worker completed, restarting it when it dies, until ``done()``."""
        while not done():
            assert time.monotonic() < deadline and self.deaths <= max_deaths, (
                f"{len(self.ran)} of 50 ran; the poison job killed {self.deaths} workers"
            )
            if self.proc is None:
                self.start()
            assert self.proc is not None and self.proc.stdout is not None
            line = self.proc.stdout.readline()  # blocks until a job completed or the worker died
            if line == "":
                assert self.proc.wait(TIMEOUT) == 3, "the worker died of something else"
                self.deaths += 1
                self.proc = None
            elif line != "ready\n":
                self.ran.append(line.rstrip("\n"))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT)


def submit_background(
    server: RunningServer, poison: Packet = Packet.SUBMIT_JOB_BG, ordinary_function: str = FUNCTION
) -> None:
    """The poison job first (of FUNCTION, submitted with ``poison``), then the 50 (normal priority), in one
    write; returns once all are acknowledged."""
    packets = [encode_request(poison, FUNCTION.encode(), b"", b"poison")]
    packets += [encode_request(Packet.SUBMIT_JOB_BG, ordinary_function.encode(), b"", d.encode()) for d in ORDINARY]
    with Raw(server.port, timeout=TIMEOUT) as client:
        client.send_raw(b"".join(packets))
        for _ in packets:
            client.expect(Packet.JOB_CREATED)


def metric(http: HttpServer, name: str) -> float:
    _, _, body = http.request("GET", "/_gearman/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("function") == FUNCTION:
                return sample.value
    raise AssertionError(f"{name} for {FUNCTION} is not in the metrics")


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
@pytest.mark.parametrize("store", ["sqlite", "memory"])
def test_one_poison_job_ahead_of_50_does_not_stop_them(store, foreground, gearmand, tmp_path) -> None:
    http = start_http(gearmand, *(["-q", "memory"] if store == "memory" else []))
    server = http.server
    worker = RestartedWorker(server, tmp_path)
    deadline = time.monotonic() + TIMEOUT
    results: dict[str, bytes] = {}
    poison_client = None
    waiter = None
    try:
        if foreground:
            # the poison job's client waits for ever; the 50 ordinary ones come from the project's client
            poison_client = Raw(server.port, timeout=TIMEOUT)
            poison_client.send(Packet.SUBMIT_JOB, FUNCTION.encode(), b"", b"poison")
            poison_client.expect(Packet.JOB_CREATED)
            client = Client(server.address, timeout=TIMEOUT)
            tasks = [client.add_task(FUNCTION, data) for data in ORDINARY]
            waiter = threading.Thread(target=client.run_tasks, daemon=True)
            waiter.start()
            wait_for_queued(server, {FUNCTION: 51})
        else:
            submit_background(server)
        worker.run_until(lambda: len(worker.ran) == len(ORDINARY), deadline, max_deaths=10)
        assert sorted(worker.ran) == sorted(ORDINARY) and worker.deaths == 1
        if waiter is not None:
            waiter.join(TIMEOUT)
            assert not waiter.is_alive()
            results = {task.workload.decode(): task.result for task in tasks}
            assert results == {data: data.upper().encode() for data in ORDINARY}
            client.close()

        # retried for ever (the default), the poison job goes on killing workers: at the third it shows
        worker.run_until(lambda: worker.deaths == 3, deadline, max_deaths=3)
        handle = poison_handle(server)
        assert server.admin("show poison jobs") == f"{handle}\t{FUNCTION}\t3\n.\n"
        status, data = http.json("/_gearman/status")
        assert status == 200
        assert data["poison_jobs"] == [
            {"handle": handle, "function": FUNCTION, "deaths": 3, "running": False, "background": not foreground}
        ]
        (entry,) = [fn for fn in data["functions"] if fn["name"] == FUNCTION]
        assert entry["worker_deaths"] == 3 and entry["completed"] == 50 and entry["completed"] <= entry["submitted"]
        assert metric(http, "gearman_job_worker_deaths_total") == 3
        assert metric(http, "gearman_poison_jobs") == 1
        log = server.log()
        assert f"job {handle} of function {FUNCTION}: its worker died or timed out 3 times" in log
        assert log.count("its worker died or timed out") == 1 and "b'" not in log
    finally:
        worker.stop()
        if poison_client is not None:
            poison_client.close()


def wait_for_queued(server: RunningServer, counts: dict[str, int]) -> None:
    """Until `status` shows at least these counts of jobs per function (the client's submits are not
    acknowledged to this thread)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        shown = {
            fields[0]: int(fields[1])
            for fields in (line.split("\t") for line in server.admin("status").splitlines())
            if len(fields) == 4
        }
        if all(shown.get(function, 0) >= count for function, count in counts.items()):
            return
        assert time.monotonic() < deadline, server.admin("status")
        time.sleep(0.01)


def wait_for_priority_status(server: RunningServer, expected: str) -> None:
    """Until admin `prioritystatus` shows FUNCTION's line as ``expected`` (the server notices a worker's
    death when its connection closes, a moment after the process is gone)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = [line for line in server.admin("prioritystatus").splitlines() if line.startswith(FUNCTION + "\t")]
        if lines == [expected]:
            return
        assert time.monotonic() < deadline, lines
        time.sleep(0.01)


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
@pytest.mark.parametrize("store", ["sqlite", "builtin"])
@pytest.mark.parametrize("scenario", ["high-priority", "other-function"])
def test_a_poison_job_never_stays_ahead_of_jobs_that_never_failed(scenario, store, foreground, gearmand, tmp_path):
    """``high-priority``: a poison HIGH job ahead of 50 normal ones of its function; ``other-function``: a
    poison job of FUNCTION ahead of 50 jobs of OTHER, all normal, and a worker that does both. After its
    first death the poison job waits behind the 50, and then still counts as HIGH (or normal) in
    `prioritystatus`."""
    server = gearmand(*(["-q", "builtin"] if store == "builtin" else []))
    high = scenario == "high-priority"
    ordinary_function = FUNCTION if high else OTHER
    worker = RestartedWorker(server, tmp_path, (FUNCTION,) if high else (FUNCTION, OTHER))
    deadline = time.monotonic() + TIMEOUT
    poison_client = None
    waiter = None
    try:
        if foreground:
            poison_client = Raw(server.port, timeout=TIMEOUT)
            poison_client.send(Packet.SUBMIT_JOB_HIGH if high else Packet.SUBMIT_JOB, FUNCTION.encode(), b"", b"poison")
            poison_client.expect(Packet.JOB_CREATED)
            client = Client(server.address, timeout=TIMEOUT)
            tasks = [client.add_task(ordinary_function, data) for data in ORDINARY]
            waiter = threading.Thread(target=client.run_tasks, daemon=True)
            waiter.start()
            wait_for_queued(server, {FUNCTION: 51} if high else {FUNCTION: 1, OTHER: 50})
        else:
            submit_background(server, Packet.SUBMIT_JOB_HIGH_BG if high else Packet.SUBMIT_JOB_BG, ordinary_function)
        worker.run_until(lambda: len(worker.ran) == len(ORDINARY), deadline, max_deaths=10)
        assert sorted(worker.ran) == sorted(ORDINARY) and worker.deaths == 1
        if waiter is not None:
            waiter.join(TIMEOUT)
            assert not waiter.is_alive()
            assert {task.workload.decode(): task.result for task in tasks} == {d: d.upper().encode() for d in ORDINARY}
            client.close()
        # retried for ever, it kills the next worker too, and waits counted in its own priority
        worker.run_until(lambda: worker.deaths == 2, deadline, max_deaths=2)
        wait_for_priority_status(server, f"{FUNCTION}\t1\t0\t0\t0" if high else f"{FUNCTION}\t0\t1\t0\t0")
    finally:
        worker.stop()
        if poison_client is not None:
            poison_client.close()


def poison_handle(server: RunningServer) -> str:
    """The one job left in memory: the poison job (`show jobs` lists handles)."""
    (line,) = server.admin("show jobs").splitlines()[:-1]
    return line.split("\t")[0]


def test_debian_gearmand_runs_the_50_too(real_gearmand, tmp_path) -> None:
    """The reference: gearmand 1.1.20 requeues at the tail, so the 50 run (and the test's worker works)."""
    server = real_gearmand()
    worker = RestartedWorker(server, tmp_path)
    try:
        submit_background(server)
        worker.run_until(lambda: len(worker.ran) == len(ORDINARY), time.monotonic() + TIMEOUT, max_deaths=10)
        assert sorted(worker.ran) == sorted(ORDINARY) and worker.deaths == 1
    finally:
        worker.stop()
