"""The `gearmand` process as an operator sees it: signals, shutdown, daemon mode, limits, embedding."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import OUR_GEARMAND, admin_command, free_port, wait_listening
from tests.integration.rawclient import Raw, submit, worker

pytestmark = pytest.mark.skipif("GG_TEST_SERVER" in os.environ, reason="our server's process behaviour")


def test_sigterm_stops_cleanly(server) -> None:
    assert server.stop(signal.SIGTERM) == 0
    assert "shutdown complete" in server.log()


def test_sigint_stops_cleanly(server) -> None:
    assert server.stop(signal.SIGINT) == 0


def test_graceful_shutdown_lets_the_running_job_finish(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"g") as w:
        handle = submit(client, b"g", b"x")
        queued = submit(client, b"g", b"y")
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        assert admin_command(server.port, "shutdown graceful") == "OK\r\n"
        deadline = time.monotonic() + 5
        while True:  # the listener closes; existing connections stay
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            except OSError:
                break
            assert time.monotonic() < deadline
            time.sleep(0.01)
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.NO_JOB)  # no new work is handed out while draining
        assert server.proc.poll() is None
        w.send(Packet.WORK_COMPLETE, handle, b"finished")
        assert client.expect(Packet.WORK_COMPLETE) == [handle, b"finished"]
        assert server.proc.wait(10) == 0
        assert queued != handle


def test_sigusr1_is_graceful_too(server) -> None:
    server.proc.send_signal(signal.SIGUSR1)
    assert server.proc.wait(10) == 0
    assert "graceful shutdown" in server.log()


def test_shutdown_command_is_loopback_only_by_default(server) -> None:
    # the test peer is loopback, so it is allowed: the server exits
    assert server.admin("shutdown") == "OK\r\n"
    assert server.proc.wait(10) == 0


def test_daemon_mode_pid_file_and_log_file(tmp_path: Path) -> None:
    port = free_port()
    pid_file = tmp_path / "gearmand.pid"
    log_file = tmp_path / "gearmand.log"
    result = subprocess.run(
        [OUR_GEARMAND, "-d", "-L", "127.0.0.1", "-p", str(port), "-P", str(pid_file), "-l", str(log_file)],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    pid = int(pid_file.read_text())
    try:
        assert admin_command(port, "getpid") == f"OK {pid}\n"
        assert "listening" in log_file.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pid_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_daemon_reports_a_taken_port_to_the_shell(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [OUR_GEARMAND, "-d", "-L", "127.0.0.1", "-p", str(port), "-l", str(tmp_path / "log")],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 1
        assert "cannot start" in result.stderr and str(port) in result.stderr


def test_foreground_start_failure_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [OUR_GEARMAND, "-L", "127.0.0.1", "-p", str(port)], capture_output=True, text=True, timeout=20
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr


def test_an_unwritable_pid_file_is_one_plain_sentence(tmp_path: Path) -> None:
    pid_file = tmp_path / "missing-dir" / "gearmand.pid"
    result = subprocess.run(
        [OUR_GEARMAND, "-L", "127.0.0.1", "-p", str(free_port()), "-q", "builtin", "-l", "none", "-P", str(pid_file)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gearmand: cannot start: cannot write the pid file {pid_file} (--pid-file): No such file or directory"
    ]


def test_connection_limit_refuses_extra_connections(gearmand) -> None:
    server = gearmand("--max-connections", "3")
    first = Raw(server.port)
    deadline = time.monotonic() + 5
    while first.admin("workers").count(b"\n") != 2:  # until the fixture's start-up probe has gone
        assert time.monotonic() < deadline
        time.sleep(0.01)
    held = [first, Raw(server.port), Raw(server.port)]
    try:
        for c in held:
            assert c.call(Packet.ECHO_REQ, b"x") == (Packet.ECHO_RES, [b"x"])
        with pytest.raises(EOFError):  # refused: reset while connecting, or closed at its first request
            with Raw(server.port) as extra:
                extra.call(Packet.ECHO_REQ, b"x")
        assert "refusing connection" in server.log()
    finally:
        for c in held:
            c.close()
    deadline = time.monotonic() + 5
    while True:  # slots free up again
        try:
            with Raw(server.port) as again:
                assert again.call(Packet.ECHO_REQ, b"y") == (Packet.ECHO_RES, [b"y"])
            break
        except EOFError:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_client_that_stops_reading_cannot_grow_server_memory(gearmand) -> None:
    server = gearmand("--max-output-buffer", str(8 << 20))
    chunk = b"r" * (1 << 20)
    lazy = Raw(server.port)
    lazy.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for _ in range(64):  # 64 jobs whose 1 MiB results it will never read
        lazy.send(Packet.SUBMIT_JOB, b"big", b"", b"x")
    with worker(server.port, b"big") as w:
        closed = False
        for _ in range(64):
            w.send(Packet.GRAB_JOB)
            ptype, args = w.recv(timeout=10)
            if ptype == Packet.NO_JOB:
                closed = True  # the lazy client was cut off and its remaining jobs dropped
                break
            assert ptype == Packet.JOB_ASSIGN
            w.send(Packet.WORK_COMPLETE, args[0], chunk)
        assert closed or "stopped reading" in server.log()
        assert _rss_kb(server.pid) < 200_000
        assert "stopped reading" in server.log()
        with Raw(server.port) as fresh:
            assert fresh.call(Packet.ECHO_REQ, b"ok") == (Packet.ECHO_RES, [b"ok"])
    lazy.close()


def test_embedded_server_object_on_a_private_reactor(tmp_path: Path) -> None:
    script = tmp_path / "embed.py"
    script.write_text(
        "import socket, sys\n"
        "from twisted.internet import reactor\n"
        "from gearman_gateway.config import make_settings\n"
        "from gearman_gateway.server import Server\n"
        f"settings = make_settings({{'listen': ['127.0.0.1'], 'port': 0, 'data_dir': {str(tmp_path)!r}}})\n"
        "server = Server(settings, reactor)\n"
        "server.start()\n"
        "host, port = server.addresses()['binary'][0]\n"
        "def probe():\n"
        "    s = socket.create_connection((host, port)); s.sendall(b'version\\n')\n"
        "    reply = s.recv(100); s.close(); print(reply.decode().strip()); reactor.callFromThread(reactor.stop)\n"
        "reactor.callLater(0, lambda: reactor.callInThread(probe))\n"
        "reactor.run()\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK 1.1.20")


def test_listen_on_two_addresses(gearmand) -> None:
    port = free_port()
    server = gearmand("-L", "127.0.0.2", port=port)  # the fixture adds -L 127.0.0.1 first
    wait_listening(port, server.proc)
    with socket.create_connection(("127.0.0.2", port), timeout=5) as s:
        s.sendall(b"version\n")
        assert s.recv(100).startswith(b"OK ")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")
def test_user_switch_after_binding(gearmand) -> None:
    data = Path(tempfile.mkdtemp(prefix="gg-user-"))
    data.chmod(0o755)  # like /var/lib: the user may pass through; the server makes queue/ its own
    server = gearmand("-u", "nobody", "--data-dir", str(data / "queue"))
    assert server.admin("version").startswith("OK ")  # answered by the reactor, which runs after the switch
    status = Path(f"/proc/{server.pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) == pwd.getpwnam("nobody").pw_uid
    with Raw(server.port) as client:  # the durable queue is writable as that user
        assert submit(client, b"asuser", b"x", ptype=Packet.SUBMIT_JOB_BG)
    queue = data / "queue" / f"queue-{server.port}.sqlite3"
    for made in (queue, Path(f"{queue}.lock")):  # the lock is taken as that user, after the switch
        assert made.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    server.stop()
    assert queue.exists() and not Path(f"{queue}.lock").exists()  # the job is kept; the lock goes
    shutil.rmtree(data, ignore_errors=True)


def test_user_switch_never_gives_away_the_directory_of_a_named_queue_file(gearmand) -> None:
    shared = Path(tempfile.mkdtemp(prefix="gg-shared-"))
    shared.chmod(0o755)  # like /var/lib: root's, with other files in it
    (shared / "other-program.conf").write_text("x")
    database = shared / "gearman.db"
    port = free_port()
    result = subprocess.run(
        [
            OUR_GEARMAND,
            "-L",
            "127.0.0.1",
            "-p",
            str(port),
            "-l",
            "none",
            "-u",
            "nobody",
            "--libsqlite3-db",
            str(database),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gearmand: cannot start: user nobody cannot write {shared}, the directory of the queue file {database} "
        "(--libsqlite3-db FILE); sqlite needs to make its -wal, -shm and lock files there: give the user a "
        "directory of its own"
    ]
    assert shared.stat().st_uid == 0 and (shared / "other-program.conf").stat().st_uid == 0
    own = shared / "gearman"  # a directory the user may write: the named file there works
    own.mkdir()
    shutil.chown(own, "nobody")
    server = gearmand("-u", "nobody", "--libsqlite3-db", str(own / "gearman.db"))
    with Raw(server.port) as client:
        assert submit(client, b"asuser", b"x", ptype=Packet.SUBMIT_JOB_BG)
    assert shared.stat().st_uid == 0
    server.stop()
    shutil.rmtree(shared, ignore_errors=True)


def test_sigterm_cuts_a_graceful_shutdown_short(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"long") as w:
        submit(client, b"long", b"x")
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        assert server.admin("shutdown graceful") == "OK\r\n"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0


@pytest.mark.parametrize("reactor", ["asyncio", "epoll"])
def test_every_reactor_serves_jobs_in_order(gearmand, reactor: str) -> None:
    server = gearmand("--reactor", reactor, "-q", "memory")
    with Raw(server.port) as client, worker(server.port, b"r") as w:
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.NO_JOB)
        w.send(Packet.PRE_SLEEP)
        handles = [submit(client, b"r", b"%d" % i) for i in range(3)]
        w.expect(Packet.NOOP)
        for expected in handles:
            w.send(Packet.GRAB_JOB)
            handle, _, data = w.expect(Packet.JOB_ASSIGN)
            assert handle == expected
            w.send(Packet.WORK_COMPLETE, handle, data[::-1])
            assert client.expect(Packet.WORK_COMPLETE) == [handle, data[::-1]]


def test_uvloop_reactor_serves_or_says_it_is_missing(gearmand, tmp_path: Path) -> None:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        result = subprocess.run(
            [OUR_GEARMAND, "-L", "127.0.0.1", "-p", str(free_port()), "--reactor", "uvloop", "-q", "memory"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert result.returncode == 1
        assert "uvloop is not installed (pip install uvloop)" in result.stderr
        return
    server = gearmand("--reactor", "uvloop", "-q", "memory")
    with Raw(server.port) as client, worker(server.port, b"u") as w:
        handle = submit(client, b"u", b"x")
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN)[0] == handle
        w.send(Packet.WORK_COMPLETE, handle, b"y")
        assert client.expect(Packet.WORK_COMPLETE) == [handle, b"y"]
