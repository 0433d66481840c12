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
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gearman_gateway import Client
from gearman_gateway.client import JobFailed, Task
from gearman_gateway.worker import WORK_FAIL, Job

from . import test_client_library as lib
from .conftest import BIN_DIR, RunningServer, ServerFactory, free_port
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


def wait_gone(pid: int) -> None:
    """Until a process that is not our child (a daemon) has ended."""
    pidfd = os.pidfd_open(pid)
    try:
        assert select.select([pidfd], [], [], TIMEOUT)[0], f"process {pid} did not end"
    finally:
        os.close(pidfd)


def test_detached_worker(server: RunningServer, tmp_path: Path) -> None:
    fn, pid_file = fname("daemon"), tmp_path / "daemon.pid"
    argv = [OUR_GEARMAN, "-d", "-w", "-c", "1", "-i", str(pid_file), "-h", server.host, "-p", str(server.port)]
    result = subprocess.run([*argv, "-f", fn, "--", "tr", "a-z", "A-Z"], capture_output=True, timeout=TIMEOUT, env=ENV)
    pid = int(pid_file.read_text())  # written before `gearman -d` returned: the daemon's pid
    try:
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")  # back at once: it detached
        assert Client(server.address, timeout=TIMEOUT).do(fn, "detached") == b"DETACHED"
        wait_gone(pid)  # -c 1: done after one job
        assert not pid_file.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # still there if the job never ran


def test_detached_worker_removes_its_pid_file_on_sigterm(server: RunningServer, tmp_path: Path) -> None:
    fn, pid_file = fname("daemon"), tmp_path / "daemon.pid"
    argv = [OUR_GEARMAN, "-d", "-w", "-i", str(pid_file), "-h", server.host, "-p", str(server.port), "-f", fn]
    result = subprocess.run(argv, capture_output=True, timeout=TIMEOUT, env=ENV)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    pid = int(pid_file.read_text())
    try:
        assert Client(server.address, timeout=TIMEOUT).do(fn, "up?") == b""  # it serves (no command: echo)
        os.kill(pid, signal.SIGTERM)
        wait_gone(pid)
        assert not pid_file.exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def test_worker_finishes_its_job_on_sigterm_then_removes_its_pid_file(server: RunningServer, tmp_path: Path) -> None:
    fn, pid_file = fname("term"), tmp_path / "worker.pid"
    started, go = fifo(tmp_path / "started"), fifo(tmp_path / "go")
    # the job's command says it started, then waits for the test's word and prints it
    command = ["sh", "-c", f"cat >/dev/null; echo started > {started}; read word < {go}; echo $word"]
    argv = [OUR_GEARMAN, "-w", "-i", str(pid_file), "-h", server.host, "-p", str(server.port), "-f", fn, "--"]
    worker = subprocess.Popen([*argv, *command], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    results: queue.Queue[bytes] = queue.Queue()
    client = threading.Thread(target=lambda: results.put(Client(server.address, timeout=TIMEOUT).do(fn, "x")))
    client.start()
    try:
        with open(started) as line:
            assert line.read() == "started\n"
        assert pid_file.read_text() == f"{worker.pid}\n"
        worker.send_signal(signal.SIGTERM)
        with open(go, "w") as word:
            word.write("finished\n")
        assert results.get(timeout=TIMEOUT) == b"finished\n"  # the job in hand was finished first
        assert worker.wait(TIMEOUT) == -signal.SIGTERM  # then it ended as SIGTERM ends a C tool
        assert not pid_file.exists()
        assert worker.stderr is not None and worker.stderr.read() == b""
    finally:
        worker.kill()
        worker.wait()
        client.join(TIMEOUT)


def test_interrupted_worker_gives_its_job_back(
    server: RunningServer, tmp_path: Path, workers: Callable[..., WorkerThread]
) -> None:
    fn = fname("interrupted")
    started, done = fifo(tmp_path / "started"), fifo(tmp_path / "done")
    command = ["sh", "-c", f"cat >/dev/null; echo started > {started}; read word < {done}"]
    argv = [OUR_GEARMAN, "-w", "-h", server.host, "-p", str(server.port), "-f", fn, "--", *command]
    worker = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=ENV)
    try:
        Client(server.address, timeout=TIMEOUT).do_background(fn, "keep me")
        with open(started) as line:
            assert line.read() == "started\n"
        worker.send_signal(signal.SIGINT)  # Ctrl-C in the middle of the job
        assert worker.wait(TIMEOUT) == -signal.SIGINT
    finally:
        worker.kill()
        worker.wait()
        with open(done, "w"):
            pass  # the command's `read` gets end of file: it ends too
    # not failed: the server has it back, and the next worker runs it
    assert f"{fn}\t1\t0\t0" in server.admin("status").splitlines()
    seen: queue.Queue[bytes] = queue.Queue()
    workers(server.address, {fn: lambda job: seen.put(job.workload) or b""})
    assert seen.get(timeout=TIMEOUT) == b"keep me"


