"""Every limit of docs/security.md#limits hit against the real `gearmand`: the client sees the documented
refusal, the log says so, the Prometheus counter counts it, and the server goes on serving others."""

from __future__ import annotations

import socket
import time

import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import RunningServer, ServerFactory, free_port, wait_listening
from tests.integration.rawclient import Raw, submit
from tests.integration.test_http_frontend import HttpServer, wait_for


def metric(web: HttpServer, limit: str) -> float:
    body = web.request("GET", "/_gearman/metrics")[2].decode()
    line = next(line for line in body.splitlines() if line.startswith(f'gearman_limit_hits_total{{limit="{limit}"}}'))
    return float(line.split()[-1])


def start(gearmand: ServerFactory, *extra: str) -> tuple[RunningServer, HttpServer, int]:
    """Our server with the http and memcached frontends and a memory queue."""
    http_port, mc_port = free_port(), free_port()
    server = gearmand(
        "-q", "memory", "-r", "http", "--http-port", str(http_port), "-r", "memcached",
        "--memcached-port", str(mc_port), *extra,
    )  # fmt: skip
    wait_listening(http_port, server.proc)
    wait_listening(mc_port, server.proc)
    return server, HttpServer(server, http_port), mc_port


def memcached_set(port: int, key: str, value: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key.encode(), len(value), value))
        return conn.recv(1000)


@pytest.mark.parametrize(
    ("flags", "limit", "payload"),
    [
        (("--max-queued-jobs", "3"), "max_queued_jobs", b"x"),
        (("--max-queued-bytes", "3000"), "max_queued_bytes", b"x" * 1000),
    ],
)
def test_queued_jobs_and_bytes_bound_every_frontend(
    gearmand: ServerFactory, flags: tuple[str, str], limit: str, payload: bytes
) -> None:
    server, web, mc_port = start(gearmand, *flags)
    with Raw(server.port) as client:
        handles = [submit(client, f"f{n}".encode(), payload, ptype=Packet.SUBMIT_JOB_BG) for n in range(3)]
        client.send(Packet.SUBMIT_JOB_BG, b"f9", b"", payload)
        code, text = client.expect(Packet.ERROR)
        assert code == b"QUEUE_ERROR" and text.startswith(b"Server is full")
    status, _, body = web.request("POST", "/f9", payload, {"X-Gearman-Background": "true"})
    assert status == 503 and body.startswith(b"QUEUE_ERROR Server is full")
    assert memcached_set(mc_port, "f9", payload).startswith(b"SERVER_ERROR Server is full")
    assert metric(web, limit) == 3
    assert "refusing a job for f9: Server is full" in server.log()
    assert server.log().count("refusing a job") == 1  # the next two within the interval are not logged
    # nothing queued was dropped; a worker takes one, and a new submit fits again
    for n in range(3):
        assert server.admin("status").count(f"f{n}\t1\t0\t0") == 1
    with Raw(server.port) as worker:
        worker.send(Packet.CAN_DO, b"f0")
        worker.send(Packet.GRAB_JOB)
        assert worker.expect(Packet.JOB_ASSIGN)[0] == handles[0]
        worker.send(Packet.WORK_COMPLETE, handles[0], b"")
        wait_for(lambda: "f0\t0\t0\t1" in server.admin("status"), what="f0 done")
    with Raw(server.port) as client:
        submit(client, b"f9", payload, ptype=Packet.SUBMIT_JOB_BG)


def test_max_connections_per_ip(gearmand: ServerFactory) -> None:
    server, web, _ = start(gearmand, "--max-connections-per-ip", "2")
    first = kept_connection(server.port)  # (earlier connections may take a moment to be seen closed)
    second = kept_connection(server.port)
    with pytest.raises(EOFError):  # reset at once (maybe before connect() has even returned)
        Raw(server.port).call(Packet.ECHO_REQ, b"hi")
    assert first.call(Packet.ECHO_REQ, b"still") == (Packet.ECHO_RES, [b"still"])
    first.close()
    wait_for(lambda: _echo(server.port), what="a slot freed by a closed connection")
    second.close()
    assert metric(web, "max_connections_per_ip") >= 1
    assert "too many connections open from that address (--max-connections-per-ip)" in server.log()


def kept_connection(port: int) -> Raw:
    """A connection the server admitted (tried again while it refuses)."""
    deadline = time.monotonic() + 10
    while True:
        conn = None
        try:
            conn = Raw(port)
            conn.call(Packet.ECHO_REQ, b"in")
            return conn
        except EOFError:  # refused: reset, maybe before connect() returned
            if conn is not None:
                conn.close()
            if time.monotonic() > deadline:
                raise


def _echo(port: int) -> bool:
    try:
        with Raw(port) as conn:
            return conn.call(Packet.ECHO_REQ, b"x") == (Packet.ECHO_RES, [b"x"])
    except (EOFError, OSError):
        return False


def test_accept_rate_per_ip(gearmand: ServerFactory) -> None:
    server, web, _ = start(gearmand, "--accept-rate-per-ip", "2", "--accept-burst-per-ip", "5")
    time.sleep(2.5)  # the start-up probes took tokens: let the bucket fill (a rate is about time)
    begun = time.monotonic()
    results = [_echo(server.port) for _ in range(10)]
    refilled = int(2 * (time.monotonic() - begun)) + 1  # tokens that came back meanwhile (a slow machine)
    assert results[:5] == [True] * 5 and results.count(True) <= 5 + refilled  # the burst, then 2 a second
    refused = results.count(False)
    assert refused >= 1 and "opens connections too fast (--accept-rate-per-ip)" in server.log()
    wait_for(lambda: _echo(server.port), what="the bucket to refill")
    time.sleep(1.0)  # a token for the metrics' own HTTP connection
    assert metric(web, "accept_rate_per_ip") >= refused


def test_first_byte_timeout_closes_silent_connections_only(gearmand: ServerFactory) -> None:
    server, web, _ = start(gearmand, "--first-byte-timeout", "0.5")
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    spoke = Raw(server.port)
    assert spoke.call(Packet.ECHO_REQ, b"hi") == (Packet.ECHO_RES, [b"hi"])
    begun = time.monotonic()
    with pytest.raises(ConnectionResetError):  # aborted by the server
        silent.recv(10)
    assert 0.4 < time.monotonic() - begun < 5
    time.sleep(0.6)
    assert spoke.call(Packet.ECHO_REQ, b"later") == (Packet.ECHO_RES, [b"later"])  # a peer that spoke stays
    spoke.close()
    assert "it sent nothing in 0.5s (--first-byte-timeout)" in server.log()
    assert metric(web, "first_byte_timeout") >= 1
