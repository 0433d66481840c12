"""Connection floods (issue 15): connects that all arrive at once are all accepted and served, on the
binary and the HTTP port, and the listen backlog is the one asked for (``-b``, default 32 as gearmand)."""

from __future__ import annotations

import selectors
import socket
import struct
import subprocess
import time

import pytest

from tests.integration.conftest import RunningServer, ServerFactory, free_port, wait_listening

ECHO_REQ, ECHO_RES = 16, 17
FLOOD = 400


def echo_packet(data: bytes) -> bytes:
    return b"\0REQ" + struct.pack(">II", ECHO_REQ, len(data)) + data


def flood(port: int, count: int, request: bytes | None, timeout: float = 150.0) -> dict[int, bytes]:
    """Open ``count`` connections without waiting between them (non-blocking connects: the kernel queues
    what the server has not accepted yet, and retries what the accept queue dropped), send ``request`` (or,
    when None, the connection's own ECHO_REQ) on each, and read until the server closes the connection or
    a whole echo came back. Returns what each connection received.

    The timeout is long because the kernel, not the server, decides the worst case: a connect whose final
    ACK met a full accept queue is only retried as the client retransmits its request (0.2 s, then doubling:
    about 25 s, 51 s and 102 s after the first try), so on a machine starved of CPU for the first seconds
    one of 400 may wait 102 s for a queue that has long been empty (gearmand too). It costs nothing when
    every connection is served sooner."""
    selector = selectors.DefaultSelector()
    received: dict[int, bytearray] = {}
    pending: dict[socket.socket, bytes] = {}
    for index in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        payload = request if request is not None else echo_packet(b"connection %d" % index)
        pending[sock] = payload
        received[index] = bytearray()
        selector.register(sock, selectors.EVENT_WRITE, index)
    deadline = time.monotonic() + timeout
    open_count = count
    while open_count and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1.0):
            sock, index = key.fileobj, key.data
            assert isinstance(sock, socket.socket)
            if events & selectors.EVENT_WRITE:
                sock.sendall(pending.pop(sock))
                selector.modify(sock, selectors.EVENT_READ, index)
                continue
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            received[index] += data
            done = not data
            if request is None and len(received[index]) >= 12:
                done = done or len(received[index]) >= 12 + struct.unpack(">I", received[index][8:12])[0]
            if done:
                selector.unregister(sock)
                sock.close()
                open_count -= 1
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    assert open_count == 0, f"{open_count} of {count} connections not served within {timeout:g} s"
    return {index: bytes(data) for index, data in received.items()}


def listen_backlog(port: int) -> int:
    """The listening socket's backlog as the kernel has it (``ss``: Send-Q of a listening socket)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])


@pytest.mark.timeout(300)  # flood()'s worst case: see its docstring
@pytest.mark.parametrize("backlog", [None, "1024"])
def test_a_flood_of_connects_is_all_accepted_and_served(gearmand: ServerFactory, backlog: str | None) -> None:
    server: RunningServer = gearmand(*(["-b", backlog] if backlog else []))
    received = flood(server.port, FLOOD, None)
    for index, data in received.items():
        body = b"connection %d" % index
        assert data == b"\0RES" + struct.pack(">II", ECHO_RES, len(body)) + body, index
    log = server.log()
    assert "Traceback" not in log and "unhandled" not in log, log
    assert server.admin("status").endswith(".\n")  # and it still answers


def test_a_flood_of_http_requests_on_new_connections_is_all_answered(gearmand: ServerFactory) -> None:
    http_port = free_port()
    server = gearmand("-r", "http", "--http-port", str(http_port), "-b", "1024")
    wait_listening(http_port, server.proc)
    request = b"GET /_gearman/status HTTP/1.0\r\n\r\n"
    received = flood(http_port, FLOOD, request)
    for data in received.values():
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200]
        assert b"\r\nConnection: close\r\n" in data


@pytest.mark.parametrize(("args", "expected"), [((), 32), (("-b", "1024"), 1024), (("-b", "7"), 7)])
def test_the_listen_backlog_is_the_one_asked_for(gearmand: ServerFactory, args: tuple[str, ...], expected: int) -> None:
    http_port = free_port()
    server = gearmand(*args, "-r", "http", "--http-port", str(http_port))
    wait_listening(http_port, server.proc)
    assert listen_backlog(server.port) == expected
    assert listen_backlog(http_port) == expected


def test_gearmand_has_the_same_default_backlog(real_gearmand: ServerFactory) -> None:
    """The reference for the default above: Debian's gearmand listens with 32."""
    server = real_gearmand()
    assert listen_backlog(server.port) == 32
