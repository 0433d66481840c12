"""Debian's C command-line tools (`gearman`, `gearadmin`) against the server, over real sockets.

The tools are called by absolute path, so that a `gearadmin` entry point installed by this project cannot
shadow the C one. Set GG_TEST_SERVER=/usr/sbin/gearmand to check the tests against the real gearmand; the
tests for this server's deliberate differences are skipped then.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

GEARMAN = "/usr/bin/gearman"
GEARADMIN = "/usr/bin/gearadmin"
TOOL_TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(
    not (Path(GEARMAN).exists() and Path(GEARADMIN).exists()),
    reason="Debian's gearman-tools (/usr/bin/gearman, /usr/bin/gearadmin) are not installed",
)

ours_only = pytest.mark.skipif(
    bool(os.environ.get("GG_TEST_SERVER")),
    reason="deliberate difference from gearmand 1.1.20; only checked on our server",
)

# A GEARMAN_SERVER variable in the caller's environment would override -h/-p.
TOOL_ENV = {k: v for k, v in os.environ.items() if k != "GEARMAN_SERVER"}


def run_tool(argv: list[str], timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, env=TOOL_ENV, check=False
    )


def gearadmin(server, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run_tool([GEARADMIN, "-h", server.host, "-p", str(server.port), *args])


def admin_out(server, *args: str) -> str:
    """Run gearadmin, require a clean exit and no stderr, return stdout."""
    res = gearadmin(server, *args)
    assert res.returncode == 0, res
    assert res.stderr == b"", res
    return res.stdout.decode()


def table(server, option: str) -> list[list[str]]:
    """A gearadmin list reply (--status, --workers, ...) split into TAB-separated rows, '.' line checked."""
    out = admin_out(server, option)
    assert out.endswith(".\n"), repr(out)
    lines = out.split("\n")
    assert lines[-2:] == [".", ""], repr(out)
    return [line.split("\t") for line in lines[:-2]]


def status(server) -> dict[str, tuple[int, int, int]]:
    rows = table(server, "--status")
    result = {}
    for row in rows:
        assert len(row) == 4, row
        result[row[0]] = (int(row[1]), int(row[2]), int(row[3]))
    return result


def priority_status(server) -> dict[str, tuple[int, int, int, int]]:
    rows = table(server, "--priority-status")
    result = {}
    for row in rows:
        assert len(row) == 5, row
        result[row[0]] = (int(row[1]), int(row[2]), int(row[3]), int(row[4]))
    return result


def show_jobs(server) -> dict[str, tuple[int, int, int]]:
    """handle -> (retries, ignore, queued)."""
    rows = table(server, "--show-jobs")
    result = {}
    for row in rows:
        assert len(row) == 4, row
        result[row[0]] = (int(row[1]), int(row[2]), int(row[3]))
    return result


def submit_bg(server, function: str, data: str, *flags: str, unique: str | None = None) -> None:
    """`gearman -b`: a background submit; the CLI prints nothing and exits after JOB_CREATED."""
    argv = [GEARMAN, "-h", server.host, "-p", str(server.port), "-b", *flags, "-f", function]
    if unique is not None:
        argv += ["-u", unique]
    res = run_tool([*argv, data])
    assert res.returncode == 0, res
    assert res.stdout == b"", res
    assert res.stderr == b"", res


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> object:
    """Poll (briefly) until predicate() is truthy; the state lives in another process."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start long-running tool processes; each is stopped by its own PID at teardown."""
    procs: list[subprocess.Popen] = []

    def start(argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=TOOL_ENV
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)


def start_worker(spawn, server, functions: list[str], command: list[str] | None = None) -> subprocess.Popen:
    argv = [GEARMAN, "-h", server.host, "-p", str(server.port), "-w"]
    for fn in functions:
        argv += ["-f", fn]
    if command:
        argv += ["--", *command]
    return spawn(argv)


def stop_worker(proc: subprocess.Popen) -> bytes:
    """Kill a worker by its PID; return what it wrote to stdout."""
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    return out


# ---------------------------------------------------------------------------------------------------------
# gearman client + worker


