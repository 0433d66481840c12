"""The accept thread (gearman_gateway/_acceptor.c, issue 15): from the first burst of connects on, plain
listening ports accept on a C thread too, which hands sockets to the reactor; connections behave as before
(limits, admission, TLS ports untouched), a lack of descriptors is waited out, shutdown is clean, and without
the accelerator the reactor accepts alone."""

from __future__ import annotations

import os
import resource
import signal
import socket
import ssl
import struct
import time
from pathlib import Path

import pytest

from gearman_gateway import accel
from protocols.binary.packets import Packet
from tests.integration.conftest import RunningServer, ServerFactory, free_port, wait_listening
from tests.integration.rawclient import Raw
from tests.integration.test_accept_flood import echo_packet, flood
from tests.integration.test_http_frontend import wait_for

pytestmark = pytest.mark.skipif(accel.acceptor is None, reason="gearman_gateway._acceptor is not built")


def accept_threads(pid: int) -> int:
    """How many of the process's threads are accept threads (named by the C module)."""
    names = [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]
    return names.count("gg-accept")


def burst_until_threads(port: int, pid: int, expected: int) -> None:
    """Bursts of connects on ``port`` until the process has ``expected`` accept threads (the reactor starts a
    port's thread when it sees several connects queued at once). The connects send nothing and close."""
    for _ in range(10):
        burst = []
        for _ in range(100):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
            burst.append(sock)
        try:
            wait_for(lambda: accept_threads(pid) >= expected, timeout=2.0, what="an accept thread")
        except TimeoutError:
            continue
        finally:
            for sock in burst:
                sock.close()
        break
    assert accept_threads(pid) == expected


def settled_descriptors(pid: int) -> int:
    """The process's open descriptors once the burst's closed connections are gone (nothing to await: polled)."""
    last = -1
    while (now := len(os.listdir(f"/proc/{pid}/fd"))) != last:
        last = now
        time.sleep(0.1)
    return now


def echo(port: int, data: bytes = b"hi") -> bool:
    try:
        with Raw(port) as conn:
            return echo_on(conn, data)
    except (EOFError, OSError):
        return False


def both_served(port: int, held: list[Raw]) -> bool:
    """Whether two connections at once are served; when they are, they stay open in ``held``. (One echo is not
    enough: the server may not yet have seen the close of a burst's connection, or of the probe itself.)"""
    try:
        pair = [Raw(port), Raw(port)]
    except (EOFError, OSError):
        return False
    if all(echo_on(conn, b"%d" % index) for index, conn in enumerate(pair)):
        held.extend(pair)
        return True
    for conn in pair:
        conn.close()
    return False


def echo_on(conn: Raw, data: bytes) -> bool:
    try:
        return conn.call(Packet.ECHO_REQ, data) == (Packet.ECHO_RES, [data])
    except (EOFError, OSError):
        return False


def http_status(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /_gearman/status HTTP/1.0\r\n\r\n")
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_a_burst_starts_an_accept_thread_per_plain_port(gearmand: ServerFactory) -> None:
    http_port = free_port()
    server = gearmand("-r", "http", "--http-port", str(http_port), "-b", "1024")
    wait_listening(http_port, server.proc)
    assert accept_threads(server.pid) == 0  # connects one at a time: no thread (glibc's malloc stays lock-free)
    burst_until_threads(server.port, server.pid, 1)
    burst_until_threads(http_port, server.pid, 2)  # the binary port's and the HTTP port's
    assert echo(server.port)
    assert http_status(http_port).startswith(b"HTTP/1.1 200 OK\r\n")
    assert server.admin("status").endswith(".\n")  # the admin protocol on the same port
    assert "Traceback" not in server.log()


@pytest.mark.timeout(300)  # flood()'s worst case (see its docstring)
def test_a_burst_larger_than_the_backlog_is_served(gearmand: ServerFactory) -> None:
    server = gearmand("-b", "64")
    received = flood(server.port, 1500, None)
    for index, data in received.items():
        body = b"connection %d" % index
        assert data == b"\0RES" + struct.pack(">II", Packet.ECHO_RES, len(body)) + body, index
    assert server.admin("status").endswith(".\n")


def test_running_out_of_descriptors_is_waited_out(gearmand: ServerFactory) -> None:
    """EMFILE: the thread backs off and retries; once descriptors are free the waiting connects are served."""
    server = gearmand("-b", "1024")
    burst_until_threads(server.port, server.pid, 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = settled_descriptors(server.pid)
    resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (in_use + 5, hard))
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(20)]
    try:
        for index, conn in enumerate(held):
            conn.sendall(echo_packet(b"held %d" % index))
        wait_for(lambda: "the accept thread backs off and retries" in server.log(), what="the EMFILE warning")
        assert "Too many open files" in server.log()
        resource.prlimit(server.pid, resource.RLIMIT_NOFILE, (soft, hard))
        for index, conn in enumerate(held):  # every one answered once the limit is back
            body = b"held %d" % index
            expected = b"\0RES" + struct.pack(">II", Packet.ECHO_RES, len(body)) + body
            got = b""
            while len(got) < len(expected):
                chunk = conn.recv(len(expected) - len(got))
                assert chunk, (index, got)
                got += chunk
            assert got == expected
    finally:
        for conn in held:
            conn.close()
    assert echo(server.port)


