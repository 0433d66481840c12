"""HttpSession without a reactor or sockets: bytes in, bytes out, a real Scheduler, a fake clock.

Responses are parsed with a client-side h11 connection, independent of the server's code path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h11
import pytest
from twisted.internet.task import Clock

from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.config import make_settings
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import Job, QueueFull, Scheduler, Worker
from protocols import FrontendContext
from protocols.http.api import HttpApi
from protocols.http.session import MAX_PIPELINED, HttpSession


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.aborted = False
        self.paused = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def write_last(self, data: bytes) -> None:
        self.write(data)
        self.close()

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def take(self) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data


class Waker:
    def __init__(self) -> None:
        self.woken = 0

    def wake(self) -> None:
        self.woken += 1


class Harness:
    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        self.settings = make_settings(settings)
        self.scheduler = Scheduler(self.clock, handle_prefix=b"H:t")
        connections = ConnectionRegistry()
        admin = Admin(self.scheduler, connections, AdminControls(shutdown=lambda graceful: None, verbose_level=str))
        options = self.settings.options("http")
        self.context = FrontendContext(self.settings, self.scheduler, admin, connections, self.clock, options)
        self.api = HttpApi(self.context)

    def session(self) -> tuple[HttpSession, FakeTransport, Client]:
        transport = FakeTransport()
        return HttpSession(self.context, self.api, transport), transport, Client()

    def worker(self, *functions: bytes) -> Worker:
        worker = self.scheduler.add_worker(Waker())
        for name in functions:
            self.scheduler.can_do(worker, name)
        return worker

    def grab(self, worker: Worker) -> Job:
        job = self.scheduler.grab(worker)
        assert job is not None
        return job

    def post(self, target: str, body: bytes) -> tuple[HttpSession, FakeTransport, Client]:
        """A new session that has sent one POST."""
        session, transport, client = self.session()
        session.receive_data(client.request("POST", target, body))
        return session, transport, client

    def running(self, target: str = "/f", body: bytes = b"in", headers: list | None = None) -> Running:
        """A request sent on a new session, and its job taken by a new worker."""
        session, transport, client = self.session()
        worker = self.worker(target.lstrip("/").encode())
        session.receive_data(client.request("POST", target, body, headers))
        return Running(self, session, transport, client, worker, self.grab(worker))


@dataclass
class Running:
    h: Harness
    session: HttpSession
    transport: FakeTransport
    client: Client
    worker: Worker
    job: Job

    def work(self, result: str, *args: Any) -> None:
        """The worker sends WORK_<RESULT> for the job: work("data", b"x"), work("status", 1, 2), ..."""
        getattr(self.h.scheduler, "work_" + result)(self.worker, self.job.handle, *args)

    def response(self) -> tuple[h11.Response, bytes, dict]:
        return self.client.one(self.transport.take())


class Client:
    """The client side of the conversation, parsed by h11."""

    def __init__(self) -> None:
        self.conn = h11.Connection(h11.CLIENT)

    def request(self, method: str, target: str, body: bytes = b"", headers: list | None = None) -> bytes:
        head = [("Host", "test"), *(headers or [])]
        if method in ("POST", "PUT") and not any(k.lower() == "transfer-encoding" for k, _ in head):
            head.append(("Content-Length", str(len(body))))
        data = self.conn.send(h11.Request(method=method, target=target, headers=head))
        if body:
            data += self.conn.send(h11.Data(data=body))
        data += self.conn.send(h11.EndOfMessage())
        return data

    def responses(self, data: bytes) -> list[tuple[h11.Response, bytes, dict]]:
        """Every complete response in ``data`` (status, body, trailers)."""
        self.conn.receive_data(data)
        result = []
        while True:
            event = self.conn.next_event()
            if event in (h11.NEED_DATA, h11.PAUSED) or type(event) is h11.ConnectionClosed:
                return result
            if type(event) is h11.InformationalResponse:
                continue
            assert type(event) is h11.Response, event
            response, body = event, b""
            while True:
                event = self.conn.next_event()
                if type(event) is h11.Data:
                    body += event.data
                elif type(event) is h11.EndOfMessage:
                    trailers = {k.decode(): v.decode() for k, v in event.headers}
                    break
                else:
                    raise AssertionError(event)
            result.append((response, body, trailers))
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
                self.conn.start_next_cycle()

    def one(self, data: bytes) -> tuple[h11.Response, bytes, dict]:
        got = self.responses(data)
        assert len(got) == 1, got
        return got[0]


def header(response: h11.Response, name: str) -> str | None:
    for key, value in response.headers:
        if key == name.lower().encode():
            return value.decode()
    return None


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- gearmand's job submission


def test_post_runs_a_job_and_answers_with_its_result(h: Harness) -> None:
    session, transport, client = h.session()
    worker = h.worker(b"reverse")
    session.receive_data(client.request("POST", "/reverse", b"hello"))
    assert transport.take() == b""  # waiting for the worker
    job = h.grab(worker)
    assert (job.function.name, job.data, job.unique) == (b"reverse", b"hello", b"-")
    h.scheduler.work_complete(worker, job.handle, b"olleh")
    response, body, _ = client.one(transport.take())
    assert response.status_code == 200
    assert [(k, v) for k, v in response.headers if k.startswith(b"x-gearman")] == [
        (b"x-gearman-job-handle", job.handle),
        (b"x-gearman-command", b"WORK_COMPLETE"),
    ]
    assert body == b"olleh"
    assert not transport.closed  # keep-alive


def test_background_answers_at_once_with_the_handle(h: Harness) -> None:
    session, transport, client = h.session()
    session.receive_data(client.request("POST", "/reverse", b"x", [("X-Gearman-Background", "true")]))
    response, body, _ = client.one(transport.take())
    assert response.status_code == 200
    assert header(response, "X-Gearman-Command") == "JOB_CREATED"
    job = h.scheduler.job(header(response, "X-Gearman-Job-Handle").encode())
    assert job is not None and job.background and body == b""


def test_work_data_chunks_come_before_the_completion_data(h: Harness) -> None:
    run = h.running()
    run.work("data", b"chunk1 ")
    run.work("status", 1, 2)  # gearmand 1.1.20 ended the response here
    run.work("warning", b"careful")
    run.work("data", b"chunk2 ")
    assert run.transport.take() == b""
    run.work("complete", b"end")
    response, body, _ = run.response()
    assert body == b"chunk1 chunk2 end"
    assert header(response, "Content-Length") == str(len(body))


def test_work_fail_is_200_with_the_whole_handle(h: Harness) -> None:
    run = h.running()
    run.work("fail")
    response, body, _ = run.response()
    assert response.status_code == 200
    assert header(response, "X-Gearman-Command") == "WORK_FAIL"
    assert header(response, "X-Gearman-Job-Handle") == run.job.handle.decode()
    assert body == b""


def test_work_exception_is_work_fail_without_the_exceptions_option(h: Harness) -> None:
    run = h.running()
    run.work("exception", b"boom")
    response, body, _ = run.response()
    assert (response.status_code, header(response, "X-Gearman-Command"), body) == (200, "WORK_FAIL", b"")


def test_work_exception_with_exceptions_on() -> None:
    run = Harness(exceptions=True).running()
    run.work("exception", b"boom")
    response, body, _ = run.response()
    assert (header(response, "X-Gearman-Command"), body) == ("WORK_EXCEPTION", b"boom")


def test_get_submits_an_empty_workload_and_head_sends_no_body(h: Harness) -> None:
    session, transport, client = h.session()
    worker = h.worker(b"f")
    session.receive_data(client.request("HEAD", "/f"))
    job = h.grab(worker)
    assert job.data == b""
    h.scheduler.work_complete(worker, job.handle, b"result")
    response, body, _ = client.one(transport.take())
    assert header(response, "Content-Length") == "6" and body == b""


def test_priority_and_unique_headers_reach_the_scheduler(h: Harness) -> None:
    first, t1, c1 = h.session()
    second, t2, c2 = h.session()
    first.receive_data(c1.request("POST", "/f", b"a", [("X-Gearman-Priority", "low"), ("X-Gearman-Unique", "u")]))
    second.receive_data(c2.request("POST", "/f", b"b", [("X-Gearman-Priority", "high"), ("X-Gearman-Unique", "u")]))
    jobs = list(h.scheduler.jobs_by_handle.values())
    assert len(jobs) == 1  # same unique: one job, both wait for it
    assert jobs[0].priority == 2 and jobs[0].data == b"a"
    worker = h.worker(b"f")
    job = h.grab(worker)
    h.scheduler.work_complete(worker, job.handle, b"r")
    assert c1.one(t1.take())[1] == b"r"
    assert c2.one(t2.take())[1] == b"r"


def test_identical_bodies_coalesce_by_default(h: Harness) -> None:
    sessions = [h.session() for _ in range(3)]
    for session, _, client in sessions:
        session.receive_data(client.request("POST", "/f", b"same"))
    session, _, client = h.session()
    session.receive_data(client.request("POST", "/f", b"other"))
    assert h.scheduler.functions[b"f"].total == 2


def test_queue_full_is_503(h: Harness) -> None:
    h.scheduler.set_maxqueue(b"f", (1, 1, 1))
    session, transport, client = h.session()
    session.receive_data(client.request("POST", "/f", b"1", [("X-Gearman-Background", "true")]))
    client.one(transport.take())
    session.receive_data(client.request("POST", "/f", b"2", [("X-Gearman-Background", "true")]))
    response, body, _ = client.one(transport.take())
    assert response.status_code == 503
    assert body.startswith(QueueFull.code.encode())


def test_unique_too_long_is_400(h: Harness) -> None:
    session, transport, client = h.session()
    session.receive_data(client.request("POST", "/f", b"1", [("X-Gearman-Unique", "u" * 65)]))
    assert client.one(transport.take())[0].status_code == 400


# -- keep-alive and pipelining


def test_pipelined_requests_are_answered_in_order(h: Harness) -> None:
    session, transport, client = h.session()
    worker = h.worker(b"f")
    data = b"".join(client_request(i) for i in range(3))
    session.receive_data(data)
    answers = []
    for _ in range(3):
        h.clock.advance(0)  # the next pipelined request is read on the next reactor turn
        job = h.grab(worker)
        h.scheduler.work_complete(worker, job.handle, job.data.upper())
        answers.append(transport.take())
    assert h.scheduler.grab(worker) is None
    assert [parse_one(answer)[1] for answer in answers] == [b"JOB0", b"JOB1", b"JOB2"]


def parse_one(data: bytes) -> tuple[h11.Response, bytes, dict]:
    """One response to a POST (h11 clients do not pipeline, so each gets its own client)."""
    client = Client()
    client.request("POST", "/f", b"x")
    return client.one(data)


def client_request(i: int) -> bytes:
    body = b"job%d" % i
    return b"POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_pipelined_bytes_beyond_the_limit_pause_reading(h: Harness) -> None:
    session, transport, client = h.session()
    session.receive_data(client_request(0))
    session.receive_data(client_request(1) * (MAX_PIPELINED // 40 + 10))
    assert transport.paused
    worker = h.worker(b"f")
    job = h.grab(worker)
    h.scheduler.work_complete(worker, job.handle, b"r")
    assert not transport.paused


def test_http10_closes_after_the_response(h: Harness) -> None:
    session, transport, _ = h.session()
    session.receive_data(b"POST /f HTTP/1.0\r\nContent-Length: 1\r\nX-Gearman-Background: true\r\n\r\nx")
    assert transport.closed
    assert transport.take().startswith(b"HTTP/1.1 200 OK\r\n")


def test_idle_keepalive_connections_are_closed() -> None:
    h = Harness(http_keepalive_timeout=5.0)
    session, transport, client = h.session()
    h.clock.advance(4)
    session.receive_data(b"GET /_gearman/status HTTP/1.1\r\n")
    h.clock.advance(4)  # the partial request reset the timer
    assert not transport.closed
    session.receive_data(b"Host: t\r\n\r\n")
    client.one(transport.take())
    h.clock.advance(5.1)
    assert transport.closed


def test_a_waiting_request_is_not_idle() -> None:
    h = Harness(http_keepalive_timeout=1.0, http_request_timeout=0)
    session, transport, client = h.post("/f", b"x")
    h.clock.advance(10)
    assert not transport.closed


# -- limits and bad requests


def test_content_length_over_the_limit_is_413_before_the_body() -> None:
    h = Harness(http_max_body_size=10)
    session, transport, _ = h.session()
    session.receive_data(b"POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
    out = transport.take()
    assert out.startswith(b"HTTP/1.1 413 ")  # and no 100 Continue first
    assert transport.closed
    assert not h.scheduler.functions


def test_chunked_body_over_the_limit_is_413() -> None:
    h = Harness(http_max_body_size=10)
    session, transport, _ = h.session()
    session.receive_data(b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n")
    assert transport.take() == b""
    session.receive_data(b"6\r\nghijkl\r\n0\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 413 ")
    assert transport.closed


def test_chunked_body_is_the_workload(h: Harness) -> None:
    session, _, client = h.session()
    head = [("Transfer-Encoding", "chunked")]
    session.receive_data(client.request("POST", "/f", b"chunked body", head))
    assert next(iter(h.scheduler.jobs_by_handle.values())).data == b"chunked body"


def test_expect_100_continue_is_answered(h: Harness) -> None:
    session, transport, client = h.session()
    session.receive_data(b"POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    assert transport.take() == b"HTTP/1.1 100 \r\n\r\n"
    session.receive_data(b"abc")
    assert next(iter(h.scheduler.jobs_by_handle.values())).data == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /f HTTP/1.1\r\n\r\n",  # no Host
        b"POST /f HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
        b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /f HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_the_connection_closes(h: Harness, data: bytes) -> None:
    session, transport, _ = h.session()
    session.receive_data(data)
    assert transport.take().startswith(b"HTTP/1.1 400 BAD_REQUEST\r\n")
    assert transport.closed


@pytest.mark.parametrize(
    "data",
    [
        b"GET /?access_token=SECRET HTTP/1.1 junk\r\nHost: t\r\n\r\n",
        b"GET /?access_token=SECRET\x7f HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /f HTTP/1.1\r\nHost: t\r\nAuthorization : Bearer SECRET\r\n\r\n",
        b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nSECRET\r\n",
        b"POST /f HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naSECRET\r\n",
    ],
)
def test_a_400_shows_neither_the_request_nor_a_repr(h: Harness, data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    session, transport, client = h.session()
    with caplog.at_level("DEBUG", logger="gearman_gateway"):
        session.receive_data(data)
    response, body, _ = client.one(transport.take())
    assert response.status_code == 400
    assert body.startswith((b"illegal ", b"malformed ")), body
    for shown in (body.decode(), caplog.text):
        assert "SECRET" not in shown and "b'" not in shown and "bytearray(" not in shown, shown
    assert not h.scheduler.functions


def test_an_endless_head_is_refused(h: Harness) -> None:
    session, transport, _ = h.session()
    session.receive_data(b"GET /f HTTP/1.1\r\nHost: t\r\n")
    for _ in range(40):
        if transport.closed:
            break
        session.receive_data(b"X-Padding: " + b"p" * 1000 + b"\r\n")
    assert transport.closed
    assert transport.take().startswith(b"HTTP/1.1 431 ")


def test_http2_request_line_is_505(h: Harness) -> None:
    session, transport, client = h.session()
    session.receive_data(b"GET /f HTTP/2.0\r\nHost: t\r\n\r\n")
    assert transport.take().startswith(b"HTTP/1.1 505 ")


# -- the timeout for jobs nobody takes


def test_unserved_job_times_out_with_504_and_is_dropped() -> None:
    h = Harness(http_request_timeout=2.0)
    session, transport, client = h.post("/nobody", b"x")
    h.clock.advance(1.9)
    assert transport.take() == b""
    h.clock.advance(0.2)
    response, _, _ = client.one(transport.take())
    assert response.status_code == 504
    assert header(response, "X-Gearman-Job-Handle") == "H:t:1"
    assert h.scheduler.functions[b"nobody"].total == 0
    assert not transport.closed  # the connection is still usable


def test_timeout_keeps_a_job_someone_else_waits_for() -> None:
    h = Harness(http_request_timeout=2.0)
    session, transport, client = h.post("/nobody", b"x")
    h.clock.advance(1)
    other, other_transport, other_client = h.session()
    other.receive_data(other_client.request("POST", "/nobody", b"x"))  # joins the same job
    h.clock.advance(1.1)
    assert client.one(transport.take())[0].status_code == 504
    assert h.scheduler.functions[b"nobody"].total == 1
    h.clock.advance(2)
    assert other_client.one(other_transport.take())[0].status_code == 504
    assert h.scheduler.functions[b"nobody"].total == 0


def test_a_running_job_is_waited_for_however_long() -> None:
    h = Harness(http_request_timeout=1.0)
    run = h.running()
    h.clock.pump([1.0] * 10)
    assert run.transport.take() == b""
    run.work("complete", b"done")
    assert run.response()[1] == b"done"


def test_a_requeued_job_gets_a_whole_period_again() -> None:
    h = Harness(http_request_timeout=1.0)
    session, transport, client = h.session()
    worker = h.worker(b"f")
    session.receive_data(client.request("POST", "/f", b"x"))
    h.clock.advance(0.5)
    h.grab(worker)  # started: waited for however long it runs
    h.clock.advance(0.9)
    h.scheduler.remove_worker(worker)  # requeued at 1.4: a whole period from now
    h.clock.advance(0.99)
    assert transport.take() == b""
    h.clock.advance(0.02)
    assert client.one(transport.take())[0].status_code == 504


def test_a_job_requeued_between_two_periods_is_not_cut_short() -> None:
    """A worker took the job and died within one period: the job waits a whole period from its requeue
    (the timer once checked the job's state every period and missed the run in between)."""
    h = Harness(http_request_timeout=1.0)
    session, transport, client = h.session()
    worker = h.worker(b"f")
    session.receive_data(client.request("POST", "/f", b"x"))
    h.clock.advance(0.5)
    h.grab(worker)
    h.clock.advance(0.1)
    h.scheduler.remove_worker(worker)  # requeued at 0.6
    h.clock.advance(0.5)  # 1.1: no 504 yet
    assert transport.take() == b""
    h.clock.advance(0.5)
    assert client.one(transport.take())[0].status_code == 504


def test_a_request_that_joins_a_running_job_waits_for_it() -> None:
    h = Harness(http_request_timeout=1.0)
    run = h.running()
    other, other_transport, other_client = h.session()
    other.receive_data(other_client.request("POST", "/f", b"in"))  # the same job, already running
    h.clock.pump([1.0] * 5)
    assert other_transport.take() == b""
    run.work("complete", b"done")
    assert other_client.one(other_transport.take())[1] == b"done"


def test_timeout_zero_waits_forever() -> None:
    h = Harness(http_request_timeout=0)
    session, transport, client = h.post("/nobody", b"x")
    h.clock.advance(10_000)
    assert transport.take() == b""


def test_disconnect_drops_the_queued_job(h: Harness) -> None:
    session, _, client = h.session()
    session.receive_data(client.request("POST", "/f", b"x"))
    assert h.scheduler.functions[b"f"].total == 1
    session.connection_lost()
    assert h.scheduler.functions[b"f"].total == 0


# -- streaming


def test_raw_stream_sends_data_as_it_comes(h: Harness) -> None:
    run = h.running(headers=[("X-Gearman-Stream", "true"), ("TE", "trailers")])
    run.work("status", 1, 3)
    head = run.transport.take()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding: chunked\r\n" in head
    run.work("data", b"part1,")
    assert run.transport.take() == b"6\r\npart1,\r\n"
    run.work("complete", b"end")
    response, body, trailers = run.client.one(head + b"6\r\npart1,\r\n" + run.transport.take())
    assert body == b"part1,end"
    assert trailers == {"x-gearman-command": "WORK_COMPLETE"}
    assert header(response, "X-Gearman-Job-Handle") == run.job.handle.decode()


def test_event_stream_shows_every_event(h: Harness) -> None:
    run = h.running(headers=[("Accept", "text/event-stream")])
    run.work("status", 1, 2)
    run.work("data", b"a\nb")
    run.work("warning", b"w")
    run.work("complete", b"\xff")
    response, body, _ = run.response()
    assert header(response, "Content-Type") == "text/event-stream"
    events = [chunk.split(b"\n") for chunk in body.strip().split(b"\n\n")]
    assert [(e[0], json.loads(e[1][6:])) for e in events] == [
        (b"event: status", {"numerator": 1, "denominator": 2}),
        (b"event: data", {"text": "a\nb"}),
        (b"event: warning", {"text": "w"}),
        (b"event: complete", {"base64": "/w=="}),
    ]


def test_stream_to_an_http10_client_is_close_delimited(h: Harness) -> None:
    session, transport, _ = h.session()
    worker = h.worker(b"f")
    session.receive_data(b"POST /f HTTP/1.0\r\nContent-Length: 1\r\nX-Gearman-Stream: true\r\n\r\nx")
    job = h.grab(worker)
    h.scheduler.work_data(worker, job.handle, b"a")
    h.scheduler.work_complete(worker, job.handle, b"b")
    out = transport.take()
    assert out.endswith(b"\r\n\r\nab") and b"chunked" not in out
    assert transport.closed


def test_stream_fail(h: Harness) -> None:
    run = h.running(headers=[("X-Gearman-Stream", "true")])
    run.work("fail")
    response, body, trailers = run.response()
    assert (response.status_code, body, trailers) == (200, b"", {"x-gearman-command": "WORK_FAIL"})


# -- the API under the prefix


def test_api_status_and_workers(h: Harness) -> None:
    session, transport, client = h.session()
    h.worker(b"reverse")
    session.receive_data(client.request("GET", "/_gearman/status"))
    response, body, _ = client.one(transport.take())
    assert header(response, "Content-Type") == "application/json"
    functions = json.loads(body)["functions"]
    assert [(f["name"], f["workers"]) for f in functions] == [("reverse", 1)]
    session.receive_data(client.request("GET", "/_gearman/workers"))
    assert json.loads(client.one(transport.take())[1]) == {"workers": []}  # no registered connections here


def test_api_job_status(h: Harness) -> None:
    session, transport, client = h.session()
    job = h.scheduler.submit(b"f", b"data", b"", 0, True)
    session.receive_data(client.request("GET", "/_gearman/jobs/" + job.handle.decode().replace(":", "%3A")))
    status = json.loads(client.one(transport.take())[1])
    assert status["known"] and not status["running"]
    assert (status["function"], status["priority"], status["background"]) == ("f", "high", True)
    session.receive_data(client.request("GET", "/_gearman/jobs/H:t:999"))
    response, body, _ = client.one(transport.take())
    assert response.status_code == 404 and json.loads(body) == {"handle": "H:t:999", "known": False}


def test_api_refuses_other_methods_and_unknown_paths(h: Harness) -> None:
    session, transport, client = h.post("/_gearman/status", b"x")
    assert client.one(transport.take())[0].status_code == 405
    session.receive_data(client.request("GET", "/_gearman/nothing"))
    assert client.one(transport.take())[0].status_code == 404
    assert not h.scheduler.functions  # no function was created for any of these


def test_bearer_token() -> None:
    h = Harness(http_token="s3cret")
    session, transport, client = h.session()
    for headers, target, status in [
        ([], "/_gearman/status", 401),
        ([("Authorization", "Bearer wrong")], "/_gearman/status", 401),
        ([("Authorization", "Bearer s3cret")], "/_gearman/status", 200),
        ([("Authorization", "bearer s3cret")], "/_gearman/metrics", 200),
        ([], "/_gearman/?access_token=s3cret", 200),
        ([], "/_gearman/?access_token=nope", 401),
    ]:
        session.receive_data(client.request("GET", target, headers=headers))
        response, _, _ = client.one(transport.take())
        assert response.status_code == status, (headers, target)
        if status == 401:
            assert header(response, "WWW-Authenticate") == 'Bearer realm="gearman"'


def test_token_links_reach_the_dashboard_never_a_job() -> None:
    h = Harness(http_token="s3cret")
    session, transport, client = h.session()
    for method in ("GET", "HEAD"):
        for target in ("/?access_token=s3cret", "/_gearman?access_token=s3cret"):
            session.receive_data(client.request(method, target))
            response, _, _ = client.one(transport.take())
            assert (response.status_code, header(response, "Location")) == (302, "/_gearman/?access_token=s3cret")
        for target, kind in [
            ("/_gearman/?access_token=s3cret", "text/html"),
            ("/_gearman/status?access_token=s3cret", "application/json"),
        ]:
            session.receive_data(client.request(method, target))
            response, _, _ = client.one(transport.take())
            assert response.status_code == 200 and header(response, "Content-Type").startswith(kind)
    assert not h.scheduler.functions


def test_a_query_string_is_not_part_of_the_function(h: Harness) -> None:
    worker = h.worker(b"f")
    session, transport, client = h.post("/f?access_token=s3cret", b"in")
    job = h.grab(worker)
    assert (job.function.name, job.data) == (b"f", b"in")
    h.scheduler.work_complete(worker, job.handle, b"out")
    assert client.one(transport.take())[1] == b"out"
    assert list(h.scheduler.functions) == [b"f"]


def test_dashboard_page(h: Harness) -> None:
    session, transport, client = h.session()
    session.receive_data(client.request("GET", "/"))
    response, _, _ = client.one(transport.take())
    assert (response.status_code, header(response, "Location")) == (302, "/_gearman/")
    session.receive_data(client.request("GET", "/_gearman/"))
    response, body, _ = client.one(transport.take())
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert b'<table id="functions">' in body and b"fetch(" in body


def test_responses_are_counted_for_metrics(h: Harness) -> None:
    session, transport, client = h.session()
    for target in ("/_gearman/status", "/_gearman/nothing", "/_gearman/status"):
        session.receive_data(client.request("GET", target))
        client.one(transport.take())
    assert h.api.stats.responses == {200: 2, 404: 1}


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 405),
        (b"GET /_gearman/status HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 200),
    ],
)
def test_protocol_switches_are_declined_and_the_connection_goes_on(h: Harness, data: bytes, status: int) -> None:
    session, transport, _ = h.session()
    session.receive_data(data)
    assert transport.take().startswith(b"HTTP/1.1 %d " % status)
    session.receive_data(b"GET /_gearman/status HTTP/1.1\r\nHost: t\r\n\r\n")
    h.clock.advance(0)
    assert transport.take().startswith(b"HTTP/1.1 200 OK\r\n")