# -- errors: one line on standard error and an exit status, never a traceback


def cli(
    *args: str | bytes, env: dict[str, str] | None = None, stdin: object = subprocess.DEVNULL, stdout: object = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [OUR_GEARMAN, *args],
        stdin=stdin,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        timeout=TIMEOUT,
        env={**ENV, **(env or {})},
    )


def one_line(result: subprocess.CompletedProcess[bytes], status: int = 1) -> str:
    """The error line of a run that must have failed with ``status`` and said so in one line."""
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    assert (result.returncode, result.stdout) == (status, b""), result
    assert result.stderr.endswith(b"\n") and result.stderr.count(b"\n") == 1, result.stderr
    return result.stderr.decode()


def test_bad_input_is_one_line_never_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "no such dir" / "gearman.pid"
    refused = free_port()  # nothing listens there
    cases: list[tuple[list[str], dict[str, str], str]] = [
        (["-p", "99999"], {}, "gearman: -p 99999: port out of range (1-65535)"),
        ([], {"GEARMAN_SERVER": "127.0.0.1:abc"}, "gearman: GEARMAN_SERVER: bad port in server '127.0.0.1:abc'"),
        ([], {"GEARMAN_SERVER": "127.0.0.1:70000"}, "gearman: GEARMAN_SERVER: port out of range in server"),
        ([], {"GEARMAN_SERVER": ","}, "gearman: GEARMAN_SERVER=',' names no server"),
        (["-h", "a..b"], {}, "gearman: no server could be reached: a..b:4730 (bad host name: a..b)"),
        (["-h", "x" * 64], {}, f"gearman: no server could be reached: {'x' * 64}:4730 (bad host name: "),
        (
            ["-h", "127.0.0.1", "-p", str(refused)],
            {},
            f"gearman: no server could be reached: 127.0.0.1:{refused} (Connection refused)",
        ),
        (["-i", str(missing)], {}, f"gearman: -i {missing}: cannot write the pid file: No such file or directory"),
        (["-d", "-w", "-i", str(missing)], {}, f"gearman: -i {missing}: cannot write the pid file: No such file"),
        (["--ssl-ca-file", str(missing)], {}, "gearman: --ssl-ca-file, --ssl-certificate and --ssl-key need -S"),
        (["-S", "--ssl-ca-file", str(missing)], {}, f"gearman: --ssl-ca-file {missing}: not a readable file"),
    ]
    for args, env, expected in cases:
        assert one_line(cli(*args, "-f", "fn", "-s", env=env)).startswith(expected), (args, env)
    assert one_line(cli("-f", "", "-s")) == "gearman: -f: a function name cannot be empty\n"
    with open(tmp_path / "write-only", "wb") as write_only:  # a standard input that cannot be read
        result = cli("-h", "127.0.0.1", "-p", str(refused), "-f", "fn", stdin=write_only)
    assert one_line(result) == "gearman: cannot read standard input: Bad file descriptor\n"
    assert not missing.parent.exists()


