"""Our `gearman` tool, run as a user would (the installed console script), against our server.

Client mode is checked byte for byte, and side by side with Debian's C tool (`/usr/bin/gearman`, always by
absolute path: ours shadows it on PATH); worker mode is driven by our Client and by the C client.
"""

from __future__ import annotations

import contextlib
import os
import pty
import queue
import select
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearman_gateway import Client
from gearman_gateway.client import JobFailed, Task
from gearman_gateway.worker import WORK_FAIL, Job

from . import test_client_library as lib
from .conftest import BIN_DIR, RunningServer, free_port
from .test_client_library import TIMEOUT, WorkerThread, running_workers

module_servers = lib.module_servers  # one server for the module (see test_client_library)

OUR_GEARMAN = str(BIN_DIR / "gearman")
C_GEARMAN = "/usr/bin/gearman"
ENV = {k: v for k, v in os.environ.items() if k != "GEARMAN_SERVER"}


@pytest.fixture
def server(module_servers: dict[str, RunningServer]) -> RunningServer:
    return module_servers["ours"]


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerThread]]:
    with running_workers() as start:
        yield start


def fname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run(
    server: RunningServer, *args: str, stdin: bytes = b"", tool: str = OUR_GEARMAN, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    argv = [tool, "-h", server.host, "-p", str(server.port), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT, env=env or ENV, check=False)


def echo(job: Job) -> bytes:
    return job.workload


def chatty(job: Job) -> object:
    if job.workload.startswith(b"fail"):
        job.send_data(b"partial\n")
        return WORK_FAIL
    job.send_data(b"data\n")
    job.send_warning(b"warning\n")
    return job.workload.upper()


def test_client_arguments_stdin_and_no_input_byte_exact(
    server: RunningServer, workers: Callable[..., WorkerThread]
) -> None:
    fn = fname("echo")
    seen: queue.Queue[bytes] = queue.Queue()
    workers(server.address, {fn: lambda job: seen.put(job.workload) or job.workload})
    result = run(server, "-f", fn, "hello", "wide world")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hellowide world", b"")
    assert [seen.get(timeout=TIMEOUT) for _ in range(2)] == [b"hello", b"wide world"]  # one job per argument

    payload = bytes(range(256)) * 1024 + b"\r\n\x00"
    result = run(server, "-f", fn, stdin=payload)
    assert result.returncode == 0 and result.stdout == payload and seen.get(timeout=TIMEOUT) == payload

    result = run(server, "-s", "-f", fn, stdin=b"not read")
    assert result.returncode == 0 and result.stdout == b"" and seen.get(timeout=TIMEOUT) == b""


def test_ls_piped_one_job_per_line(server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = fname("upper")
    seen: list[bytes] = []
    workers(server.address, {fn: lambda job: seen.append(job.workload) or job.workload.upper()})
    listing = subprocess.run(["ls", "/"], capture_output=True, check=True).stdout
    command = f"ls / | {OUR_GEARMAN} -h {server.host} -p {server.port} -n -f {fn}"
    result = subprocess.run(command, shell=True, capture_output=True, timeout=TIMEOUT, env=ENV, check=False)
    assert result.returncode == 0, result
    assert result.stdout == listing.upper()
    assert seen == listing.splitlines(keepends=True)  # one job per line, newline kept

    seen.clear()
    result = run(server, "-N", "-f", fn, stdin=b"one\ntwo\nthree")
    assert result.stdout == b"ONETWOTHREE" and seen == [b"one", b"two", b"three"]


def test_background_priorities_verbose_and_unique(server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = fname("later")
    result = run(server, "-b", "-v", "-f", fn, "a", "b")
    assert result.returncode == 0 and result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2 and all(line.startswith("Task created: H:") for line in lines)
    assert run(server, "-b", "-I", "-f", fn, "high").returncode == 0
    assert run(server, "-b", "-L", "-f", fn, "low").stdout == b""
    [row] = [line.split("\t") for line in server.admin("prioritystatus").splitlines() if line.startswith(fn + "\t")]
    assert row[1:4] == ["1", "2", "1"]

    uniq = fname("uniq")
    seen: queue.Queue[str] = queue.Queue()
    workers(server.address, {uniq: lambda job: seen.put(job.unique) or b""})
    assert run(server, "-u", "chosen-key", "-f", uniq, "x").returncode == 0
    assert seen.get(timeout=TIMEOUT) == "chosen-key"
    assert run(server, "-f", uniq, "y").returncode == 0
    assert len(seen.get(timeout=TIMEOUT)) == 36  # a UUID, as libgearman makes


def test_prefix_warnings_failures_and_several_functions(
    server: RunningServer, workers: Callable[..., WorkerThread]
) -> None:
    fn, other = fname("chatty"), fname("echo")
    workers(server.address, {fn: chatty, other: echo})
    result = run(server, "-P", "-f", fn, "abc")
    assert result.returncode == 0
    assert result.stdout == f"{fn}: data\n{fn}: ABC".encode()
    assert result.stderr == f"{fn}: warning\n".encode()

    result = run(server, "-f", fn, "fail")
    assert (result.returncode, result.stdout, result.stderr) == (1, b"partial\n", b"Job failed\n")

    result = run(server, "-P", "-f", fn, "-f", other, "xyz")  # each workload goes to every function
    assert result.returncode == 0
    chunks = [f"{fn}: data\n".encode(), f"{fn}: XYZ".encode(), f"{other}: xyz".encode()]
    assert all(result.stdout.count(c) == 1 for c in chunks) and len(result.stdout) == sum(map(len, chunks))


def test_errors_timeouts_and_gearman_server_variable(
    server: RunningServer, workers: Callable[..., WorkerThread]
) -> None:
    result = run(server, "-t", "200", "-f", fname("nobody"), "-s")
    assert result.returncode == 1 and b"timeout" in result.stderr

    nowhere = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [OUR_GEARMAN, "-s", "-f", "x"], capture_output=True, timeout=TIMEOUT, env={**ENV, "GEARMAN_SERVER": nowhere}
    )
    assert result.returncode == 1 and b"no server could be reached" in result.stderr

    fn = fname("echo")
    workers(server.address, {fn: echo})
    result = subprocess.run(
        [OUR_GEARMAN, "-h", "wrong.invalid", "-p", "1", "-f", fn, "via env"],
        capture_output=True,
        timeout=TIMEOUT,
        env={**ENV, "GEARMAN_SERVER": f"{nowhere},{server.address}"},  # the first is down: fail over
    )
    assert (result.returncode, result.stdout) == (0, b"via env")

    usage = subprocess.run([OUR_GEARMAN, "-x"], capture_output=True, timeout=TIMEOUT, env=ENV)
    assert usage.returncode == 1 and b"Error in usage(-x)" in usage.stderr and b"Worker mode:" in usage.stderr
    usage = subprocess.run([OUR_GEARMAN, "-H"], capture_output=True, timeout=TIMEOUT, env=ENV)
    assert usage.returncode == 0 and usage.stdout.startswith(b"Client mode:")


#: Flag sets whose output must match the C tool's byte for byte (status lines excepted: the C tool prints
#: them with buffered printf, so on a pipe they come out of order).
SAME_AS_C = [
    ["-f", "{fn}", "abc", "d e"],
    ["-P", "-f", "{fn}", "abc"],
    ["-n", "-f", "{fn}"],
    ["-N", "-P", "-f", "{fn}"],
    ["-s", "-f", "{fn}"],
    ["-f", "{fn}", "fail"],
    ["-P", "-I", "-f", "{fn}", "-f", "{fn}", "fail"],
    ["-b", "-L", "-f", "{fn}", "x"],
]


def test_same_output_as_the_c_tool(server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = fname("same")
    workers(server.address, {fn: chatty})
    stdin = b"line one\nline two\n"
    for args in SAME_AS_C:
        argv = [a.format(fn=fn) for a in args]
        ours, theirs = run(server, *argv, stdin=stdin), run(server, *argv, stdin=stdin, tool=C_GEARMAN)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr), args


@pytest.fixture
def cli_workers(server: RunningServer) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, tool: str = OUR_GEARMAN) -> subprocess.Popen[bytes]:
        argv = [tool, "-w", "-h", server.host, "-p", str(server.port), *args]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=ENV))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
        if proc.stdout:
            proc.stdout.close()


