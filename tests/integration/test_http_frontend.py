"""The http frontend (`gearmand -r http`) over real sockets, with independent clients: curl, Python's
http.client, and raw sockets parsed by h11's client side. Workers are Debian's C `gearman -w` (by
absolute path) or scripted raw-protocol workers (tests/integration/rawclient.py).

The fixtures here (`web`, `start_http`, `c_worker`) are imported by the other test_http_* modules.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import h11
import pytest

from protocols.binary.packets import Packet
from tests.integration.conftest import RunningServer, ServerFactory, free_port, wait_listening
from tests.integration.rawclient import Raw

GEARMAN = "/usr/bin/gearman"  # absolute: our own `gearman` console script would shadow it on PATH
CURL = "/usr/bin/curl"

needs_c_tools = pytest.mark.skipif(not os.access(GEARMAN, os.X_OK), reason="Debian's gearman-tools not installed")
needs_curl = pytest.mark.skipif(not os.access(CURL, os.X_OK), reason="curl is not installed")


@dataclass
class HttpServer:
    server: RunningServer
    http_port: int

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on its own connection: (status, headers, body)."""
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, path: str) -> tuple[int, dict]:
        status, _, body = self.request("GET", path)
        return status, json.loads(body)


def start_http(gearmand: ServerFactory, *extra: str) -> HttpServer:
    http_port = free_port()
    server = gearmand("-r", "http", "--http-port", str(http_port), *extra)
    wait_listening(http_port, server.proc)
    return HttpServer(server, http_port)


@pytest.fixture
def web(gearmand: ServerFactory) -> HttpServer:
    """Our server with the http frontend on a free port."""
    return start_http(gearmand)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


def function_status(server: RunningServer, name: str) -> tuple[int, int, int] | None:
    """(total, running, workers) from admin `status`, or None if the function is not listed."""
    for line in server.admin("status").splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[0] == name:
            return int(fields[1]), int(fields[2]), int(fields[3])
    return None


@pytest.fixture
def c_worker() -> Iterator[Callable[..., subprocess.Popen]]:
    """Factory: c_worker(server, function, *command) runs Debian's C worker until it has registered."""
    if not os.access(GEARMAN, os.X_OK):
        pytest.skip("Debian's gearman-tools are not installed")
    started: list[subprocess.Popen] = []

    def start(server: RunningServer, function: str, *command: str) -> subprocess.Popen:
        before = (function_status(server, function) or (0, 0, 0))[2]
        argv = [GEARMAN, "-h", "127.0.0.1", "-p", str(server.port), "-w", "-f", function]
        if command:
            argv += ["--", *command]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        wait_for(lambda: (function_status(server, function) or (0, 0, 0))[2] > before, what=f"worker for {function}")
        return proc

    yield start
    for proc in started:
        proc.terminate()
    for proc in started:
        proc.wait(5)


