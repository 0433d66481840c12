"""HTTP over many short connections (issue 15): what gearmand's users do, since gearmand closes every
connection after one response. 2,000 jobs, each on its own connection, from 8 threads at once, half with
``Connection: close`` over HTTP/1.1 (http.client) and half as HTTP/1.0 (ab's way, raw sockets); every
answer checked, and no connection left open on the server."""

from __future__ import annotations

import socket
import threading

from tests.integration import test_http_frontend as frontend
from tests.integration import test_http_load as load
from tests.integration.test_http_frontend import HttpServer, wait_for

web = frontend.web  # fixtures
workers = load.workers

THREADS = 8
JOBS = 2_000


def http_1_0(web: HttpServer, body: bytes) -> bytes:
    """One POST as HTTP/1.0 on its own socket: the whole answer, up to the server's close."""
    with socket.create_connection(("127.0.0.1", web.http_port), timeout=30) as sock:
        sock.sendall(b"POST /reverse HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_two_thousand_jobs_each_on_a_new_connection(web: HttpServer, workers) -> None:
    failures: list[str] = []

    def client(index: int) -> None:
        for i in range(JOBS // THREADS):
            body = b"thread %d job %d" % (index, i)
            try:
                if i % 2:
                    conn = web.connection(timeout=30)
                    conn.request("POST", "/reverse", body=body, headers={"Connection": "close"})
                    response = conn.getresponse()
                    status, result, closing = response.status, response.read(), response.getheader("Connection")
                    conn.close()
                    if (status, result, closing) != (200, body[::-1], "close"):
                        failures.append(f"{body!r}: {status} {result!r} Connection: {closing}")
                else:
                    answer = http_1_0(web, body)
                    head, _, result = answer.partition(b"\r\n\r\n")
                    if not head.startswith(b"HTTP/1.1 200 OK\r\n") or result != body[::-1]:
                        failures.append(f"{body!r}: {answer[:300]!r}")
            except OSError as error:
                failures.append(f"{body!r}: {error!r}")

    threads = [threading.Thread(target=client, args=(index,)) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures[:5]
    # every HTTP connection is gone from the server (only the four workers and this admin connection remain)
    wait_for(lambda: len(web.server.admin("workers").strip().splitlines()) <= len(workers) + 2, what="closed")