def test_worker_mode(
    server: RunningServer, cli_workers: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    up, lines, stripped, fails, plain = (fname(p) for p in ("up", "lines", "stripped", "fails", "plain"))
    pid_file = tmp_path / "worker.pid"
    counted = cli_workers("-i", str(pid_file), "-c", "2", "-f", up, "--", "tr", "a-z", "A-Z")
    cli_workers("-n", "-f", lines, "--", "printf", "a\\nb\\n")
    cli_workers("-N", "-f", stripped, "--", "printf", "a\\nb\\n")
    cli_workers("-f", fails, "--", "sh", "-c", "cat >/dev/null; echo partial; exit 3")
    echoing = cli_workers("-c", "1", "-f", plain)
    client = Client(server.address, timeout=TIMEOUT)

    assert client.do(up, "hello") == b"HELLO"
    assert pid_file.read_text().strip() == str(counted.pid)
    assert client.do(up, b"bytes \xff\x00 too") == b"BYTES \xff\x00 TOO"
    assert counted.wait(TIMEOUT) == 0  # -c 2: done after two jobs
    assert not pid_file.exists()

    for fn, chunks in ((lines, [b"a\n", b"b\n"]), (stripped, [b"a", b"b"])):
        task = client.add_task(fn, "input")
        client.run_tasks()
        assert (task.chunks, task.result) == (chunks, b"")  # each line once, as WORK_DATA

    failed: list[Task] = []
    client.set_fail_fn(failed.append)
    task = client.add_task(fails, "x" * 100_000)
    client.run_tasks()
    assert failed == [task] and task.chunks == [b"partial\n"]
    with pytest.raises(JobFailed):
        client.do(fails, "again")

    assert client.do(plain, "printed by the worker") == b""  # no command: echoed, empty result (as C)
    assert echoing.wait(TIMEOUT) == 0
    assert echoing.stdout is not None and echoing.stdout.read() == b"printed by the worker"


def test_our_worker_tool_with_the_c_client(server: RunningServer, cli_workers: Callable[..., object]) -> None:
    fn = fname("cat")
    cli_workers("-f", fn, "--", "cat")
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    result = run(server, "-f", fn, stdin=payload, tool=C_GEARMAN)
    assert result.returncode == 0 and result.stdout == payload


def test_progress_bar_when_stderr_is_a_terminal(server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = fname("progress")

    def steps(job: Job) -> bytes:
        for i in range(1, 5):
            job.send_status(i, 4)
        return b"result"

    workers(server.address, {fn: steps})
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [OUR_GEARMAN, "-h", server.host, "-p", str(server.port), "-f", fn, "go"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
            env={**ENV, "COLUMNS": "80"},
        )
        os.close(secondary)
        stdout, _ = proc.communicate(timeout=TIMEOUT)
        terminal = b""
        while select.select([primary], [], [], 0)[0]:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(primary)
    assert proc.returncode == 0
    assert stdout == b"25% Complete\n50% Complete\n75% Complete\n100% Complete\nresult"
    assert b"[" + b"#" * 30 + b"] 100%" in terminal and b"]  25%" in terminal
    assert terminal.endswith(b"\r\x1b[K")  # the bar is cleared before the result


def test_detached_worker(server: RunningServer, tmp_path: Path) -> None:
    fn, pid_file = fname("daemon"), tmp_path / "daemon.pid"
    argv = [OUR_GEARMAN, "-d", "-w", "-c", "1", "-i", str(pid_file), "-h", server.host, "-p", str(server.port)]
    result = subprocess.run([*argv, "-f", fn, "--", "tr", "a-z", "A-Z"], capture_output=True, timeout=TIMEOUT, env=ENV)
    try:
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")  # back at once: it detached
        assert Client(server.address, timeout=TIMEOUT).do(fn, "detached") == b"DETACHED"
    finally:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)  # still there if the job never ran
