"""No single point of failure: two servers, one killed mid-run with SIGKILL, then restarted.

The client hashes each job's unique key to a server and fails over to the other when its server dies;
the worker holds both connections, keeps taking jobs from the survivor, and reconnects (with back-off)
to the restarted server on its old port.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from gearman_gateway import AsyncClient, Client
from gearman_gateway.client import GearmanConnectionError, Task
from gearman_gateway.clientlib.links import Backoff
from gearman_gateway.worker import Job

from .conftest import ServerFactory, free_port
from .test_client_library import TIMEOUT, WorkerThread, running_workers

#: Quick reconnects, so that the restarted server gets its worker back well within the test's timeout.
FAST = Backoff(initial=0.05, maximum=0.3)


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerThread]]:
    with running_workers() as start:
        yield start


def test_two_servers_one_killed_mid_run_then_restarted(
    gearmand: ServerFactory, workers: Callable[..., WorkerThread]
) -> None:
    a, b = gearmand(), gearmand()
    fn = f"survive-{uuid.uuid4().hex[:6]}"
    jobs = 40
    in_hand, killed, all_created = threading.Event(), threading.Event(), threading.Event()
    held: list[str] = []  # the workload of the job the worker holds from `a` when `a` is killed
    served: list[tuple[str, str]] = []  # (server, workload) per job the worker ran
    lock = threading.Lock()

    def work(job: Job) -> bytes:
        with lock:
            served.append((str(job.server), job.workload.decode()))
            first_from_a = str(job.server) == a.address and not held
            if first_from_a:
                held.append(job.workload.decode())
        if first_from_a:
            in_hand.set()  # a job of `a` is mid-run here: its result cannot reach `a` any more
            killed.wait(TIMEOUT)
        return b"done " + job.workload

    workers(f"{a.address},{b.address}", {fn: work}, backoff=FAST)
    client = Client(f"{a.address},{b.address}", timeout=TIMEOUT, backoff=FAST)
    tasks = [client.add_task(fn, f"job-{i}", unique=f"key-{i}") for i in range(jobs)]
    first_server: dict[str, str] = {}

    def created(task: Task) -> None:
        first_server.setdefault(task.unique, str(task.server))
        if len(first_server) == jobs:
            all_created.set()

    client.set_created_fn(created)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            client.run_tasks()
        except BaseException as error:
            failure.append(error)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    # Kill `a` only once both servers acknowledged their jobs (JOB_CREATED came back: a server that has
    # not even read its submits yet would lose them with the connection, not mid-run) and the worker
    # holds one of `a`'s jobs.
    assert all_created.wait(TIMEOUT), f"only {len(first_server)} of {jobs} jobs were created"
    assert in_hand.wait(TIMEOUT), "the worker never got a job from the server to be killed"
    assert a.stop(signal.SIGKILL) == -signal.SIGKILL
    killed.set()
    runner.join(TIMEOUT * 2)
    assert not runner.is_alive() and not failure, failure

    assert [t.result for t in tasks] == [f"done job-{i}".encode() for i in range(jobs)]
    on_a = [t for t in tasks if first_server[t.unique] == a.address]
    assert on_a and len(on_a) < jobs, "the unique keys should spread the jobs over both servers"
    moved = [t for t in on_a if str(t.server) == b.address]
    assert [t.workload.decode() for t in moved if t.workload.decode() in held] == held, (
        "the job that was mid-run on the killed server should have been resubmitted to the other one"
    )
    assert all(str(t.server) in (a.address, b.address) for t in tasks)

    # the killed server comes back on its port: the worker reconnects and takes its jobs again
    a2 = gearmand(port=a.port)
    only_a = Client(a2.address, timeout=TIMEOUT)
    with lock:
        served.clear()
    assert only_a.do(fn, "after restart") == b"done after restart"
    assert served == [(a.address, "after restart")]
    assert any(line.split()[-1:] == [fn] for line in a2.admin("workers").splitlines())


def test_client_skips_a_dead_server_from_the_start(
    gearmand: ServerFactory, workers: Callable[..., WorkerThread]
) -> None:
    alive = gearmand()
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    fn = f"skip-{uuid.uuid4().hex[:6]}"
    workers(f"{dead},{alive.address}", {fn: lambda job: job.workload.upper()}, backoff=FAST)
    client = Client(f"{dead},{alive.address}", timeout=TIMEOUT)
    results = [client.do(fn, f"x{i}", unique=f"u{i}") for i in range(10)]  # half of them hash to the dead one
    assert results == [f"X{i}".encode() for i in range(10)]


def test_client_skips_a_server_whose_name_no_lookup_takes(
    gearmand: ServerFactory, workers: Callable[..., WorkerThread]
) -> None:
    """`a..b` (an empty label) is refused by Python's IDNA codec before any lookup: a UnicodeError, not an
    OSError, which used to escape the blocking client and leave the asyncio one's link connecting for ever."""
    alive = gearmand()
    fn = f"badname-{uuid.uuid4().hex[:6]}"
    workers(alive.address, {fn: lambda job: job.workload.upper()})
    servers = f"a..b:4730,{alive.address}"
    client = Client(servers, timeout=TIMEOUT)
    assert [client.do(fn, f"x{i}", unique=f"u{i}") for i in range(6)] == [f"X{i}".encode() for i in range(6)]

    async def run_async() -> list[bytes]:
        async_client = AsyncClient(servers, timeout=TIMEOUT)
        try:
            return [await async_client.do(fn, f"y{i}", unique=f"u{i}") for i in range(6)]
        finally:
            await async_client.close()

    assert asyncio.run(run_async()) == [f"Y{i}".encode() for i in range(6)]
    unreachable = r"no server could be reached: a\.\.b:4730 \(bad host name: a\.\.b\)"
    with pytest.raises(GearmanConnectionError, match=unreachable):
        Client("a..b", timeout=TIMEOUT).do(fn, "nowhere")
