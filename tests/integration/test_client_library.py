"""The Python client and worker library against a real server over real sockets: ours and Debian's gearmand.

Every test that takes `any_server` runs twice: on our server and on the reference gearmand 1.1.20, so the
library is shown to speak the protocol rather than our server's dialect. Workers run in threads
(`WorkerThread`) and are stopped through Worker.stop(); nothing sleeps to wait for an event.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from gearman_gateway import AsyncClient, AsyncWorker, Client, Worker
from gearman_gateway.client import GearmanTimeout, JobException, JobFailed, JobStatus, TaskState
from gearman_gateway.worker import WORK_FAIL, Job, WorkFail

from .conftest import OUR_GEARMAND, REAL_GEARMAND, RunningServer, ServerFactory, _factory

TIMEOUT = 10.0


class WorkerThread:
    """A blocking Worker serving `functions` in a thread until stop()."""

    def __init__(self, servers: str, functions: dict[str, Callable[[Job], Any]], **options: Any) -> None:
        self.worker = Worker(servers, **options)
        for name, callback in functions.items():
            self.worker.add_function(name, callback)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.work_forever()
        except BaseException as error:  # reported by stop()
            self.error = error

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "worker thread did not stop"
        self.worker.close()
        assert self.error is None, self.error


@contextmanager
def running_workers() -> Iterator[Callable[..., WorkerThread]]:
    """A starter of WorkerThreads; each is stopped on the way out."""
    started: list[WorkerThread] = []

    def start(servers: str, functions: dict[str, Callable[[Job], Any]], **options: Any) -> WorkerThread:
        started.append(WorkerThread(servers, functions, **options))
        return started[-1]

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerThread]]:
    with running_workers() as start:
        yield start


@contextmanager
def shared_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for a whole module, started by the same factory as the `gearmand` / `real_gearmand`
    fixtures (a free port, its own log). Tests that share it use their own function names."""
    if kind == "ours":
        binary = os.environ.get("GG_TEST_SERVER", OUR_GEARMAND)
    else:
        binary = REAL_GEARMAND
        if not os.access(binary, os.X_OK):
            if os.environ.get("CI") == "true":
                pytest.fail(f"{binary} is missing: scripts/setup --test installs gearman-job-server")
            pytest.skip(f"{binary} is not installed")
    start, started = _factory(tmp_path_factory.mktemp(f"shared-{kind}"), binary)
    try:
        yield start()
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def module_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    """Our server and gearmand, each started once for the module (when a test first asks)."""
    with ExitStack() as stack:
        yield _LazyServers(stack, tmp_path_factory)


class _LazyServers(dict[str, RunningServer]):
    def __init__(self, stack: ExitStack, tmp_path_factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.stack = stack
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, kind: str) -> RunningServer:
        self[kind] = self.stack.enter_context(shared_server(kind, self.tmp_path_factory))
        return self[kind]


@pytest.fixture(params=["ours", "gearmand"])
def any_server(request: pytest.FixtureRequest, module_servers: dict[str, RunningServer]) -> RunningServer:
    """Each test runs twice: on our server and on Debian's gearmand 1.1.20."""
    return module_servers[request.param]


def name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def reverse(job: Job) -> bytes:
    return job.workload[::-1]


