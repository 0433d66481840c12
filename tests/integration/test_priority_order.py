"""Priority order across background and foreground jobs, whatever the store (issue 13, item 2).

A worker waits; a client pipelines high-bg, high, normal-bg, normal, low-bg, low. The worker must get them
in exactly that order, as Debian's gearmand gives them with or without a queue. A background job is
acknowledged and runnable only once its row is committed: until then it keeps its place in its queue, and
a grab whose best job is that one waits for the commit instead of taking a later job.

Clients and workers: a raw client writing the six submits in one write with Debian's C worker
(`gearman -w`), PHP's GearmanClient/GearmanWorker (libgearman), and the project's own Client and Worker.
Stores: sqlite (the default), postgres, builtin (memory); and Debian's gearmand for the reference order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from gearman_gateway.client import Client
from gearman_gateway.worker import Worker
from protocols.binary.codec import encode_request
from protocols.binary.packets import Packet
from tests.integration.conftest import RunningServer, admin_command
from tests.integration.rawclient import Raw
from tests.integration.test_durability import queue_config

GEARMAN = "/usr/bin/gearman"
PHP = shutil.which("php")
TIMEOUT = 30.0

#: The issue's pipeline, in submission order, which is also the order a worker must see.
PIPELINE = [
    (Packet.SUBMIT_JOB_HIGH_BG, b"high-bg"),
    (Packet.SUBMIT_JOB_HIGH, b"high"),
    (Packet.SUBMIT_JOB_BG, b"normal-bg"),
    (Packet.SUBMIT_JOB, b"normal"),
    (Packet.SUBMIT_JOB_LOW_BG, b"low-bg"),
    (Packet.SUBMIT_JOB_LOW, b"low"),
]
EXPECTED = [data.decode() for _, data in PIPELINE]
FOREGROUND = {Packet.SUBMIT_JOB_HIGH, Packet.SUBMIT_JOB, Packet.SUBMIT_JOB_LOW}

OUR_STORES = ["sqlite", "postgres", "builtin"]


def needs(path: str | None, what: str) -> None:
    """A client this test needs: missing is a failure under CI=true, else a skip."""
    if path and os.access(path, os.X_OK):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing: scripts/setup --test installs it")
    pytest.skip(f"{what} is not installed")


def start(kind: str, request, tmp_path: Path) -> RunningServer:
    """Our server on one store, or Debian's gearmand (``kind`` "gearmand")."""
    if kind == "gearmand":
        return request.getfixturevalue("real_gearmand")()
    if "GG_TEST_SERVER" in os.environ:
        pytest.skip("our stores")
    gearmand = request.getfixturevalue("gearmand")
    if kind == "builtin":
        return gearmand("-q", "builtin")
    if kind == "sqlite":
        return gearmand()  # the default store
    config = tmp_path / "queue.yaml"
    config.write_text(__import__("yaml").safe_dump({"queue": queue_config(kind, request, tmp_path)}))
    return gearmand("--config", str(config))


def registered(server: RunningServer, function: str) -> bool:
    for line in admin_command(server.port, "status").splitlines():
        fields = line.split("\t")
        if fields[0] == function and len(fields) == 4:
            return int(fields[3]) > 0
    return False


def wait_registered(server: RunningServer, function: str, proc: subprocess.Popen | None = None) -> None:
    """Until the worker's CAN_DO reached the server (nothing announces it: the admin port is polled)."""
    deadline = time.monotonic() + TIMEOUT
    while not registered(server, function):
        assert proc is None or proc.poll() is None, f"the worker exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"no worker registered {function}"
        time.sleep(0.01)


def pipeline_in_one_write(port: int, function: bytes) -> None:
    """The six submits in one write; returns once the background ones are acknowledged and the foreground
    ones have completed."""
    with Raw(port, timeout=TIMEOUT) as client:
        client.send_raw(b"".join(encode_request(ptype, function, b"", data) for ptype, data in PIPELINE))
        created = completed = 0
        while created < len(PIPELINE) or completed < len(FOREGROUND):
            ptype, _ = client.recv()
            assert ptype in (Packet.JOB_CREATED, Packet.WORK_COMPLETE), ptype
            created += ptype == Packet.JOB_CREATED
            completed += ptype == Packet.WORK_COMPLETE


