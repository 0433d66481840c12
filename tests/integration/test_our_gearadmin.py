"""Our `gearadmin` (the Python one installed with the package) against our server."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess

import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import BIN_DIR, free_port
from tests.integration.rawclient import Raw, submit

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our gearadmin's extra commands")
GEARADMIN = str(BIN_DIR / "gearadmin")


def run(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GEARADMIN, "-h", "127.0.0.1", "-p", str(server.port), *args], capture_output=True, text=True, timeout=20
    )


def test_gearadmin_reads_whole_lists_and_one_line_replies(server) -> None:
    with Raw(server.port) as client:
        handle = submit(client, b"ga", b"x", unique=b"gu", ptype=Packet.SUBMIT_JOB_BG)
        result = run(server, "--status", "--show-jobs", "--show-unique-jobs", "--getpid", "--server-version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "ga\t1\t0\t0" in lines
    assert f"{handle.decode()}\t0\t0\t1" in lines
    assert "gu" in lines
    assert str(server.pid) in lines
    assert any(line.startswith("1.1.20+gearman-gateway") for line in lines)


def test_gearadmin_errors_exit_one(server) -> None:
    result = run(server, "--drop-function", "nosuch")
    assert result.returncode == 1 and "Error: function not found" in result.stderr
    result = run(server)
    assert result.returncode == 1 and "No option execution operation given." in result.stderr


def test_gearadmin_store_and_dead_letters(gearmand) -> None:
    server = gearmand("--dead-letter")
    result = run(server, "--show-store", "--show-dead-jobs")
    assert result.returncode == 0 and "backend\tsqlite" in result.stdout and "state\tup" in result.stdout
    with Raw(server.port) as client, Raw(server.port) as w:
        handle = submit(client, b"dl", b"x", ptype=Packet.SUBMIT_JOB_BG)
        w.send(Packet.CAN_DO, b"dl")
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        w.send(Packet.WORK_FAIL, handle)
        assert w.call(Packet.ECHO_REQ, b"sync") == (Packet.ECHO_RES, [b"sync"])
    assert f"{handle.decode()}\tdl\t1\tWORK_FAIL" in run(server, "--show-dead-jobs").stdout  # failed once
    assert run(server, "--requeue-dead-job", handle.decode()).stdout.strip() == "1"
    assert run(server, "--delete-dead-job", "all").stdout.strip() == "0"
    assert "dl\t1\t0\t0" in run(server, "--status").stdout


C_GEARADMIN = "/usr/bin/gearadmin"  # Debian's, by absolute path: ours shadows it on PATH
#: Every option of Debian's gearadmin that only reads.
READ_ONLY = [
    "--status",
    "--priority-status",
    "--workers",
    "--server-version",
    "--server-verbose",
    "--getpid",
    "--show-jobs",
    "--show-unique-jobs",
]


def own_connection(stdout: bytes) -> bytes:
    """`workers` lists the tool's own admin connection as `<fd> 127.0.0.1 - :` (every other connection
    here has a client id). The server may give the next tool's connection another descriptor, which
    gearmand also lists at another place, so that line is left out of the comparison."""
    return re.sub(rb"(?m)^\d+ 127\.0\.0\.1 - :\n", b"", stdout)


@pytest.mark.parametrize("kind", ["ours", "gearmand"])
def test_same_output_as_debians_gearadmin(kind: str, gearmand, real_gearmand) -> None:
    """What the README promises: for every option (alone, and all at once: the C tool runs them in
    its own fixed order), Debian's gearadmin and ours print the same bytes, on our server and on
    gearmand. Only the exit status after an ERR differs (ours 1, theirs 0)."""
    server = gearmand() if kind == "ours" else real_gearmand()
    with Raw(server.port) as client, Raw(server.port) as worker:
        client.send(Packet.SET_CLIENT_ID, b"same-client")
        submit(client, b"same", b"x", unique=b"same-unique", ptype=Packet.SUBMIT_JOB_BG)
        submit(client, b"same", b"y", ptype=Packet.SUBMIT_JOB_LOW_BG)
        worker.send(Packet.SET_CLIENT_ID, b"same-worker")
        worker.send(Packet.CAN_DO, b"same")
        assert worker.call(Packet.ECHO_REQ, b"sync") == (Packet.ECHO_RES, [b"sync"])
        runs = [[option] for option in READ_ONLY] + [
            READ_ONLY,
            ["--status", "--workers"],
            ["--create-function", "made", "--drop-function", "made", "--getpid"],
            ["--cancel-job", "H:nowhere:1"],
            ["--drop-function", "nosuch"],
        ]
        for options in runs:
            argv = ["-h", "127.0.0.1", "-p", str(server.port), *options]
            theirs = subprocess.run([C_GEARADMIN, *argv], capture_output=True, timeout=20)
            ours = subprocess.run([GEARADMIN, *argv], capture_output=True, timeout=20)
            assert own_connection(ours.stdout) == own_connection(theirs.stdout), options
            assert ours.stderr == theirs.stderr, options
            error = ours.stderr.startswith(b"Error: ")
            assert (ours.returncode, theirs.returncode) == ((1, 0) if error else (0, 0)), options


def admin(*args: str, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([GEARADMIN, *args], stdout=stdout, stderr=subprocess.PIPE, timeout=20)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The error line of a run that must have failed with status 1 and said so in one line."""
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    assert (result.returncode, result.stdout) == (1, b""), result
    assert result.stderr.endswith(b"\n") and result.stderr.count(b"\n") == 1, result.stderr
    return result.stderr.decode()


