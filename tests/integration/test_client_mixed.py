"""Our client and worker mixed with independent implementations, over real servers.

- our Client with the C `gearman -w` worker (libgearman 1.1.20);
- the C `gearman` client with our Worker;
- PyPI `gear` with ours, in both directions.
The C tools are called by absolute path: this package installs a `gearman` of its own.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import gear
import pytest

from gearman_gateway import Client
from gearman_gateway.client import JobFailed, Task
from gearman_gateway.worker import WORK_FAIL, Job

from . import test_client_library as lib
from .conftest import RunningServer
from .test_client_library import TIMEOUT, WorkerThread, running_workers
from .test_gear_clients import GearEnv

C_GEARMAN = "/usr/bin/gearman"
ENV = {k: v for k, v in os.environ.items() if k != "GEARMAN_SERVER"}

pytestmark = [
    pytest.mark.skipif(not Path(C_GEARMAN).exists(), reason="Debian's gearman-tools are not installed"),
    pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning"),
]


module_servers = lib.module_servers  # our server and gearmand, once for the module
any_server = lib.any_server  # each test that takes it runs on both


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerThread]]:
    with running_workers() as start:
        yield start


@pytest.fixture
def c_worker(any_server: RunningServer) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Starts `/usr/bin/gearman -w ...` against the server; each is killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        argv = [C_GEARMAN, "-w", "-h", any_server.host, "-p", str(any_server.port), *args]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=ENV))
        return procs[-1]

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)


def c_client(server: RunningServer, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    argv = [C_GEARMAN, "-h", server.host, "-p", str(server.port), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT, env=ENV, check=False)


def fname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_our_client_with_the_c_worker(any_server: RunningServer, c_worker: Callable[..., object]) -> None:
    rev, cat, lines, fails = fname("rev"), fname("cat"), fname("lines"), fname("fails")
    c_worker("-f", rev, "--", "rev")
    c_worker("-f", cat, "--", "cat")
    c_worker("-n", "-f", lines, "--", "printf", "a\\nb\\n")
    c_worker("-f", fails, "--", "sh", "-c", "echo partial; exit 3")
    client = Client(any_server.address, timeout=TIMEOUT)
    assert client.do(rev, "hello\nworld\n") == b"olleh\ndlrow\n"
    binary = bytes(range(256)) * 256
    assert client.do_high(cat, binary) == binary

    chunks: list[bytes] = []
    client.set_data_fn(lambda task: chunks.append(task.data))
    task = client.add_task(lines, "ignored")
    client.run_tasks()
    assert task.result == b"" and chunks == [b"a\n", b"a\nb\n"]  # libgearman's -n re-sends what it read so far

    failed: list[Task] = []
    client.set_fail_fn(failed.append)
    task = client.add_task(fails, "x")
    client.run_tasks()
    assert failed == [task] and task.chunks == [b"partial\n"]
    with pytest.raises(JobFailed):
        client.do(fails, "y")


def chatty(job: Job) -> object:
    if job.workload == b"fail":
        job.send_data(b"before failing\n")
        return WORK_FAIL
    job.send_data(b"part one\n")
    job.send_status(1, 4)
    job.send_warning(b"a warning\n")
    job.send_status(4, 4)
    return job.workload[::-1]


def test_the_c_client_with_our_worker(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn, uniq = fname("chatty"), fname("uniq")
    seen: queue.Queue[tuple[str, bytes]] = queue.Queue()
    workers(any_server.address, {fn: chatty, uniq: lambda job: seen.put((job.unique, job.workload)) or b"ok"})

    payload = bytes(range(256)) * 64
    result = c_client(any_server, "-f", fn, stdin=payload)
    assert result.returncode == 0, result
    # the C tool write()s data but printf()s status lines, so on a pipe those come out at exit
    assert result.stdout == b"part one\n" + payload[::-1] + b"25% Complete\n100% Complete\n"
    assert result.stderr == b"a warning\n"

    result = c_client(any_server, "-P", "-f", fn, "fail")
    assert result.returncode == 1
    assert (result.stdout, result.stderr) == (f"{fn}: before failing\n".encode(), f"{fn}: Job failed\n".encode())

    assert c_client(any_server, "-u", "my-key", "-f", uniq, "given").stdout == b"ok"
    assert seen.get(timeout=TIMEOUT) == ("my-key", b"given")
    background = c_client(any_server, "-b", "-f", uniq, "in the background")
    assert background.returncode == 0 and background.stdout == b""
    unique, workload = seen.get(timeout=TIMEOUT)
    assert workload == b"in the background" and len(unique) == 36  # libgearman's own UUID


def test_gear_client_with_our_worker_and_our_client_with_a_gear_worker(
    module_servers: dict[str, RunningServer], workers: Callable[..., WorkerThread]
) -> None:
    server = module_servers["ours"]
    env = GearEnv(server, "mixed")
    try:
        ours = fname("ours")
        workers(server.address, {ours: chatty})
        gear_client = env.client()
        job = gear_client.submit(ours, b"from gear")
        gear_client.wait_done(job)
        assert job.failure is False
        assert job.data == [b"part one\n", b"a warning\n", b"raeg morf"]
        assert (job.numerator, job.denominator) == (b"4", b"4")

        theirs = fname("gear")

        def gear_work(wjob: gear.WorkerJob) -> None:
            wjob.sendWorkData(b"gear data")
            wjob.sendWorkComplete(wjob.arguments.upper() + wjob.unique)

        env.worker(theirs, gear_work)
        client = Client(server.address, timeout=TIMEOUT)
        task = client.add_task(theirs, "from ours", unique="u-1")
        client.run_tasks()
        assert task.result == b"FROM OURSu-1" and task.chunks == [b"gear data"]
        env.check_clean()
    finally:
        env.close()