def test_without_the_accelerator_the_reactor_accepts(gearmand: ServerFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEARMAN_GATEWAY_PURE_PYTHON", "1")
    http_port = free_port()
    server = gearmand("-r", "http", "--http-port", str(http_port), "-b", "1024")
    wait_listening(http_port, server.proc)
    received = flood(server.port, 200, None)
    assert accept_threads(server.pid) == 0
    assert all(data.startswith(b"\0RES") for data in received.values())
    assert http_status(http_port).startswith(b"HTTP/1.1 200 OK\r\n")


def test_limits_still_apply_to_connections_from_the_thread(gearmand: ServerFactory) -> None:
    server = gearmand("--max-connections-per-ip", "2", "--first-byte-timeout", "0.5", "-b", "1024")
    burst_until_threads(server.port, server.pid, 1)  # (mostly refused: two at a time from 127.0.0.1)
    held: list[Raw] = []
    wait_for(lambda: both_served(server.port, held), what="the burst's connections closed, both slots free")
    first, second = held
    with pytest.raises(EOFError):  # the third from 127.0.0.1 is refused
        Raw(server.port).call(Packet.ECHO_REQ, b"c")
    first.close()
    second.close()
    wait_for(lambda: echo(server.port), what="the slots freed")
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with pytest.raises(ConnectionResetError):  # aborted after the first-byte timeout
        silent.recv(10)
    silent.close()
    log = server.log()
    assert "too many connections open from that address (--max-connections-per-ip)" in log
    assert "it sent nothing in 0.5s (--first-byte-timeout)" in log


def test_shutdown_with_connects_in_flight_is_clean(gearmand: ServerFactory) -> None:
    server: RunningServer = gearmand("-b", "1024")
    burst_until_threads(server.port, server.pid, 1)
    pending = []
    for _ in range(300):  # connects the thread may still be accepting or have queued at the signal
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", server.port))
        pending.append(sock)
    assert server.stop(signal.SIGTERM, timeout=20) == 0
    for sock in pending:
        sock.close()
    log = server.log()
    assert "Traceback" not in log and "unhandled" not in log, log


def test_a_tls_port_accepts_in_the_reactor(gearmand: ServerFactory, tmp_path: Path) -> None:
    from tests.tlscerts import make_pki

    pki = make_pki(tmp_path / "pki")
    tls_port = free_port()
    server = gearmand(
        "--ssl-port", str(tls_port), "--ssl-certificate", pki.server_cert, "--ssl-key", pki.server_key,
        "--ssl-ca-file", pki.ca,
    )  # fmt: skip
    wait_listening(tls_port, server.proc)
    burst_until_threads(server.port, server.pid, 1)  # the plain binary port's; none for the TLS port
    context = ssl.create_default_context(cafile=pki.ca)
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as conn:
            conn.sendall(echo_packet(b"over tls"))
            reply = conn.recv(100)
    assert reply == b"\0RES" + struct.pack(">II", Packet.ECHO_RES, 8) + b"over tls"
    assert echo(server.port)