def test_reverse_worker_and_client(server, spawn) -> None:
    worker = start_worker(spawn, server, ["reverse"], ["rev"])
    res = run_tool([GEARMAN, "-h", server.host, "-p", str(server.port), "-f", "reverse", "Hello"])
    assert res.returncode == 0, res
    # The workload has no newline, so rev(1) prints none either, and the CLI adds nothing.
    assert res.stdout == b"olleH"
    assert res.stderr == b""
    # Each positional argument is its own job, run one after another; outputs are concatenated raw.
    res = run_tool([GEARMAN, "-h", server.host, "-p", str(server.port), "-f", "reverse", "Hello", "abc"])
    assert res.returncode == 0, res
    assert res.stdout == b"olleHcba"
    assert worker.poll() is None
    assert status(server)["reverse"] == (0, 0, 1)


def test_worker_without_command(server, spawn) -> None:
    """With no command, the CLI worker prints each workload on its own stdout and completes empty."""
    worker = start_worker(spawn, server, ["echo_fn"])
    res = run_tool([GEARMAN, "-h", server.host, "-p", str(server.port), "-f", "echo_fn", "payload 123"])
    assert res.returncode == 0, res
    assert res.stdout == b""
    assert stop_worker(worker) == b"payload 123"


# ---------------------------------------------------------------------------------------------------------
# gearadmin


def test_status_counts_queued_background_jobs(server) -> None:
    for i in range(3):
        submit_bg(server, "queued_fn", f"data{i}", unique=f"key{i}")
    submit_bg(server, "other_fn", "x", unique="other")
    st = status(server)
    assert st["queued_fn"] == (3, 0, 0)
    assert st["other_fn"] == (1, 0, 0)
    # The same unique for the same function coalesces: no new job.
    submit_bg(server, "queued_fn", "different data", unique="key0")
    assert status(server)["queued_fn"] == (3, 0, 0)


def test_status_empty_server(server) -> None:
    assert table(server, "--status") == []


def test_workers_lists_registered_worker(server, spawn) -> None:
    worker = start_worker(spawn, server, ["wfn_a", "wfn_b"])

    def worker_rows():
        return [row for row in table(server, "--workers") if "wfn_a" in row[0]]

    rows = wait_for(worker_rows, "the worker to register both functions")
    assert len(rows) == 1, rows
    (line,) = rows[0]
    m = re.fullmatch(r"(\d+) (\S+) (\S+) :((?: \S+)*)", line)
    assert m, line
    assert m.group(2) == "127.0.0.1"
    assert m.group(3) == "-"  # the CLI sends no SET_CLIENT_ID
    assert sorted(m.group(4).split()) == ["wfn_a", "wfn_b"]
    # Every line of the reply (the admin connection's own too) has the same shape.
    for (other,) in table(server, "--workers"):
        assert re.fullmatch(r"\d+ \S+ \S+ :(?: \S+)*", other), other
    st = status(server)
    assert st["wfn_a"] == (0, 0, 1)
    assert st["wfn_b"] == (0, 0, 1)

    stop_worker(worker)
    wait_for(lambda: status(server)["wfn_a"] == (0, 0, 0), "the worker count to drop to 0")
    assert not any("wfn_a" in row[0] for row in table(server, "--workers"))


def test_server_version(server) -> None:
    out = admin_out(server, "--server-version")
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 2, repr(out)
    assert lines[0].strip(), repr(out)
    # gearadmin prints the text after "OK " of the `version` admin command.
    assert server.admin("version").rstrip("\r\n") == "OK " + lines[0]


def test_getpid(server) -> None:
    out = admin_out(server, "--getpid")
    assert out.endswith("\n")
    assert int(out.strip()) == server.pid


def test_create_and_drop_function(server) -> None:
    assert admin_out(server, "--create-function", "made_fn") == "OK\n"
    # gearadmin sends CRLF, so even gearmand keeps the whole name.
    assert status(server)["made_fn"] == (0, 0, 0)
    assert priority_status(server)["made_fn"] == (0, 0, 0, 0)
    # Creating it again is harmless.
    assert admin_out(server, "--create-function", "made_fn") == "OK\n"
    assert [row[0] for row in table(server, "--status")].count("made_fn") == 1

    assert admin_out(server, "--drop-function", "made_fn") == "OK\n"
    assert "made_fn" not in status(server)

    res = gearadmin(server, "--drop-function", "made_fn")
    assert res.returncode == 0, res  # gearadmin exits 0 even on ERR
    assert res.stdout == b""
    assert res.stderr.decode().strip() == "Error: function not found"


def test_drop_function_with_worker_is_refused(server, spawn) -> None:
    start_worker(spawn, server, ["busy_fn"])
    wait_for(lambda: status(server).get("busy_fn") == (0, 0, 1), "the worker to register")
    res = gearadmin(server, "--drop-function", "busy_fn")
    assert res.returncode == 0, res
    assert res.stderr.decode().startswith("Error: "), res
    assert "busy_fn" in status(server)