def test_do_variants_and_payloads(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = name("reverse")
    workers(any_server.address, {fn: reverse})
    client = Client(timeout=TIMEOUT)
    client.add_server(any_server.host, any_server.port)
    assert client.do(fn, "Hello World!") == b"!dlroW olleH"
    assert client.do_high(fn, b"high") == b"hgih"
    assert client.do_low(fn, "low") == b"wol"
    payload = bytes(range(256)) * 16 + random.Random(5).randbytes(4 << 20)  # every byte value, 4 MiB
    assert client.do(fn, payload) == payload[::-1]
    assert client.do(fn, b"") == b""
    client.close()


def test_background_priorities_and_job_status(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = name("bg")
    client = Client(any_server.address, timeout=TIMEOUT)
    handles = [
        client.do_low_background(fn, "low"),
        client.do_background(fn, "normal"),
        client.do_high_background(fn, "high"),
    ]
    assert all(h.startswith("H:") for h in handles) and len(set(handles)) == 3
    for handle in handles:
        assert client.job_status(handle) == JobStatus(True, False, 0, 0)
    [row] = [line for line in any_server.admin("prioritystatus").splitlines() if line.startswith(fn + "\t")]
    assert row.split("\t")[1:4] == ["1", "1", "1"]

    seen: list[bytes] = []
    workers(any_server.address, {fn: lambda job: seen.append(job.workload) or b""})
    assert client.do_low(fn, "marker") == b""  # FIFO per priority: the background jobs ran before it
    assert seen == [b"high", b"normal", b"low", b"marker"]
    for handle in handles:
        assert client.job_status(handle) == JobStatus(False, False, 0, 0)  # finished jobs are unknown


def chatty(job: Job) -> bytes:
    job.send_data(b"part-1")
    job.send_warning("careful")
    job.send_status(1, 2)
    job.send_data(b"part\x002")
    job.send_status(2, 2)
    return b"done:" + job.workload


def test_tasks_and_every_callback(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn, quiet = name("chatty"), name("quiet")
    client = Client(any_server.address, timeout=TIMEOUT)
    events: list[tuple[str, str, bytes]] = []
    for event in ("created", "data", "warning", "status", "complete", "fail", "exception"):
        getattr(client, f"set_{event}_fn")(lambda t, e=event: events.append((e, t.workload.decode(), t.data)))
    bg = client.add_task_background(quiet, "b")
    client.add_task_high_background(quiet, "hb")
    client.add_task_low_background(quiet, "lb")
    client.run_tasks()  # no worker for `quiet`: background tasks are done once created
    assert [e for e in events if e[1] in ("b", "hb", "lb")] == [
        ("created", "b", b""),
        ("created", "hb", b""),
        ("created", "lb", b""),
    ]
    events.clear()
    workers(any_server.address, {fn: chatty})
    fg = [client.add_task(fn, "n"), client.add_task_high(fn, "h"), client.add_task_low(fn, "l")]
    client.set_workload_fn(lambda task: task.workload if task.workload else task.context)
    lazy = client.add_task(fn, context=b"supplied late")  # the workload callback provides its workload
    status = client.add_task_status(bg.handle or "", context="mine")
    client.run_tasks()
    assert all(t.state is TaskState.COMPLETE and t.result == b"done:" + t.workload for t in fg)
    for task in fg:
        mine = [(e, d) for e, w, d in events if w == task.workload.decode()]
        assert mine == [
            ("created", b""),
            ("data", b"part-1"),
            ("warning", b"careful"),
            ("status", b"careful"),
            ("data", b"part\x002"),
            ("status", b"part\x002"),
            ("complete", b"done:" + task.workload),
        ]
        assert task.chunks == [b"part-1", b"part\x002"] and (task.numerator, task.denominator) == (2, 2)
        assert task.handle and task.function == fn
    assert lazy.result == b"done:supplied late"
    assert status.done and status.known and not status.running and status.context == "mine"
    assert ("status", "", b"") in events  # the status query's answer went to the status callback

    client.clear_fn()
    events.clear()
    assert client.do(fn, "x") == b"done:x" and events == []


def test_failures_and_exceptions(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = name("fails")

    def fail(job: Job) -> object:
        if job.workload == b"marker":
            return WORK_FAIL
        if job.workload == b"raise-fail":
            raise WorkFail("no")
        if job.workload == b"explicit":
            job.send_data(b"partial")
            job.send_fail()
            return b"ignored"
        if job.workload == b"custom":
            job.send_exception(b"custom exception data")
            return None
        raise ValueError("bad input: " + job.workload.decode())

    workers(any_server.address, {fn: fail})
    plain = Client(any_server.address, timeout=TIMEOUT)
    for workload in ("marker", "raise-fail", "explicit", "boom", "custom"):
        with pytest.raises(JobFailed) as caught:
            plain.do(fn, workload)
        assert not isinstance(caught.value, JobException)  # without the option an exception is a failure

    with_option = Client(any_server.address, timeout=TIMEOUT, exceptions=True)
    with pytest.raises(JobException) as caught:
        with_option.do(fn, "boom")
    assert caught.value.data == b"ValueError: bad input: boom"
    with pytest.raises(JobException) as caught:
        with_option.do(fn, "custom")
    assert caught.value.data == b"custom exception data"

    events: list[str] = []
    with_option.set_exception_fn(lambda t: events.append("exception:" + t.data.decode()))
    with_option.set_fail_fn(lambda t: events.append("fail:" + t.state.value))
    with_option.set_data_fn(lambda t: events.append("data:" + t.data.decode()))
    with_option.add_task(fn, "boom")
    with_option.add_task(fn, "explicit")
    with_option.run_tasks()
    assert sorted(events) == sorted(
        ["exception:ValueError: bad input: boom", "fail:exception", "data:partial", "fail:failed"]
    )


def test_job_fields_unique_keys_and_coalescing(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = name("fields")
    jobs: list[tuple[str, str, str, bytes]] = []
    both_created = threading.Event()

    def record(job: Job) -> bytes:
        jobs.append((job.function_name, job.unique, job.handle, job.workload))
        if job.unique == "shared":
            both_created.wait(TIMEOUT)  # keep the job alive until the second submit joined it
        return job.unique.encode()

    workers(any_server.address, {fn: record})
    client = Client(any_server.address, timeout=TIMEOUT)
    given = client.add_task(fn, "a", unique="given-key")
    auto = client.add_task(fn, "b")
    first = client.add_task(fn, "c", unique="shared")
    second = client.add_task(fn, "d", unique="shared")
    client.set_created_fn(lambda task: both_created.set() if first.handle and second.handle else None)
    client.run_tasks()
    assert given.result == b"given-key"
    assert len(auto.unique) == 36 and auto.result == auto.unique.encode()  # a UUID per job
    assert first.handle == second.handle and first.result == second.result == b"shared"
    assert len(jobs) == 3  # the two "shared" submits ran once
    by_unique = {unique: (function, handle, workload) for function, unique, handle, workload in jobs}
    assert by_unique["given-key"] == (fn, given.handle, b"a")
    assert by_unique["shared"] == (fn, first.handle, b"c")  # the first submitter's workload


def test_function_timeout_hands_a_stuck_job_to_another_worker(
    gearmand: ServerFactory, workers: Callable[..., WorkerThread]
) -> None:
    server = gearmand()  # ours: gearmand 1.1.20 raises any CAN_DO_TIMEOUT below 1 s to 1 s
    fn = name("stuck")
    release = threading.Event()
    ran: list[str] = []

    def stuck(job: Job) -> bytes:
        ran.append("stuck")
        workers(server.address, {fn: lambda job: ran.append("rescuer") or b"rescued"})
        release.wait(TIMEOUT)
        return b"too late"

    slow = Worker(server.address)
    slow.add_function(fn, stuck, timeout=0.2)
    thread = threading.Thread(target=slow.work, args=(TIMEOUT,), daemon=True)
    thread.start()
    try:
        client = Client(server.address, timeout=TIMEOUT)
        assert client.do(fn, "x") == b"rescued"  # re-queued 0.2 s after the stuck worker took it
        assert ran == ["stuck", "rescuer"]
    finally:
        release.set()
        thread.join(TIMEOUT)
        slow.close()


def test_timeout_then_client_still_usable(any_server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = name("late")
    client = Client(any_server.address, timeout=0.2)
    with pytest.raises(GearmanTimeout):
        client.do(fn, "nobody serves this yet")
    client.add_task(fn, "queued")
    with pytest.raises(GearmanTimeout):
        client.run_tasks()
    workers(any_server.address, {fn: reverse})
    client.set_timeout(TIMEOUT)
    client.run_tasks()  # the unfinished task is still awaited, and completes
    assert client.do(fn, "abc") == b"cba"


def test_client_id_and_worker_registration_seen_by_admin(
    any_server: RunningServer, workers: Callable[..., WorkerThread]
) -> None:
    fn = name("seen")
    workers(any_server.address, {fn: reverse}, client_id="thumbnailer-1")
    client = Client(any_server.address, timeout=TIMEOUT)
    assert client.do(fn, "ab") == b"ba"  # the worker is registered and awake
    rows = [line for line in any_server.admin("workers").splitlines() if fn in line]
    assert len(rows) == 1 and " thumbnailer-1 : " in rows[0]


def test_asyncio_client_and_worker(any_server: RunningServer) -> None:
    fn, sync_fn = name("async"), name("sync-cb")

    async def slow_upper(job: Job) -> bytes:
        job.send_status(1, 1)
        await asyncio.sleep(0)
        if job.workload == b"boom":
            raise RuntimeError("async boom")
        return job.workload.upper()

    async def main() -> None:
        worker = AsyncWorker(any_server.address)
        worker.add_function(fn, slow_upper)
        worker.add_function(sync_fn, reverse)
        serving = asyncio.create_task(worker.work_forever())
        async with AsyncClient(any_server.address, timeout=TIMEOUT, exceptions=True) as client:
            assert await client.do(fn, "hello") == b"HELLO"
            assert await client.do_high(sync_fn, "abc") == b"cba"
            statuses: list[tuple[int, int]] = []
            client.set_status_fn(lambda t: statuses.append((t.numerator, t.denominator)))
            tasks = [client.add_task(fn, f"t{i}") for i in range(5)]
            await client.run_tasks()
            assert [t.result for t in tasks] == [f"T{i}".encode() for i in range(5)]
            assert statuses == [(1, 1)] * 5
            with pytest.raises(JobException) as caught:
                await client.do(fn, "boom")
            assert caught.value.data == b"RuntimeError: async boom"
            handle = await client.do_low_background(sync_fn, "bg")
            assert isinstance(await client.job_status(handle), JobStatus)
            assert await client.do_low(sync_fn, "after") == b"retfa"
            assert await client.job_status(handle) == JobStatus(False, False, 0, 0)
        worker.stop()
        await asyncio.wait_for(serving, TIMEOUT)
        await worker.close()

    asyncio.run(main())


def test_async_client_with_blocking_worker_and_coroutines_in_a_blocking_worker(
    any_server: RunningServer, workers: Callable[..., WorkerThread]
) -> None:
    fn, bad = name("digest"), name("coro")

    async def coroutine_callback(job: Job) -> bytes:
        return b"never"

    workers(any_server.address, {fn: lambda job: hashlib.sha256(job.workload).hexdigest(), bad: coroutine_callback})

    async def main() -> None:
        async with AsyncClient(any_server.address, timeout=TIMEOUT) as client:
            results = await asyncio.gather(*(client.do(fn, f"job {i}") for i in range(20)))
            assert results == [hashlib.sha256(f"job {i}".encode()).hexdigest().encode() for i in range(20)]

    asyncio.run(main())
    client = Client(any_server.address, timeout=TIMEOUT, exceptions=True)
    with pytest.raises(JobException) as caught:
        client.do(bad, "z")  # a blocking Worker cannot wait for a coroutine: the job fails, the worker goes on
    assert b"needs AsyncWorker" in caught.value.data
    assert client.do(fn, "still serving") == hashlib.sha256(b"still serving").hexdigest().encode()


def test_cancelled_async_worker_fails_its_job_and_can_work_again(module_servers: dict[str, RunningServer]) -> None:
    server = module_servers["ours"]
    fn = name("cancel")

    async def main() -> None:
        began = asyncio.Event()

        async def hang(job: Job) -> bytes:
            if job.workload == b"hang":
                began.set()
                await asyncio.sleep(3600)
            return b"ok"

        worker = AsyncWorker(server.address)
        worker.add_function(fn, hang)
        async with AsyncClient(server.address, timeout=TIMEOUT) as client:
            serving = asyncio.create_task(worker.work_forever())
            stuck = asyncio.create_task(client.do(fn, "hang"))
            await asyncio.wait_for(began.wait(), TIMEOUT)
            serving.cancel()
            with pytest.raises(JobFailed):
                await stuck  # the cancelled worker failed the job instead of holding it for ever
            serving = asyncio.create_task(worker.work_forever())
            assert await client.do(fn, "fine") == b"ok"
            worker.stop()
            await asyncio.wait_for(serving, TIMEOUT)
        await worker.close()

    asyncio.run(main())