def test_gearadmin_errors_are_one_line() -> None:
    refused = free_port()  # nothing listens there
    cases = [
        (["-p", "99999", "--status"], "gearadmin: -p 99999: port out of range (1-65535)"),
        (["-p", "abc", "--status"], "gearadmin: -p abc: not a port number or a known service name"),
        (["-p", str(refused), "--status"], f"gearadmin: cannot connect to 127.0.0.1:{refused}: Connection refused"),
        (["-h", "a..b", "--status"], "gearadmin: cannot connect to a..b:4730: bad host name"),
        (["--bogus"], "gearadmin: unrecognized arguments: --bogus (--help lists the options)"),
        (["--status", "extra"], "gearadmin: unrecognized arguments: extra (--help lists the options)"),
        (["-t", "0", "--status"], "gearadmin: -t 0: the timeout must be a number of seconds from 0 to 86400"),
        (["-t", "inf", "--status"], "gearadmin: -t inf: the timeout must be a number of seconds from 0 to 86400"),
        (["-t", "1e30", "--status"], "gearadmin: -t 1e+30: the timeout must be a number of seconds from 0 to 86400"),
        (
            ["--ssl-key", "/nonexistent", "--status"],
            "gearadmin: --ssl-ca-file, --ssl-certificate and --ssl-key need -S",
        ),
        (["-S", "--ssl-key", "/nonexistent", "--status"], "gearadmin: --ssl-key /nonexistent: not a readable file"),
        ([], "gearadmin: No option execution operation given. (--help lists the options)"),
        (["--cancel-job", "H:x:1\r\nshutdown"], "gearadmin: --cancel-job: the argument cannot contain a line break"),
    ]
    for args, expected in cases:
        argv = args if "-h" in args else ["-h", "127.0.0.1", *args]
        assert one_line(admin(*argv)).startswith(expected), args


def test_gearadmin_server_that_closes_or_stays_silent() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        proc = subprocess.Popen(
            [GEARADMIN, "-h", "127.0.0.1", "-p", str(port), "-t", "0.3", "--status"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(100) == b"status\r\n"
        closed = subprocess.CompletedProcess(proc.args, proc.wait(20), proc.stdout.read(), proc.stderr.read())
        proc.stdout.close(), proc.stderr.close()
        assert one_line(closed) == f"gearadmin: 127.0.0.1:{port} closed the connection before replying to 'status'\n"

        silent = subprocess.Popen(
            [GEARADMIN, "-h", "127.0.0.1", "-p", str(port), "-t", "0.3", "--getpid"], stderr=subprocess.PIPE
        )
        conn, _ = listener.accept()
        with conn:
            assert conn.recv(100) == b"getpid\r\n"
            _, stderr = silent.communicate(timeout=20)
    assert silent.returncode == 1 and stderr == f"gearadmin: no reply from 127.0.0.1:{port} within 0.3 s\n".encode()


def test_gearadmin_closed_standard_output_ends_quietly(server) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `gearadmin --workers | head -c0`, without a race
    try:
        result = admin("-h", "127.0.0.1", "-p", str(server.port), "--workers", stdout=write_end)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (-signal.SIGPIPE, b"")
