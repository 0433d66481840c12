"""End-to-end tests that drive the server with PyPI `gear` (an independent client/worker library).

Everything goes over real sockets to the server the `server` fixture starts. `gear` runs its own poll
threads, so the tests wait on its events (through a condition variable fed from `handlePacket`) rather
than sleeping.

Set GG_TEST_SERVER=/usr/sbin/gearmand to run the same tests against Debian's gearmand 1.1.20; the few
assertions that encode a deliberate difference of this project's server are in tests that are skipped
then (see `ours_only`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import gear
import pytest
from gear import constants

from .conftest import RunningServer

TIMEOUT = 10.0  # seconds for any single awaited event

# gear 0.16 calls Condition.notifyAll() from its threads; that noise is not about the server.
pytestmark = pytest.mark.filterwarnings("ignore:notifyAll\\(\\) is deprecated:DeprecationWarning")

WORK_TYPES = {
    constants.WORK_DATA,
    constants.WORK_WARNING,
    constants.WORK_STATUS,
    constants.WORK_COMPLETE,
    constants.WORK_FAIL,
    constants.WORK_EXCEPTION,
}

ours_only = pytest.mark.skipif(
    bool(os.environ.get("GG_TEST_SERVER")),
    reason="asserts a deliberate difference of gearman-gateway from gearmand 1.1.20",
)


# --------------------------------------------------------------------------------------------------
# helpers around gear
# --------------------------------------------------------------------------------------------------


def tune(conn: gear.Connection) -> None:
    """Client-side speed-ups that do not change what goes over the wire.

    gear writes each packet separately (e.g. WORK_COMPLETE then GRAB_JOB_UNIQ); without TCP_NODELAY,
    Nagle plus the peer's delayed ACK add ~40 ms per job whatever the server does. And gear reads 4 KiB
    at a time into a growing bytes object, which is quadratic for the 8 MiB payload.
    """
    conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if "_readRawBytes" not in vars(conn):
        read = conn._readRawBytes
        conn._readRawBytes = lambda n: read(max(n, 1 << 20))


class RecordingClient(gear.Client):
    """A gear.Client that records every packet it receives and lets the test wait for conditions."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id)
        self.cond = threading.Condition()
        self.packets: list[tuple[int, bytes]] = []
        self.errors: list[str] = []

    def _onConnect(self, conn: gear.Connection) -> None:
        tune(conn)
        super()._onConnect(conn)

    def handlePacket(self, packet: gear.Packet) -> None:
        try:
            super().handlePacket(packet)
        except Exception as exc:  # never let an exception kill gear's poll loop
            self.errors.append(f"{constants.types.get(packet.ptype)}: {exc!r}")
        finally:
            with self.cond:
                self.packets.append((packet.ptype, bytes(packet.data)))
                self.cond.notify_all()

    def handleStatusRes(self, packet: gear.Packet) -> None:
        # Recorded by handlePacket; gear's own handler insists on a job it submitted itself.
        return None

    def wait_for(self, predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
        with self.cond:
            ok = self.cond.wait_for(predicate, timeout)
        assert ok, f"timed out after {timeout}s waiting for {what}; errors={self.errors}"

    def wait_done(self, job: gear.Job, timeout: float = TIMEOUT) -> None:
        self.wait_for(lambda: job.complete, f"job {job.handle!r} to finish", timeout)

    def job_packets(self, handle: bytes) -> list[tuple[int, bytes]]:
        """WORK_* packets received for `handle`, in arrival order."""
        with self.cond:
            return [(t, d) for t, d in self.packets if t in WORK_TYPES and d.split(b"\0", 1)[0] == handle]

    def submit(self, name: str, data: bytes, unique: str | None = None, **kw: object) -> gear.Job:
        job = gear.Job(name, data, unique=unique)
        self.submitJob(job, timeout=TIMEOUT, **kw)
        assert job.handle, f"no JOB_CREATED for {name}"
        return job

    def get_status(self, handle: bytes) -> tuple[bytes, ...]:
        """Send GET_STATUS and return the STATUS_RES fields (handle, known, running, num, den)."""
        with self.cond:
            start = len(self.packets)

        def reply() -> bytes | None:
            for ptype, data in self.packets[start:]:
                if ptype == constants.STATUS_RES and data.split(b"\0", 1)[0] == handle:
                    return data
            return None

        conn = self.active_connections[0]
        self.sendPacket(gear.Packet(constants.REQ, constants.GET_STATUS, handle), conn)
        self.wait_for(lambda: reply() is not None, f"STATUS_RES for {handle!r}")
        return tuple(reply().split(b"\0"))


class SyncWorker(gear.Worker):
    """A gear.Worker with a working ECHO round trip (gear's own Connection.echo notifies an unheld
    condition and kills the poll loop)."""

    def __init__(self, client_id: str) -> None:
        super().__init__(client_id)
        self.echo_lock = threading.Lock()
        self.echoes: dict[bytes, threading.Event] = {}

    def _onConnect(self, conn: gear.Connection) -> None:
        tune(conn)
        super()._onConnect(conn)

    def handleEchoRes(self, packet: gear.Packet) -> None:
        with self.echo_lock:
            ev = self.echoes.pop(bytes(packet.data), None)
        if ev is not None:
            ev.set()

    def sync(self, timeout: float = TIMEOUT) -> None:
        """Round-trip an ECHO: the server has then processed everything this worker sent before."""
        token = uuid.uuid4().hex.encode()
        ev = threading.Event()
        with self.echo_lock:
            self.echoes[token] = ev
        self.sendPacket(gear.Packet(constants.REQ, constants.ECHO_REQ, token), self.active_connections[0])
        assert ev.wait(timeout), "no ECHO_RES on the worker connection"


Handler = Callable[[gear.WorkerJob], None]


class WorkerThread:
    """A gear.Worker plus a thread that takes jobs one at a time and runs `handler` on each."""

    def __init__(self, functions: list[str], handler: Handler, name: str) -> None:
        self.handler = handler
        self.errors: list[str] = []
        self.stopping = False
        self.closed = False
        self.worker = SyncWorker(name)
        for fn in functions:
            self.worker.registerFunction(fn)  # sent as CAN_DO on connect
        self.thread = threading.Thread(target=self._run, name=f"worker {name}", daemon=True)

    def start(self, server: RunningServer) -> None:
        self.worker.addServer(server.host, server.port)
        self.worker.waitForServer(TIMEOUT)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping:
            try:
                job = self.worker.getJob()
            except gear.InterruptedError:
                return
            try:
                self.handler(job)
            except Exception as exc:
                self.errors.append(repr(exc))

    def close(self) -> None:
        """Drop the connection (even in the middle of a job) and stop taking jobs."""
        if not self.closed:
            self.closed = True
            self.stopping = True
            # gear's shutdown() stops the poll thread before stopWaitingForJobs(), which then waits 5 s
            # for an unanswerable GRAB_JOB_UNIQ; interrupting first, while the poll thread runs, avoids it.
            self.worker.stopWaitingForJobs()
            self.worker.shutdown()

    def stop(self) -> None:
        self.close()
        if self.thread.is_alive():
            self.thread.join(TIMEOUT)


class GearEnv:
    """Creates gear clients and workers for one test and shuts all of them down afterwards."""

    def __init__(self, server: RunningServer, test_name: str) -> None:
        self.server = server
        self.prefix = "gt_" + re.sub(r"[^A-Za-z0-9]+", "_", test_name)[:40]
        self.clients: list[RecordingClient] = []
        self.workers: list[WorkerThread] = []
        self.gates: list[threading.Event] = []  # set on teardown so no handler stays blocked

    def fn(self, tag: str = "") -> str:
        return f"{self.prefix}_{tag}_{uuid.uuid4().hex[:8]}"

    def gate(self) -> threading.Event:
        ev = threading.Event()
        self.gates.append(ev)
        return ev

    def client(self, exceptions: bool = False) -> RecordingClient:
        c = RecordingClient(f"c{len(self.clients)}")
        self.clients.append(c)
        c.addServer(self.server.host, self.server.port)
        c.waitForServer(TIMEOUT)
        if exceptions:
            assert c.setOption("exceptions", timeout=TIMEOUT), "OPTION_REQ exceptions was not acknowledged"
        return c

    def worker(self, functions: str | list[str], handler: Handler) -> WorkerThread:
        if isinstance(functions, str):
            functions = [functions]
        w = WorkerThread(functions, handler, f"w{len(self.workers)}")
        self.workers.append(w)  # before connecting, so teardown shuts it down whatever happens
        w.start(self.server)
        return w

    def close(self) -> None:
        for ev in self.gates:
            ev.set()
        for w in self.workers:
            try:
                w.stop()
            except Exception:
                pass
        for c in self.clients:
            try:
                c.shutdown()
            except Exception:
                pass

    def check_clean(self) -> None:
        errors = [e for w in self.workers for e in w.errors] + [e for c in self.clients for e in c.errors]
        assert not errors, f"errors in gear threads: {errors}"
        log = self.server.log()
        assert "Traceback" not in log, f"the server logged a traceback:\n{log[-4000:]}"


@pytest.fixture
def env(server: RunningServer, request: pytest.FixtureRequest) -> Iterator[GearEnv]:
    e = GearEnv(server, request.node.name)
    try:
        yield e
        e.check_clean()
    finally:
        e.close()


def get(q: queue.Queue, what: str, timeout: float = TIMEOUT):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


def status_line(server: RunningServer, fn: str) -> list[str] | None:
    """The admin `status` row for `fn` as [name, total, running, workers], or None."""
    for line in server.admin("status").splitlines():
        cols = line.split("\t")
        if cols[0] == fn:
            return cols
    return None


# --------------------------------------------------------------------------------------------------
# 1-2: foreground and background jobs
# --------------------------------------------------------------------------------------------------


def test_foreground_job_gets_result(env: GearEnv) -> None:
    fn = env.fn("rev")
    seen: queue.Queue = queue.Queue()

    def reverse(job: gear.WorkerJob) -> None:
        seen.put((job.handle, job.name, job.arguments))
        job.sendWorkComplete(job.arguments[::-1])

    env.worker(fn, reverse)
    client = env.client()
    job = client.submit(fn, b"hello world")
    client.wait_done(job)

    assert job.failure is False
    assert job.data == [b"dlrow olleh"]
    assert get(seen, "the job on the worker") == (job.handle, fn, b"hello world")
    assert client.job_packets(job.handle) == [(constants.WORK_COMPLETE, job.handle + b"\0dlrow olleh")]


def test_background_job_runs_on_worker(env: GearEnv) -> None:
    fn = env.fn("bg")
    started: queue.Queue = queue.Queue()
    finished: queue.Queue = queue.Queue()
    release = env.gate()

    def record(job: gear.WorkerJob) -> None:
        started.put((job.handle, job.arguments))
        assert release.wait(TIMEOUT)
        job.sendWorkComplete(b"ignored")
        finished.put(job.handle)

    w = env.worker(fn, record)
    client = env.client()
    job = client.submit(fn, b"payload-bg", background=True)
    # JOB_CREATED arrived although the worker has not finished (it is parked on `release`).
    assert (job.handle, b"payload-bg") == get(started, "the background job to reach the worker")
    assert client.get_status(job.handle)[1:3] == (b"1", b"1")  # known, running

    release.set()
    assert get(finished, "the worker to send WORK_COMPLETE") == job.handle
    w.worker.sync()  # the server has processed the WORK_COMPLETE
    assert client.get_status(job.handle)[1:] == (b"0", b"0", b"0", b"0")  # finished jobs are unknown
    # A background submitter gets nothing after JOB_CREATED (STATUS_RES came after any such packet).
    assert client.job_packets(job.handle) == []
    assert job.complete is False


# --------------------------------------------------------------------------------------------------
# 3: GET_STATUS
# --------------------------------------------------------------------------------------------------


def test_get_status_by_handle(env: GearEnv) -> None:
    fn = env.fn("status")
    release = env.gate()

    def slow(job: gear.WorkerJob) -> None:
        job.sendWorkStatus(1, 2)
        assert release.wait(TIMEOUT)
        job.sendWorkComplete(b"finished")

    client = env.client()
    watcher = env.client()  # GET_STATUS works from any connection, not only the submitter's
    job = client.submit(fn, b"x")
    # Queued, no worker yet: known, not running, 0/0.
    assert watcher.get_status(job.handle) == (job.handle, b"1", b"0", b"0", b"0")

    env.worker(fn, slow)
    # The client is told about WORK_STATUS only after the server stored it.
    client.wait_for(lambda: job.numerator is not None, "WORK_STATUS to reach the client")
    assert (job.numerator, job.denominator) == (b"1", b"2")
    assert watcher.get_status(job.handle) == (job.handle, b"1", b"1", b"1", b"2")
    assert client.get_status(job.handle) == (job.handle, b"1", b"1", b"1", b"2")

    unknown = b"H:no-such-host:987654"
    assert watcher.get_status(unknown) == (unknown, b"0", b"0", b"0", b"0")

    release.set()
    client.wait_done(job)
    assert job.data == [b"finished"]
    assert watcher.get_status(job.handle) == (job.handle, b"0", b"0", b"0", b"0")


# --------------------------------------------------------------------------------------------------
# 4: priorities
# --------------------------------------------------------------------------------------------------

PRIORITIES = {"HIGH": gear.PRECEDENCE_HIGH, "NORMAL": gear.PRECEDENCE_NORMAL, "LOW": gear.PRECEDENCE_LOW}


def collect_order(env: GearEnv, functions: list[str], count: int) -> list[tuple[str, bytes]]:
    """Start one worker for `functions`; return (function, payload) in the order it was given jobs."""
    order: list[tuple[str, bytes]] = []
    done = threading.Event()

    def take(job: gear.WorkerJob) -> None:
        order.append((job.name, job.arguments))
        job.sendWorkComplete(b"")
        if len(order) >= count:
            done.set()

    env.worker(functions, take)
    assert done.wait(TIMEOUT), f"worker got only {len(order)} of {count} jobs: {order}"
    return order


def test_priorities_high_normal_low_fifo(env: GearEnv) -> None:
    fn = env.fn("prio")
    client = env.client()
    per_level = 4
    # Interleave the submissions, so both the priority order and FIFO inside a priority are visible.
    for i in range(per_level):
        for level in ("LOW", "NORMAL", "HIGH"):
            client.submit(fn, f"{level}-{i}".encode(), background=True, precedence=PRIORITIES[level])

    order = collect_order(env, [fn], 3 * per_level)
    expected = [f"{level}-{i}".encode() for level in ("HIGH", "NORMAL", "LOW") for i in range(per_level)]
    assert [data for _, data in order] == expected


@ours_only
def test_priority_is_global_across_functions(env: GearEnv) -> None:
    # gearman-gateway specific: priority is global across a worker's functions (gearmand 2.0 rule).
    # gearmand 1.1.20 serves per function instead (the last-registered function first), so with the
    # worker registering fa then fb it would hand out all of fb (HIGH then LOW) before fa's NORMAL jobs.
    fa, fb = env.fn("a"), env.fn("b")
    client = env.client()
    client.submit(fb, b"b-low-0", background=True, precedence=gear.PRECEDENCE_LOW)
    client.submit(fa, b"a-normal-0", background=True)
    client.submit(fb, b"b-high-0", background=True, precedence=gear.PRECEDENCE_HIGH)
    client.submit(fb, b"b-low-1", background=True, precedence=gear.PRECEDENCE_LOW)
    client.submit(fa, b"a-normal-1", background=True)
    client.submit(fb, b"b-high-1", background=True, precedence=gear.PRECEDENCE_HIGH)

    order = collect_order(env, [fa, fb], 6)
    assert order == [
        (fb, b"b-high-0"),
        (fb, b"b-high-1"),
        (fa, b"a-normal-0"),
        (fa, b"a-normal-1"),
        (fb, b"b-low-0"),
        (fb, b"b-low-1"),
    ]


# --------------------------------------------------------------------------------------------------
# 5: unique coalescing
# --------------------------------------------------------------------------------------------------


def test_unique_coalescing_runs_once(env: GearEnv, server: RunningServer) -> None:
    fn = env.fn("uniq")
    unique = "same-" + uuid.uuid4().hex
    clients = [env.client() for _ in range(3)]
    # No worker yet: all three submissions meet the same queued job.
    jobs = [c.submit(fn, f"data-{i}".encode(), unique=unique) for i, c in enumerate(clients)]
    assert len({j.handle for j in jobs}) == 1, [j.handle for j in jobs]

    runs: list[tuple[bytes, bytes, bytes | None]] = []

    def run(job: gear.WorkerJob) -> None:
        runs.append((job.handle, job.arguments, job.unique))
        job.sendWorkComplete(b"result:" + job.arguments)

    env.worker(fn, run)
    for c, j in zip(clients, jobs, strict=True):
        c.wait_done(j)
        assert j.failure is False
        # The job keeps the first submitter's payload.
        assert j.data == [b"result:data-0"]

    cols = status_line(server, fn)
    assert cols is not None and cols[1:3] == ["0", "0"], cols  # nothing queued or running any more
    assert runs == [(jobs[0].handle, b"data-0", unique.encode())]


# --------------------------------------------------------------------------------------------------
# 6-8: relayed packets, failures, exceptions
# --------------------------------------------------------------------------------------------------


def test_work_data_warning_status_relayed_in_order(env: GearEnv) -> None:
    fn = env.fn("relay")

    def chatty(job: gear.WorkerJob) -> None:
        job.sendWorkData(b"part-1")
        job.sendWorkWarning(b"careful\0with NUL")
        job.sendWorkStatus(1, 3)
        job.sendWorkData(b"part-2")
        job.sendWorkStatus(3, 3)
        job.sendWorkComplete(b"all done")

    env.worker(fn, chatty)
    client = env.client()
    job = client.submit(fn, b"go")
    client.wait_done(job)

    h = job.handle
    assert client.job_packets(h) == [
        (constants.WORK_DATA, h + b"\0part-1"),
        (constants.WORK_WARNING, h + b"\0careful\0with NUL"),
        (constants.WORK_STATUS, h + b"\x001\x003"),
        (constants.WORK_DATA, h + b"\0part-2"),
        (constants.WORK_STATUS, h + b"\x003\x003"),
        (constants.WORK_COMPLETE, h + b"\0all done"),
    ]
    assert job.warning is True
    assert job.failure is False
    assert job.data == [b"part-1", b"careful\0with NUL", b"part-2", b"all done"]


def test_work_fail_reaches_client(env: GearEnv) -> None:
    fn = env.fn("fail")
    env.worker(fn, lambda job: job.sendWorkFail())
    client = env.client()
    job = client.submit(fn, b"doomed")
    client.wait_done(job)
    assert job.failure is True
    assert job.data == []
    assert client.job_packets(job.handle) == [(constants.WORK_FAIL, job.handle)]


def test_work_exception_with_and_without_option(env: GearEnv) -> None:
    fn = env.fn("exc")
    env.worker(fn, lambda job: job.sendWorkException(b"boom: " + job.arguments))

    with_opt = env.client(exceptions=True)
    job = with_opt.submit(fn, b"one")
    with_opt.wait_done(job)
    assert job.failure is True
    assert job.exception == b"boom: one"
    assert with_opt.job_packets(job.handle) == [(constants.WORK_EXCEPTION, job.handle + b"\0boom: one")]

    without = env.client()
    job2 = without.submit(fn, b"two")
    without.wait_done(job2)
    assert job2.failure is True
    assert job2.exception is None
    [(ptype, body)] = without.job_packets(job2.handle)
    assert ptype == constants.WORK_FAIL
    # gearmand 1.1.20 appends a NUL to this WORK_FAIL; gearman-gateway deliberately sends the bare
    # handle. Either is accepted here.
    assert body in (job2.handle, job2.handle + b"\0")


# --------------------------------------------------------------------------------------------------
# 9: a worker dies mid-job
# --------------------------------------------------------------------------------------------------

VICTIM_WORKER = """
import sys, time, gear
w = gear.Worker("victim")
w.registerFunction(sys.argv[3])
w.addServer(sys.argv[1], int(sys.argv[2]))
w.waitForServer(10)
job = w.getJob()
print(job.handle.decode(), job.arguments.decode(), flush=True)
time.sleep(60)
"""


def read_line(proc: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the victim worker printed nothing"
    return proc.stdout.readline().decode()


@pytest.mark.parametrize("how", ["close_socket", "sigkill_process"])
def test_worker_killed_mid_job_is_retried(env: GearEnv, server: RunningServer, how: str) -> None:
    fn = env.fn("victim")
    client = env.client()
    job = client.submit(fn, b"survive me")

    if how == "close_socket":
        got: queue.Queue = queue.Queue()
        hold = env.gate()

        def never_finish(wjob: gear.WorkerJob) -> None:
            got.put((wjob.handle, wjob.arguments))
            hold.wait(TIMEOUT)  # then return without sending anything

        victim = env.worker(fn, never_finish)
        assert get(got, "the first worker to take the job") == (job.handle, b"survive me")
        victim.close()  # closes the socket while the job is assigned and unfinished
    else:
        proc = subprocess.Popen(
            [sys.executable, "-c", VICTIM_WORKER, server.host, str(server.port), fn],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            assert read_line(proc).split() == [job.handle.decode(), "survive", "me"]
            assert client.get_status(job.handle)[1:3] == (b"1", b"1")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(TIMEOUT)

    retried: queue.Queue = queue.Queue()

    def finish(wjob: gear.WorkerJob) -> None:
        retried.put((wjob.handle, wjob.arguments))
        wjob.sendWorkComplete(wjob.arguments.upper())

    env.worker(fn, finish)
    client.wait_done(job)
    assert get(retried, "the second worker's job") == (job.handle, b"survive me")
    assert job.failure is False
    assert job.data == [b"SURVIVE ME"]
    assert retried.empty()


def test_job_whose_worker_died_goes_to_the_tail(env: GearEnv) -> None:
    # As in gearmand 1.1.20: a job re-queued after its worker died goes behind the jobs that never failed,
    # so a job that kills its workers cannot block its function (issue 13, item 9).
    fn = env.fn("tail")
    client = env.client()
    first = client.submit(fn, b"first", background=True)
    for data in (b"second", b"third"):
        client.submit(fn, data, background=True)

    got: queue.Queue = queue.Queue()
    hold = env.gate()

    def never_finish(wjob: gear.WorkerJob) -> None:
        got.put(wjob.arguments)
        hold.wait(TIMEOUT)

    victim = env.worker(fn, never_finish)
    assert get(got, "the victim's job") == b"first"
    victim.close()
    # Nothing announces the server noticing the disconnect: poll until the job is back in the queue.
    deadline = time.monotonic() + TIMEOUT
    while client.get_status(first.handle)[2] != b"0":
        assert time.monotonic() < deadline, "the server still shows the victim's job as running"
        time.sleep(0.005)

    order = collect_order(env, [fn], 3)
    assert [data for _, data in order] == [b"second", b"third", b"first"]


# --------------------------------------------------------------------------------------------------
# 10: a large binary payload
# --------------------------------------------------------------------------------------------------


def first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at offset {i}: {x:#04x} != {y:#04x}"
    return f"lengths differ: {len(a)} != {len(b)}"


def test_8mib_payload_with_every_byte_value_round_trips(env: GearEnv) -> None:
    fn = env.fn("echo8m")
    size = 8 * 1024 * 1024
    payload = bytes(range(256)) + random.Random(1234).randbytes(size - 512) + bytes(range(255, -1, -1))
    assert len(payload) == size and len(set(payload)) == 256
    digests: queue.Queue = queue.Queue()

    def echo(job: gear.WorkerJob) -> None:
        digests.put(hashlib.sha256(job.arguments).hexdigest())
        job.sendWorkComplete(job.arguments)

    env.worker(fn, echo)
    client = env.client()
    job = client.submit(fn, payload)
    client.wait_done(job, timeout=30)

    assert get(digests, "the worker's digest") == hashlib.sha256(payload).hexdigest()
    result = b"".join(job.data)
    assert job.failure is False
    assert result == payload, first_difference(result, payload)


# --------------------------------------------------------------------------------------------------
# 11: many jobs, many clients, several workers
# --------------------------------------------------------------------------------------------------


def transform(data: bytes) -> bytes:
    return hashlib.sha1(data).hexdigest().encode() + b"|" + data[::-1]


def test_2000_jobs_20_clients_4_workers(env: GearEnv, server: RunningServer) -> None:
    fn = env.fn("load")
    n_clients, per_client, n_workers = 20, 100, 4
    lock = threading.Lock()
    handled: list[bytes] = []

    def work(job: gear.WorkerJob) -> None:
        with lock:
            handled.append(job.handle)
        job.sendWorkComplete(transform(job.arguments))

    for _ in range(n_workers):
        env.worker(fn, work)
    clients = [env.client() for _ in range(n_clients)]
    failures: list[str] = []

    def run_client(ci: int, client: RecordingClient) -> None:
        try:
            payloads = [f"client-{ci}-job-{i}-{'x' * (i % 37)}".encode() for i in range(per_client)]
            jobs = [client.submit(fn, p) for p in payloads]
            client.wait_for(lambda: all(j.complete for j in jobs), f"client {ci}'s jobs", timeout=25)
            for j in jobs:
                if j.failure or j.data != [transform(j.arguments)]:
                    failures.append(f"client {ci} {j.arguments!r}: failure={j.failure} data={j.data!r}")
                if len(client.job_packets(j.handle)) != 1:
                    failures.append(f"client {ci} {j.handle!r}: packets {client.job_packets(j.handle)}")
        except Exception as exc:  # reported below
            failures.append(f"client {ci}: {exc!r}")

    threads = [threading.Thread(target=run_client, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "client threads did not finish"
    assert not failures, failures[:10]

    total = n_clients * per_client
    assert len(handled) == total
    assert len(set(handled)) == total  # no job ran twice
    cols = status_line(server, fn)
    assert cols is not None and cols[1:3] == ["0", "0"], cols