def c_worker(server: RunningServer, function: str, out: Path) -> subprocess.Popen:
    """Debian's C worker (libgearman: GRAB_JOB, then PRE_SLEEP on NO_JOB), for six jobs: each job's
    workload is appended to ``out``, one per line."""
    needs(GEARMAN, "Debian's gearman tool (gearman-tools)")
    argv = [GEARMAN, "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", function, "-c", str(len(PIPELINE))]
    argv += ["--", "sh", "-c", f"cat >> '{out}'; echo >> '{out}'"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_registered(server, function, proc)
    return proc


def finish(proc: subprocess.Popen) -> None:
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else proc.returncode


@pytest.mark.parametrize("kind", [*OUR_STORES, "gearmand"])
def test_one_write_pipeline_reaches_a_waiting_c_worker_in_order(kind, request, tmp_path) -> None:
    server = start(kind, request, tmp_path)
    out = tmp_path / "seen.txt"
    worker = c_worker(server, "order", out)
    pipeline_in_one_write(server.port, b"order")
    finish(worker)
    assert out.read_text().splitlines() == EXPECTED


#: libgearman sends the task added last first: the tasks are added in reverse, so that the six submits go
#: out in the issue's order (Debian's gearmand then runs them in EXPECTED order, as the test checks).
PHP_CLIENT = """<?php
$c = new GearmanClient();
$c->addServer('127.0.0.1', (int)$argv[1]);
$f = $argv[2];
$c->addTaskLow($f, 'low');
$c->addTaskLowBackground($f, 'low-bg');
$c->addTask($f, 'normal');
$c->addTaskBackground($f, 'normal-bg');
$c->addTaskHigh($f, 'high');
$c->addTaskHighBackground($f, 'high-bg');
if (!$c->runTasks()) { fwrite(STDERR, $c->error() . "\\n"); exit(1); }
"""

PHP_WORKER = """<?php
$w = new GearmanWorker();
$w->addServer('127.0.0.1', (int)$argv[1]);
$out = $argv[3];
$w->addFunction($argv[2], function ($job) use ($out) {
    file_put_contents($out, $job->workload() . "\\n", FILE_APPEND);
    return 'ok';
});
for ($i = 0; $i < 6; $i++) {
    if (!$w->work()) { fwrite(STDERR, $w->error() . "\\n"); exit(1); }
}
"""


def php(tmp_path: Path, name: str, source: str, *args: str) -> subprocess.Popen:
    needs(PHP, "php-cli")
    probe = subprocess.run([PHP, "-r", "exit(class_exists('GearmanClient') ? 0 : 1);"], check=False)
    if probe.returncode != 0:
        needs(None, "php-gearman")
    script = tmp_path / name
    script.write_text(source)
    return subprocess.Popen([PHP, str(script), *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip


@pytest.mark.parametrize("kind", [*OUR_STORES, "gearmand"])
def test_php_client_tasks_reach_a_waiting_php_worker_in_order(kind, request, tmp_path) -> None:
    server = start(kind, request, tmp_path)
    out = tmp_path / "seen.txt"
    worker = php(tmp_path, "worker.php", PHP_WORKER, str(server.port), "order", str(out))
    wait_registered(server, "order", worker)
    finish(php(tmp_path, "client.php", PHP_CLIENT, str(server.port), "order"))
    finish(worker)
    assert out.read_text().splitlines() == EXPECTED


@pytest.mark.parametrize("kind", [*OUR_STORES, "gearmand"])
def test_our_client_tasks_reach_our_waiting_worker_in_order(kind, request, tmp_path) -> None:
    server = start(kind, request, tmp_path)
    seen: list[str] = []
    worker = Worker(server.address)
    worker.add_function("order", lambda job: seen.append(job.workload.decode()) or b"ok")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while len(seen) < len(PIPELINE):
                worker.work(TIMEOUT)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    wait_registered(server, "order")
    client = Client(server.address, timeout=TIMEOUT)
    client.add_task_high_background("order", "high-bg")
    client.add_task_high("order", "high")
    client.add_task_background("order", "normal-bg")
    client.add_task("order", "normal")
    client.add_task_low_background("order", "low-bg")
    client.add_task_low("order", "low")
    client.run_tasks()
    thread.join(TIMEOUT)
    assert not thread.is_alive() and not errors, errors
    worker.close()
    client.close()
    assert seen == EXPECTED