def test_show_jobs_lists_background_jobs(server) -> None:
    assert show_jobs(server) == {}
    submit_bg(server, "sj_fn", "one", unique="sj1")
    first = show_jobs(server)
    assert len(first) == 1
    handle = next(iter(first))
    assert re.fullmatch(r"\S+:\d+", handle), handle
    assert first[handle] == (0, 0, 1)  # retries 0, not ignored, background
    submit_bg(server, "sj_fn", "two", unique="sj2")
    second = show_jobs(server)
    assert len(second) == 2
    assert handle in second
    assert all(v == (0, 0, 1) for v in second.values())


def test_cancel_job(server) -> None:
    submit_bg(server, "cancel_fn", "a", unique="c1")
    (handle,) = show_jobs(server)
    submit_bg(server, "cancel_fn", "b", unique="c2")
    assert status(server)["cancel_fn"] == (2, 0, 0)
    assert admin_out(server, "--cancel-job", handle) == "OK\n"

    res = gearadmin(server, "--cancel-job", "H:no-such-host:999999")
    assert res.returncode == 0, res
    assert res.stdout == b""
    assert res.stderr.decode().strip() == "Error: UNKNOWN_JOB"


@ours_only
def test_cancel_job_removes_the_job(server) -> None:
    """gearmand 1.1.20 only flags a cancelled job (ignore=1) and keeps counting it; ours removes it."""
    submit_bg(server, "cancel_fn", "a", unique="c1")
    (handle,) = show_jobs(server)
    submit_bg(server, "cancel_fn", "b", unique="c2")
    jobs = show_jobs(server)
    assert len(jobs) == 2
    assert admin_out(server, "--cancel-job", handle) == "OK\n"
    after = show_jobs(server)
    assert handle not in after
    assert len(after) == 1
    assert status(server)["cancel_fn"] == (1, 0, 0)
    assert priority_status(server)["cancel_fn"] == (0, 1, 0, 0)
    assert table(server, "--show-unique-jobs") == [["c2"]]
    # A second cancel of the same handle: the job is gone now.
    res = gearadmin(server, "--cancel-job", handle)
    assert res.returncode == 0, res
    assert res.stderr.decode().strip() == "Error: UNKNOWN_JOB"


def test_show_unique_jobs(server) -> None:
    assert table(server, "--show-unique-jobs") == []
    submit_bg(server, "u_fn", "1", unique="alpha")
    submit_bg(server, "u_fn", "2", unique="beta-key")
    submit_bg(server, "u_other", "3", unique="gamma")
    rows = table(server, "--show-unique-jobs")
    assert all(len(row) == 1 for row in rows), rows
    assert sorted(row[0] for row in rows) == ["alpha", "beta-key", "gamma"]


def test_priority_status(server, spawn) -> None:
    submit_bg(server, "prio_fn", "h1", "-I", unique="h1")
    submit_bg(server, "prio_fn", "h2", "-I", unique="h2")
    submit_bg(server, "prio_fn", "n1", unique="n1")
    for i in range(3):
        submit_bg(server, "prio_fn", f"l{i}", "-L", unique=f"l{i}")
    submit_bg(server, "prio_other", "x", "-L", unique="x")
    ps = priority_status(server)
    assert ps["prio_fn"] == (2, 1, 3, 0)
    assert ps["prio_other"] == (0, 0, 1, 0)
    assert status(server)["prio_fn"] == (6, 0, 0)

    # A worker registered for another function shows in the WORKERS column of its own function only.
    start_worker(spawn, server, ["prio_idle"])
    wait_for(lambda: priority_status(server).get("prio_idle") == (0, 0, 0, 1), "the worker to register")
    assert priority_status(server)["prio_fn"] == (2, 1, 3, 0)


def test_worker_drains_queue_in_priority_order(server, spawn) -> None:
    """Background jobs queued before any worker: the worker takes HIGH first, then NORMAL, then LOW."""
    submit_bg(server, "order_fn", "low", "-L", unique="o-low")
    submit_bg(server, "order_fn", "normal", unique="o-normal")
    submit_bg(server, "order_fn", "high", "-I", unique="o-high")
    worker = start_worker(spawn, server, ["order_fn"])  # echoes each workload to its stdout
    wait_for(lambda: status(server)["order_fn"] == (0, 0, 1), "the worker to drain the queue")
    assert stop_worker(worker) == b"highnormallow"