def test_names_and_unique_keys_that_are_not_utf8(server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = fname("bytes").encode() + b"\xff"
    seen: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
    workers(server.address, {fn: lambda job: seen.put((job._function, job._unique)) or b"ok"})  # type: ignore[dict-item]
    result = cli("-h", server.host, "-p", str(server.port), b"-f", fn, b"-u", b"key\xfe", b"data")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"ok", b"")
    assert seen.get(timeout=TIMEOUT) == (fn, b"key\xfe")  # the bytes of argv, unchanged


def test_server_gone_in_the_middle_of_a_job(gearmand: ServerFactory, workers: Callable[..., WorkerThread]) -> None:
    server, fn = gearmand(), fname("gone")
    running, release = threading.Event(), threading.Event()

    def hold(job: Job) -> bytes:
        running.set()
        release.wait(TIMEOUT)
        return b"too late"

    workers(server.address, {fn: hold})
    argv = [OUR_GEARMAN, "-h", server.host, "-p", str(server.port), "-f", fn, "-s"]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        assert running.wait(TIMEOUT)
        server.stop(signal.SIGKILL)
        stdout, stderr = client.communicate(timeout=TIMEOUT)
    finally:
        release.set()
        client.kill()
        client.wait()
    line = one_line(subprocess.CompletedProcess(argv, client.returncode, stdout, stderr))
    assert line.startswith(f"gearman: no server could run the job: {server.address} (connection lost: "), line


def test_background_job_the_server_refuses(server: RunningServer) -> None:
    """gearmand's C tool prints the ERROR and exits 0, so a script goes on as if the job were queued;
    ours exits 1 with the server's text."""
    fn = fname("full")
    args = ["-h", server.host, "-p", str(server.port), "-b", "-f", fn]
    assert cli(*args, "first").returncode == 0
    assert server.admin(f"maxqueue {fn} 1").startswith("OK")
    ours = cli(*args, "refused")
    assert one_line(ours) == "gearman: QUEUE_ERROR: Job queue is full\n"
    theirs = run(server, "-b", "-f", fn, "refused too", tool=C_GEARMAN)
    assert theirs.returncode == 0 and b"QUEUE_ERROR:Job queue is full" in theirs.stderr
    assert f"{fn}\t1\t0\t0" in server.admin("status").splitlines()  # neither was queued


def closed_pipe() -> int:
    """The write end of a pipe whose reader is already gone (`... | head -c0`, deterministic)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def test_closed_standard_output_ends_quietly(server: RunningServer, workers: Callable[..., WorkerThread]) -> None:
    fn = fname("big")
    workers(server.address, {fn: lambda job: b"x" * 1_000_000})
    stdout = closed_pipe()
    try:
        result = cli("-h", server.host, "-p", str(server.port), "-f", fn, "-s", stdout=stdout)
    finally:
        os.close(stdout)
    assert (result.returncode, result.stderr) == (-signal.SIGPIPE, b"")  # as `yes | head -c1`: no message


def test_worker_without_command_losing_its_output_gives_the_job_back(
    server: RunningServer, workers: Callable[..., WorkerThread]
) -> None:
    fn = fname("echo-closed")
    stdout = closed_pipe()
    try:
        argv = [OUR_GEARMAN, "-w", "-h", server.host, "-p", str(server.port), "-f", fn]
        worker = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, env=ENV)
    finally:
        os.close(stdout)
    try:
        Client(server.address, timeout=TIMEOUT).do_background(fn, "printed nowhere")
        assert worker.wait(TIMEOUT) == -signal.SIGPIPE
        assert worker.stderr is not None and worker.stderr.read() == b""
    finally:
        worker.kill()
        worker.wait()
    seen: queue.Queue[bytes] = queue.Queue()
    workers(server.address, {fn: lambda job: seen.put(job.workload) or b""})
    assert seen.get(timeout=TIMEOUT) == b"printed nowhere"  # not failed: run by the next worker