class RawWorker(Raw):
    """A scripted worker on the binary protocol."""

    def __init__(self, port: int, *functions: bytes) -> None:
        super().__init__(port)
        for name in functions:
            self.send(Packet.CAN_DO, name)

    def registered(self, server: RunningServer, function: str) -> RawWorker:
        wait_for(lambda: (function_status(server, function) or (0, 0, 0))[2] > 0, what="raw worker")
        return self

    def take(self, timeout: float = 10.0) -> tuple[bytes, bytes]:
        """Wait for a job: (handle, data)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ptype, args = self.call(Packet.GRAB_JOB)
            if ptype == Packet.JOB_ASSIGN:
                return args[0], args[2]
            assert ptype == Packet.NO_JOB, ptype
            time.sleep(0.02)
        raise TimeoutError("no job came")


class InThread:
    """A blocking call (an HTTP request that waits for its job) run in a thread; ``result`` waits for it."""

    def __init__(self, call: Callable, *args: object) -> None:
        self._result: list = []
        self._thread = threading.Thread(target=lambda: self._result.append(call(*args)), daemon=True)
        self._thread.start()

    def result(self, timeout: float = 10.0):  # noqa: ANN201
        self._thread.join(timeout)
        assert self._result, "the call did not finish"
        return self._result[0]


def curl(*args: str, timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """Run curl; (status, headers with lower-case names, body). The last response counts (after 100)."""
    if not os.access(CURL, os.X_OK):
        pytest.skip("curl is not installed")
    result = subprocess.run([CURL, "-s", "-S", "-i", *args], capture_output=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    while True:
        head, _, body = out.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        if status != 100:
            break
        out = body
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


# -- gearmand compatibility


@needs_c_tools
def test_curl_post_reverse(web: HttpServer, c_worker) -> None:
    c_worker(web.server, "reverse", "rev")
    status, headers, body = curl("--data-binary", "hello world", web.url("/reverse"))
    assert status == 200
    assert body == b"dlrow olleh"
    assert headers["x-gearman-command"] == "WORK_COMPLETE"
    assert headers["x-gearman-job-handle"].startswith("H:")
    assert headers["content-length"] == "11"
    assert headers["server"].startswith("Gearman/1.1.20")


def test_background_answers_at_once_and_the_job_runs(web: HttpServer) -> None:
    status, headers, body = web.request("POST", "/bgjob", b"payload", {"X-Gearman-Background": "true"})
    assert (status, headers["X-Gearman-Command"], body) == (200, "JOB_CREATED", b"")
    handle = headers["X-Gearman-Job-Handle"]
    status, job = web.json(f"/_gearman/jobs/{handle}")
    assert status == 200 and job["known"] and not job["running"] and job["background"]
    with RawWorker(web.port, b"bgjob") as worker:
        got_handle, data = worker.take()
        assert (got_handle.decode(), data) == (handle, b"payload")
        assert web.json(f"/_gearman/jobs/{handle}")[1]["running"]
        worker.send(Packet.WORK_COMPLETE, got_handle, b"")
        wait_for(lambda: web.json(f"/_gearman/jobs/{handle}")[0] == 404, what="the job to finish")


def test_priority_header_orders_the_queue(web: HttpServer) -> None:
    for body, priority in [(b"low", "low"), (b"normal", "normal"), (b"high", "high"), (b"low2", "LOW")]:
        headers = {"X-Gearman-Background": "true", "X-Gearman-Priority": priority}
        assert web.request("POST", "/prio", body, headers)[0] == 200
    with RawWorker(web.port, b"prio") as worker:
        assert [worker.take()[1] for _ in range(4)] == [b"high", b"normal", b"low", b"low2"]


def test_unique_header_and_default_unique_coalesce(web: HttpServer) -> None:
    def handle(body: bytes, **headers: str) -> str:
        headers = {"X-Gearman-Background": "true", **headers}
        return web.request("POST", "/uniq", body, headers)[1]["X-Gearman-Job-Handle"]

    assert handle(b"a", **{"X-Gearman-Unique": "k1"}) == handle(b"b", **{"X-Gearman-Unique": "k1"})
    assert handle(b"a", **{"X-Gearman-Unique": "k2"}) != handle(b"a", **{"X-Gearman-Unique": "k3"})
    assert handle(b"same") == handle(b"same")  # default unique "-": identical bodies are one job
    assert handle(b"same") != handle(b"other")
    assert handle(b"x", **{"X-Gearman-Unique": ""}) != handle(b"x", **{"X-Gearman-Unique": ""})  # empty: never
    assert function_status(web.server, "uniq") == (7, 0, 0)


@needs_c_tools
def test_concurrent_identical_requests_share_one_job(web: HttpServer, c_worker) -> None:
    calls = [InThread(web.request, "POST", "/shared", b"abc") for _ in range(3)]
    wait_for(lambda: function_status(web.server, "shared") == (1, 0, 0), what="one queued job")
    c_worker(web.server, "shared", "rev")
    results = [call.result() for call in calls]
    assert [(status, body) for status, _, body in results] == [(200, b"cba")] * 3
    assert len({headers["X-Gearman-Job-Handle"] for _, headers, _ in results}) == 1


@pytest.mark.parametrize("packet", [Packet.WORK_FAIL, Packet.WORK_EXCEPTION])
def test_a_failing_worker_gives_200_work_fail(web: HttpServer, packet: Packet) -> None:
    with RawWorker(web.port, b"failing") as worker:
        worker.registered(web.server, "failing")
        call = InThread(web.request, "POST", "/failing", b"x")
        handle, _ = worker.take()
        worker.send(packet, handle, *([b"it broke"] if packet == Packet.WORK_EXCEPTION else []))
        status, headers, body = call.result()
    assert (status, headers["X-Gearman-Command"], body) == (200, "WORK_FAIL", b"")
    assert headers["X-Gearman-Job-Handle"] == handle.decode()  # whole (gearmand 1.1.20 cuts a character)


def test_work_data_and_status_do_not_break_the_response(web: HttpServer) -> None:
    """gearmand 1.1.20 corrupts the reply on WORK_DATA and ends it on WORK_STATUS (reference §4.3)."""
    with RawWorker(web.port, b"chatty") as worker:
        worker.registered(web.server, "chatty")
        call = InThread(web.request, "POST", "/chatty", b"x")
        handle, _ = worker.take()
        worker.send(Packet.WORK_STATUS, handle, b"1", b"3")
        worker.send(Packet.WORK_DATA, handle, b"part1 ")
        worker.send(Packet.WORK_WARNING, handle, b"hmm")
        worker.send(Packet.WORK_DATA, handle, b"part2 ")
        worker.send(Packet.WORK_COMPLETE, handle, b"end")
        status, headers, body = call.result()
    assert (status, headers["X-Gearman-Command"], body) == (200, "WORK_COMPLETE", b"part1 part2 end")


def test_get_and_head_submit_empty_workloads(web: HttpServer) -> None:
    with RawWorker(web.port, b"noargs") as worker:
        worker.registered(web.server, "noargs")
        for method in ("GET", "HEAD"):
            call = InThread(web.request, method, "/noargs")
            handle, data = worker.take()
            assert data == b""
            worker.send(Packet.WORK_COMPLETE, handle, b"12345")
            status, headers, body = call.result()
            assert (status, headers["Content-Length"]) == (200, "5")
            assert body == (b"12345" if method == "GET" else b"")


@needs_c_tools
def test_pipelined_keepalive_requests_are_answered_in_order(web: HttpServer, c_worker) -> None:
    c_worker(web.server, "reverse", "rev")
    bodies = [f"request number {i}".encode() for i in range(8)]
    requests = b"".join(
        b"POST /reverse HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body) for body in bodies
    )
    with socket.create_connection(("127.0.0.1", web.http_port), timeout=10) as sock:
        sock.sendall(requests)  # all at once, before any answer
        answers = read_responses(sock, len(bodies))
    assert [(status, body) for status, _, body in answers] == [(200, body[::-1]) for body in bodies]
    handles = [int(headers[b"x-gearman-job-handle"].rsplit(b":", 1)[1]) for _, headers, _ in answers]
    assert handles == sorted(handles)


def read_responses(sock: socket.socket, count: int, method: bytes = b"POST") -> list[tuple[int, dict, bytes]]:
    """``count`` responses from a socket, each parsed by a fresh h11 client (h11 clients do not pipeline)."""
    answers = []
    pending = b""
    for _ in range(count):
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method=method, target="/", headers=[("Host", "t"), ("Content-Length", "0")]))
        client.send(h11.EndOfMessage())
        if pending:  # (b"" would tell h11 the connection closed)
            client.receive_data(pending)
        response, body = None, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(sock.recv(65536))
                continue
            if type(event) is h11.Response:
                response = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                break
        assert response is not None
        answers.append((response.status_code, dict(response.headers), body))
        pending = client.trailing_data[0]
    return answers


@needs_c_tools
def test_python_client_reuses_one_connection(web: HttpServer, c_worker) -> None:
    c_worker(web.server, "reverse", "rev")
    conn = web.connection()
    try:
        first_socket = None
        for i in range(20):
            conn.request("POST", "/reverse", body=b"abc%d" % i)
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, (b"abc%d" % i)[::-1])
            first_socket = first_socket or conn.sock
            assert conn.sock is first_socket  # the same connection every time
    finally:
        conn.close()


def test_http_connections_are_listed_by_admin_workers(web: HttpServer) -> None:
    conn = web.connection()
    try:
        conn.request("GET", "/_gearman/status")
        conn.getresponse().read()
        workers = web.server.admin("workers")  # the admin connection itself is listed too
        assert sum(1 for line in workers.splitlines() if line.endswith(" 127.0.0.1 - :")) >= 2, workers
    finally:
        conn.close()


# -- limits and bad requests


def test_oversize_body_is_413_and_the_server_goes_on(gearmand: ServerFactory) -> None:
    server = start_http(gearmand, "--http-max-body-size", "1000")
    status, headers, body = curl("--data-binary", "x" * 2000, server.url("/big"))
    assert status == 413
    assert b"1000" in body
    chunked = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "y" * 2000, server.url("/big"))
    assert chunked[0] == 413
    background = {"X-Gearman-Background": "true"}
    assert server.request("POST", "/big", b"x" * 1000, background)[0] == 200  # at the limit: fine
    assert function_status(server.server, "big") == (1, 0, 0)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: nope\r\n\r\n", 400),
        (b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400),
        (b"GET /f HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET /f HTTP/1.1\r\nHost: t\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
        (b"DELETE /f HTTP/1.1\r\nHost: t\r\n\r\n", 405),  # gearmand closes without answering
        (b"TRACE /f HTTP/1.1\r\nHost: t\r\n\r\n", 405),  # gearmand hangs
        (b"GET /f HTTP/2.0\r\nHost: t\r\n\r\n", 505),  # gearmand closes without answering
        (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 404),  # no function name, as gearmand
    ],
)
def test_malformed_and_unsupported_requests_are_answered(web: HttpServer, request_bytes: bytes, status: int) -> None:
    with socket.create_connection(("127.0.0.1", web.http_port), timeout=10) as sock:
        sock.sendall(request_bytes)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 %d " % status), data[:100]
    assert web.request("GET", "/_gearman/status")[0] == 200  # the server is fine
    assert function_status(web.server, "f") is None  # and no job was made


def test_unserved_function_times_out(gearmand: ServerFactory) -> None:
    server = start_http(gearmand, "--http-request-timeout", "0.5")
    started = time.monotonic()
    status, headers, _ = server.request("POST", "/nobody", b"x")
    assert status == 504
    assert 0.4 < time.monotonic() - started < 5
    assert headers["X-Gearman-Job-Handle"].startswith("H:")
    assert function_status(server.server, "nobody") == (0, 0, 0)  # the job was dropped


def test_client_disconnect_drops_its_queued_job(web: HttpServer) -> None:
    with socket.create_connection(("127.0.0.1", web.http_port), timeout=10) as sock:
        sock.sendall(b"POST /gone HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx")
        wait_for(lambda: function_status(web.server, "gone") == (1, 0, 0), what="the queued job")
    wait_for(lambda: function_status(web.server, "gone") == (0, 0, 0), what="the job to be dropped")


@needs_c_tools
def test_expect_100_continue_and_chunked_uploads(web: HttpServer, c_worker) -> None:
    c_worker(web.server, "reverse", "rev")
    body = "".join(chr(97 + i % 26) for i in range(4000))
    started = time.monotonic()
    status, _, got = curl("-H", "Expect: 100-continue", "--data-binary", body, web.url("/reverse"))
    assert (status, got) == (200, body[::-1].encode())
    assert time.monotonic() - started < 0.9  # curl waits 1 s for a 100 Continue that never comes
    status, _, got = curl("-H", "Transfer-Encoding: chunked", "--data-binary", body, web.url("/reverse"))
    assert (status, got) == (200, body[::-1].encode())


# -- streaming


def test_raw_stream_delivers_work_data_as_it_happens(web: HttpServer) -> None:
    with RawWorker(web.port, b"stream") as worker, socket.create_connection(("127.0.0.1", web.http_port)) as sock:
        worker.registered(web.server, "stream")
        sock.settimeout(10)
        sock.sendall(b"POST /stream HTTP/1.1\r\nHost: t\r\nX-Gearman-Stream: true\r\nContent-Length: 1\r\n\r\nx")
        handle, _ = worker.take()
        client = h11.Connection(h11.CLIENT)
        client.send(h11.Request(method="POST", target="/stream", headers=[("Host", "t"), ("Content-Length", "1")]))
        client.send(h11.Data(data=b"x"))
        client.send(h11.EndOfMessage())

        def next_event():
            while True:
                event = client.next_event()
                if event is not h11.NEED_DATA:
                    return event
                client.receive_data(sock.recv(65536))

        worker.send(Packet.WORK_DATA, handle, b"first ")
        response = next_event()
        assert type(response) is h11.Response and response.status_code == 200
        assert dict(response.headers)[b"x-gearman-job-handle"] == handle
        assert next_event().data == b"first "  # before the job is done
        worker.send(Packet.WORK_STATUS, handle, b"1", b"2")
        worker.send(Packet.WORK_DATA, handle, b"second ")
        assert next_event().data == b"second "
        worker.send(Packet.WORK_COMPLETE, handle, b"last")
        assert next_event().data == b"last"
        end = next_event()
        assert type(end) is h11.EndOfMessage
        assert list(end.headers) == [(b"x-gearman-command", b"WORK_COMPLETE")]


def test_event_stream_with_curl(web: HttpServer) -> None:
    with RawWorker(web.port, b"progress") as worker:
        worker.registered(web.server, "progress")
        call = InThread(curl, "-N", "-H", "Accept: text/event-stream", "--data-binary", "go", web.url("/progress"))
        handle, data = worker.take()
        assert data == b"go"
        for step in (1, 2):
            worker.send(Packet.WORK_STATUS, handle, b"%d" % step, b"2")
        worker.send(Packet.WORK_DATA, handle, b"line\n")
        worker.send(Packet.WORK_COMPLETE, handle, b"done")
        status, headers, body = call.result()
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = [block.split("\n") for block in body.decode().strip().split("\n\n")]
    assert [(lines[0], json.loads(lines[1][6:])) for lines in events] == [
        ("event: status", {"numerator": 1, "denominator": 2}),
        ("event: status", {"numerator": 2, "denominator": 2}),
        ("event: data", {"text": "line\n"}),
        ("event: complete", {"text": "done"}),
    ]


# -- the same answers as gearmand 1.1.20


def _compare_run(server: HttpServer) -> list[tuple]:
    """The observable parts of gearmand's documented cases: status, X-Gearman-Command, body."""
    seen = []
    with RawWorker(server.port, b"cmp") as worker:
        worker.registered(server.server, "cmp")
        for outcome in (Packet.WORK_COMPLETE, Packet.WORK_FAIL):
            call = InThread(server.request, "POST", "/cmp", b"in")
            handle, data = worker.take()
            worker.send(outcome, handle, *([data[::-1]] if outcome == Packet.WORK_COMPLETE else []))
            status, headers, body = call.result()
            seen.append((status, headers.get("X-Gearman-Command"), body, headers["X-Gearman-Job-Handle"][:2]))
    status, headers, body = server.request("POST", "/cmp", b"bg", {"X-Gearman-Background": "true"})
    seen.append((status, headers.get("X-Gearman-Command"), body, headers["X-Gearman-Job-Handle"][:2]))
    status, headers, body = server.request("POST", "/", b"")
    seen.append((status, headers.get("X-Gearman-Command"), body, None))
    return seen


def test_answers_match_real_gearmand(gearmand: ServerFactory, real_gearmand: ServerFactory) -> None:
    ours = _compare_run(start_http(gearmand))
    theirs = _compare_run(start_http(real_gearmand))
    assert (
        ours
        == theirs
        == [
            (200, "WORK_COMPLETE", b"ni", "H:"),
            (200, "WORK_FAIL", b"", "H:"),
            (200, "JOB_CREATED", b"", "H:"),
            (404, None, b"", None),
        ]
    )
