"""The memcached session driven with plain bytes: a real scheduler and result cache on a fake clock, no sockets.
Every test runs on both session cores: the C one (protocols/memcached/_core.c) and the pure-Python one
(protocols/memcached/core.py)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from gearman_gateway.results import ResultCache
from gearman_gateway.scheduler import Job, JobListener, Scheduler
from protocols.memcached import core as core_module
from protocols.memcached import opcodes as op
from protocols.memcached import replies, text
from protocols.memcached import session as session_module
from protocols.memcached.options import MemcachedOptions
from protocols.memcached.session import MAX_QUEUED_EVENTS, MemcachedSession, PythonSession
from protocols.memcached.stats import Shared
from tests.unit.test_http_session import FakeTransport as Transport

#: The session class the tests make (the ``core`` fixture sets it for each test).
SESSION: type[MemcachedSession] = MemcachedSession


@pytest.fixture(autouse=True, params=["c", "python"])
def core(request: pytest.FixtureRequest) -> Iterator[str]:
    global SESSION
    if request.param == "c":
        cls = getattr(session_module, "CSession", None)
        if cls is None:
            message = "protocols.memcached._core is not built (pip install -e . with gcc and python3-dev)"
            if os.environ.get("CI") == "true" and not os.environ.get("GEARMAN_GATEWAY_PURE_PYTHON"):
                pytest.fail(message)
            pytest.skip(message)
    else:
        cls = PythonSession
    saved, SESSION = SESSION, cls
    try:
        yield request.param
    finally:
        SESSION = saved


class Waker:
    def wake(self) -> None:
        pass

    def grabbed(self, job: Job | None) -> None:
        pass


class World:
    """A scheduler with its result cache, and memcached connections to it."""

    def __init__(self, store=None, **options) -> None:
        self.clock = Clock()
        self.scheduler = Scheduler(self.clock, handle_prefix=b"H:t", store=store)
        self.results = ResultCache(self.clock, ttl=100)
        self.scheduler.observer = self.results
        self.options = MemcachedOptions(**options)
        self.shared = Shared(self.clock)

    def connect(self) -> tuple[MemcachedSession, Transport]:
        transport = Transport()
        session = SESSION(self.scheduler, self.results, self.clock, self.options, self.shared, transport)
        return session, transport

    def talk(self, data: bytes) -> bytes:
        session, transport = self.connect()
        session.receive_data(data)
        return transport.take()

    def run_one(self, function: bytes, result: bytes) -> bytes:
        """A Gearman worker runs the next job of ``function``; returns its workload."""
        worker = self.scheduler.add_worker(Waker())
        self.scheduler.can_do(worker, function)
        job = self.scheduler.grab(worker)
        assert job is not None
        self.scheduler.work_complete(worker, job.handle, result)
        self.scheduler.remove_worker(worker)
        return job.data

    def queued(self, function: bytes) -> int:
        snapshot = self.scheduler.function_snapshot(function)
        return 0 if snapshot is None else sum(snapshot.queued)


def test_set_submits_and_get_reads_the_result_with_the_sets_flags() -> None:
    world = World()
    assert world.talk(b"set reverse/u1 16 0 5\r\nhello\r\n") == b"STORED\r\n"
    assert world.talk(b"get reverse/u1\r\n") == b"END\r\n"  # queued: a miss
    assert world.run_one(b"reverse", b"olleh") == b"hello"
    assert world.talk(b"get reverse/u1\r\n") == b"VALUE reverse/u1 16 5\r\nolleh\r\nEND\r\n"
    assert world.talk(b"gets reverse/u1 nope/x reverse/u1\r\n").count(b"VALUE reverse/u1 16 5 ") == 2


def test_a_set_without_unique_is_fire_and_forget() -> None:
    world = World()
    assert world.talk(b"set fn 0 0 1 noreply\r\nx\r\nset fn 0 0 1\r\ny\r\n") == b"STORED\r\n"
    assert world.queued(b"fn") == 2
    assert world.run_one(b"fn", b"") == b"x"
    assert len(world.results) == 0


def test_prepend_and_append_choose_the_priority() -> None:
    world = World()
    world.talk(b"append fn 0 0 3\r\nlow\r\nset fn 0 0 6\r\nnormal\r\nprepend fn 0 0 4\r\nhigh\r\n")
    assert [world.run_one(b"fn", b"") for _ in range(3)] == [b"high", b"normal", b"low"]


def test_set_joins_a_queued_job_and_add_refuses() -> None:
    world = World()
    assert world.talk(b"set fn/u 0 0 1\r\na\r\nset fn/u 0 0 1\r\nb\r\nadd fn/u 0 0 1\r\nc\r\n") == (
        b"STORED\r\nSTORED\r\nNOT_STORED\r\n"
    )
    assert world.queued(b"fn") == 1
    world.run_one(b"fn", b"r")
    assert world.talk(b"add fn/u 0 0 1\r\nd\r\n") == b"NOT_STORED\r\n"  # a result is kept
    assert world.talk(b"add fn/v 0 0 1\r\nd\r\n") == b"STORED\r\n"


def test_an_exptime_in_the_past_submits_nothing() -> None:
    world = World()
    world.clock.advance(10**9)
    assert world.talk(b"add fn/probe 0 2678400 0\r\n\r\n") == b"STORED\r\n"  # memcexist's probe
    assert world.talk(b"set fn 0 -1 1\r\nx\r\n") == b"STORED\r\n"
    assert world.queued(b"fn") == 0


def test_delete_cancels_a_queued_job_and_forgets_a_result() -> None:
    world = World()
    world.talk(b"set fn/u 0 0 1\r\nx\r\nset fn/v 0 0 1\r\ny\r\n")
    assert world.talk(b"delete fn/u\r\n") == b"DELETED\r\n"
    assert world.run_one(b"fn", b"done") == b"y"  # the worker never sees u
    assert world.talk(b"get fn/u fn/u/error\r\n") == b"END\r\n"
    assert world.talk(b"delete fn/v\r\ndelete fn/v\r\n") == b"DELETED\r\nNOT_FOUND\r\n"


def test_deleting_a_whole_queue_is_refused_unless_allowed() -> None:
    world = World()
    world.talk(b"set fn 0 0 1\r\nx\r\n")
    assert world.talk(b"delete fn\r\n").startswith(b"CLIENT_ERROR ")
    allowed = World(allow_queue_delete=True)
    allowed.talk(b"set fn 0 0 1\r\nx\r\nset fn 0 0 1\r\ny\r\n")
    assert allowed.talk(b"delete fn\r\n") == b"DELETED\r\n" and allowed.queued(b"fn") == 0


def test_flush_all_clears_results_never_jobs() -> None:
    world = World()
    world.talk(b"set fn/a 0 0 1\r\nx\r\nset fn/b 0 0 1\r\ny\r\n")
    world.run_one(b"fn", b"r")
    assert world.talk(b"flush_all \r\nflush_all 0\r\n") == b"OK\r\nOK\r\n"
    assert len(world.results) == 0 and world.queued(b"fn") == 1


def test_failed_jobs_answer_under_the_error_key() -> None:
    world = World()
    world.talk(b"set fn/u 0 0 1\r\nx\r\n")
    worker = world.scheduler.add_worker(Waker())
    world.scheduler.can_do(worker, b"fn")
    job = world.scheduler.grab(worker)
    world.scheduler.work_exception(worker, job.handle, b"bad input")
    assert world.talk(b"get fn/u\r\n") == b"END\r\n"
    assert world.talk(b"get fn/u/error\r\n") == b"VALUE fn/u/error 0 9\r\nbad input\r\nEND\r\n"


def test_touch_and_gat_extend_a_result() -> None:
    world = World()
    world.talk(b"set fn/u 0 0 1\r\nx\r\n")
    world.run_one(b"fn", b"r")
    world.clock.advance(90)
    assert world.talk(b"touch fn/u 1000\r\ntouch fn/none 10\r\n") == b"TOUCHED\r\nNOT_FOUND\r\n"
    world.clock.advance(500)
    assert world.talk(b"gat 2000 fn/u\r\n") == b"VALUE fn/u 0 1\r\nr\r\nEND\r\n"
    world.clock.advance(1500)
    assert world.talk(b"get fn/u\r\n").startswith(b"VALUE")


def test_a_worker_takes_work_with_get() -> None:
    world = World()
    world.talk(b"set reverse 16 0 3\r\nabc\r\n")
    session, transport = world.connect()
    session.receive_data(b"get reverse\r\nget reverse\r\n")
    assert transport.take() == b"VALUE reverse 16 3\r\nabc\r\nEND\r\nEND\r\n"
    assert world.scheduler.function_snapshot(b"reverse").completed == 1
    assert world.scheduler.function_snapshot(b"reverse").workers == 1  # a worker of it from now on
    session.connection_lost()
    assert world.scheduler.function_snapshot(b"reverse").workers == 0


def test_open_close_serves_a_foreground_client() -> None:
    world = World()
    heard = []

    class Client(JobListener):
        def job_complete(self, job: Job, data: bytes) -> None:
            heard.append(data)

    client = Client()
    world.scheduler.submit(b"reverse", b"hello", listener=client)
    session, transport = world.connect()
    session.receive_data(b"get reverse/open\r\nget reverse/open\r\n")
    assert transport.take() == b"VALUE reverse/open 0 5\r\nhello\r\nEND\r\n" + b"CLIENT_ERROR " + (
        b"a job of this function is already open on this connection: /close or /abort it first\r\n"
    )
    session.receive_data(b"set reverse/close 0 0 5\r\nolleh\r\nset reverse/close 0 0 1\r\nx\r\n")
    assert transport.take() == b"STORED\r\nNOT_FOUND\r\n"
    assert heard == [b"olleh"]


def test_get_close_completes_with_nothing_and_close_open_takes_the_next() -> None:
    world = World()
    world.talk(b"set fn/a 0 0 1\r\n1\r\nset fn/b 0 0 1\r\n2\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/open\r\nget fn/close/open\r\nget fn/close\r\n")
    assert transport.take() == b"VALUE fn/open 0 1\r\n1\r\nEND\r\nVALUE fn/close/open 0 1\r\n2\r\nEND\r\nEND\r\n"
    assert world.talk(b"get fn/a fn/b\r\n") == b"VALUE fn/a 0 0\r\n\r\nVALUE fn/b 0 0\r\n\r\nEND\r\n"


def test_abort_and_a_lost_connection_give_the_job_back() -> None:
    world = World()
    world.talk(b"set fn/a 0 0 1\r\n1\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/open\r\nget fn/abort\r\n")
    assert transport.take() == b"VALUE fn/open 0 1\r\n1\r\nEND\r\nEND\r\n"
    assert world.queued(b"fn") == 1
    session.receive_data(b"get fn/open\r\n")
    assert world.queued(b"fn") == 0
    session.connection_lost()
    assert world.queued(b"fn") == 1
    assert world.run_one(b"fn", b"done") == b"1"
    assert world.scheduler.function_snapshot(b"fn").worker_deaths == 2


def test_worker_fail_with_and_without_text() -> None:
    world = World()
    world.talk(b"set fn/a 0 0 1\r\n1\r\nset fn/b 0 0 1\r\n2\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/open\r\nset fn/fail 0 0 4\r\noops\r\nget fn/open\r\nset fn/fail 0 0 0\r\n\r\n")
    assert transport.take().count(b"STORED\r\n") == 2
    assert world.talk(b"get fn/a/error fn/b/error\r\n") == (
        b"VALUE fn/a/error 0 4\r\noops\r\nVALUE fn/b/error 0 0\r\n\r\nEND\r\n"
    )


def test_peek_shows_without_taking() -> None:
    world = World()
    world.talk(b"set fn 5 0 3\r\nabc\r\n")
    assert world.talk(b"get fn/peek\r\nget fn/peek\r\n") == b"VALUE fn/peek 5 3\r\nabc\r\nEND\r\n" * 2
    assert world.queued(b"fn") == 1
    assert world.talk(b"get other/peek\r\n") == b"END\r\n"


def test_a_result_wait_ends_with_the_result_and_later_requests_wait_behind_it() -> None:
    world = World()
    world.talk(b"set fn/u 0 0 1\r\nx\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/u/t=300\r\nversion\r\n")
    assert transport.take() == b""
    world.run_one(b"fn", b"r")
    assert transport.take().startswith(b"VALUE fn/u/t=300 0 1\r\nr\r\nEND\r\nVERSION ")


def test_a_wait_times_out_with_a_miss_capped_by_the_option() -> None:
    world = World(max_wait_ms=200)
    session, transport = world.connect()
    session.receive_data(b"get fn/u/t=100000\r\nget fn/t=50\r\n")
    world.clock.advance(0.199)
    assert transport.take() == b""
    world.clock.advance(0.002)
    assert transport.take() == b"END\r\n"
    world.clock.advance(0.051)
    assert transport.take() == b"END\r\n"
    assert world.scheduler.function_snapshot(b"fn").workers == 1


def test_a_job_that_comes_as_a_work_wait_ends_is_taken() -> None:
    world = World()
    session, transport = world.connect()
    session.receive_data(b"get fn/t=50\r\n")
    world.clock.advance(0.02)
    world.talk(b"set fn 0 0 1\r\nx\r\n")
    world.clock.advance(0.04)  # the wake-up's grab and the timeout in one advance: the job is taken once
    assert transport.take() == b"VALUE fn/t=50 0 1\r\nx\r\nEND\r\n"
    assert world.queued(b"fn") == 0 and world.scheduler.function_snapshot(b"fn").completed == 1


def test_a_work_wait_takes_a_job_that_comes() -> None:
    world = World()
    session, transport = world.connect()
    session.receive_data(b"get fn/open/t=300\r\n")
    world.talk(b"set fn 0 0 3\r\nabc\r\n")
    world.clock.advance(0)
    assert transport.take() == b"VALUE fn/open/t=300 0 3\r\nabc\r\nEND\r\n"
    session.receive_data(b"set fn/close 0 0 2\r\nok\r\n")
    assert transport.take() == b"STORED\r\n"
    world.clock.advance(1)  # the timer was cancelled
    assert transport.take() == b""


def test_memcached_and_other_commands() -> None:
    world = World()
    out = world.talk(b"version\r\nverbosity 1\r\nincr x 1\r\nstats\r\nstats gearman\r\nstats nope\r\nbogus\r\n")
    assert out.startswith(b"VERSION 1.6.18")
    assert b"OK\r\nNOT_FOUND\r\nSTAT pid " in out and b"STAT gearman_jobs 0\r\n" in out
    assert out.endswith(b"END\r\nEND\r\nERROR\r\nERROR\r\n")


def test_errors_and_quit() -> None:
    world = World(max_value_size=10)
    session, transport = world.connect()
    long_key = b"k" * 251
    session.receive_data(b"get " + long_key + b"\r\nset fn 0 0 20\r\n" + b"x" * 20 + b"\r\nset \x01 0 0 1\r\nx\r\n")
    assert transport.take() == (
        b"CLIENT_ERROR bad command line format\r\nSERVER_ERROR object too large for cache\r\n"
        b"CLIENT_ERROR bad command line format\r\n"
    )
    session.receive_data(b"set fn/" + b"u" * 65 + b" 0 0 1\r\nx\r\nquit\r\nversion\r\n")
    assert transport.take() == b"CLIENT_ERROR Unique value too large\r\n"
    assert transport.closed


def test_binary_protocol() -> None:
    world = World()

    def req(opcode: int, key: bytes = b"", extras: bytes = b"", value: bytes = b"", opaque: int = 0) -> bytes:
        body = len(extras) + len(key) + len(value)
        header = struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, body, opaque, 0)
        return header + extras + key + value

    session, transport = world.connect()
    session.receive_data(req(op.SET, b"fn/u", struct.pack(">II", 7, 0), b"data", opaque=1))
    reply = transport.take()
    assert reply[0] == 0x81 and reply[1] == op.SET and struct.unpack(">H", reply[6:8])[0] == 0
    world.run_one(b"fn", b"result")
    session.receive_data(req(op.GETKQ, b"fn/u", opaque=2) + req(op.GETKQ, b"fn/x", opaque=3) + req(op.NOOP))
    reply = transport.take()
    assert reply.count(b"\x81") >= 2 and b"fn/uresult" in reply and b"fn/x" not in reply
    assert reply.endswith(struct.pack(">BBHBBHIIQ", 0x81, op.NOOP, 0, 0, 0, 0, 0, 0, 0))


def test_meta_commands() -> None:
    world = World()
    assert world.talk(b"ms fn/u 3 F16 T0\r\nabc\r\nmn\r\n") == b"HD\r\nMN\r\n"
    world.run_one(b"fn", b"cba")
    out = world.talk(b"mg fn/u v f t k\r\nmg fn/none v q\r\nmn\r\nmd fn/u\r\nmg fn/u v\r\n")
    assert out == b"VA 3 f16 t100 kfn/u\r\ncba\r\nMN\r\nHD\r\nEN\r\n"
    assert world.talk(b"ms Zm4vdQ== 1 b ME\r\nx\r\n") == b"HD\r\n"  # base64 "fn/u", mode E (add)
    assert world.queued(b"fn") == 1


class FakeStore:
    shares_uniques = False

    def __init__(self) -> None:
        self.calls = []

    def add(self, row, callback) -> None:
        self.calls.append(callback)

    def remove(self, job_id) -> None:
        pass

    def bury(self, job_id, reason) -> None:
        pass

    def revive(self, job_id) -> None:
        pass


def test_stored_only_once_committed_and_a_store_outage_is_a_server_error() -> None:
    store = FakeStore()
    world = World(store=store)
    session, transport = world.connect()
    session.receive_data(b"set fn 0 0 1\r\nx\r\nset fn 0 0 1\r\ny\r\nversion\r\n")
    assert transport.take() == b""
    store.calls[0](None)
    assert transport.take() == b"STORED\r\n"
    store.calls[1](OSError("disk full"))
    assert transport.take().startswith(b"SERVER_ERROR Job could not be stored: disk full\r\nVERSION ")


def test_reading_pauses_behind_a_wait() -> None:
    world = World()
    session, transport = world.connect()
    session.receive_data(b"get fn/u/t=300\r\n" + b"version\r\n" * (MAX_QUEUED_EVENTS + 1))
    assert transport.paused
    world.clock.advance(0.4)
    assert not transport.paused and transport.take().count(b"VERSION") == MAX_QUEUED_EVENTS + 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=8))
def test_arbitrary_bytes_never_raise_or_loop(chunks: list[bytes]) -> None:
    world = World()
    session, transport = world.connect()
    for chunk in chunks:
        session.receive_data(chunk)
    world.clock.advance(1)
    session.connection_lost()
    assert world.scheduler.totals().workers == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"set fn/u 0 0 1\r\nx\r\n",
                b"get fn/open\r\n",
                b"get fn/t=10\r\n",
                b"get fn/u/t=10\r\n",
                b"get fn/close\r\n",
                b"get fn/abort\r\n",
                b"set fn/close 0 0 1\r\ny\r\n",
                b"delete fn/u\r\n",
                b"get fn/peek\r\n",
                b"\x80\x00\x00\x04\x00\x00\x00\x00",
                b"get fn/u\r",
            ]
        ),
        max_size=12,
    )
)
def test_command_soup_leaves_no_worker_behind(commands: list[bytes]) -> None:
    world = World()
    session, transport = world.connect()
    for command in commands:
        session.receive_data(command)
        world.clock.advance(0.02)
    session.connection_lost()
    assert world.scheduler.totals().workers == 0
    assert world.scheduler.totals().running == 0


def test_a_half_close_is_answered_in_full_then_closed() -> None:
    world = World()
    world.talk(b"set fn/u 0 0 1\r\nx\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/u/t=300\r\nversion\r\n")
    session.input_ended()
    assert not transport.closed
    world.run_one(b"fn", b"r")
    assert transport.take().startswith(b"VALUE fn/u/t=300 0 1\r\nr\r\nEND\r\nVERSION ")
    assert transport.closed


def test_peek_sees_a_job_whose_worker_died() -> None:
    """A job given back by a lost worker waits in the died queue: /peek shows it (as a grab would take it),
    behind any job that never ran."""
    world = World()
    world.talk(b"set fn 7 0 1\r\nx\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/open\r\n")
    assert transport.take() == b"VALUE fn/open 7 1\r\nx\r\nEND\r\n"
    session.connection_lost()  # the job goes back, into the died queue
    assert world.talk(b"get fn/peek\r\n") == b"VALUE fn/peek 7 1\r\nx\r\nEND\r\n"
    world.talk(b"set fn 0 0 1\r\ny\r\n")
    assert world.talk(b"get fn/peek\r\n") == b"VALUE fn/peek 0 1\r\ny\r\nEND\r\n"
    assert world.talk(b"get fn\r\nget fn/peek\r\n") == b"VALUE fn 0 1\r\ny\r\nEND\r\nVALUE fn/peek 7 1\r\nx\r\nEND\r\n"
    assert world.talk(b"get fn\r\n") == b"VALUE fn 7 1\r\nx\r\nEND\r\n"  # taken again with its flags


def test_a_half_closed_worker_takes_no_more_work() -> None:
    """A peer that stopped sending may be gone: its open job goes back, its wait for work ends as a miss at
    once, and a job that comes afterwards stays queued for others (a plain get would complete it: lost);
    a wait for a result behind them goes on."""
    world = World()
    world.talk(b"set a 0 0 1\r\nx\r\n")
    session, transport = world.connect()
    session.receive_data(b"get a/open\r\nget b/t=300\r\nget b/u/t=300\r\n")
    assert transport.take() == b"VALUE a/open 0 1\r\nx\r\nEND\r\n"
    session.input_ended()
    assert transport.take() == b"END\r\n"
    assert not transport.closed  # the result wait goes on
    assert world.scheduler.totals().running == 0
    assert world.run_one(b"a", b"") == b"x"
    assert world.talk(b"set b 0 0 1\r\ny\r\n") == b"STORED\r\n"
    world.clock.advance(1)
    assert transport.take() == b"END\r\n" and transport.closed
    assert world.scheduler.totals().workers == 0
    assert world.run_one(b"b", b"") == b"y"


def test_waits_in_a_row_share_one_timer_and_each_times_out_on_time() -> None:
    world = World()
    world.talk(b"set fn/a 0 0 1\r\nx\r\n")
    session, transport = world.connect()
    session.receive_data(b"get fn/a/t=300\r\n")
    world.run_one(b"fn", b"r")  # the first wait ends early: its timer stays, disarmed
    assert transport.take().startswith(b"VALUE fn/a/t=300")
    world.clock.advance(0.2)
    session.receive_data(b"get fn/b/t=300\r\n")  # due at 0.5: the timer (due at 0.3) is reused
    assert len(world.clock.getDelayedCalls()) == 1
    world.clock.advance(0.1)  # the old deadline: the timer sets itself again for the rest
    assert transport.take() == b""
    world.clock.advance(0.199)
    assert transport.take() == b""
    world.clock.advance(0.001)
    assert transport.take() == b"END\r\n"
    session.connection_lost()
    assert world.clock.getDelayedCalls() == []


def test_a_waiting_worker_is_handed_the_job_as_it_is_submitted() -> None:
    """No sleep and wake-up: the submit hands the job to the waiting get's held grab; the get answers at the
    end of the turn, with the flags the submitter registered after its submit, and a plain get's result
    reaches the result cache with them too."""
    world = World()
    session, transport = world.connect()
    session.receive_data(b"get fn/t=300\r\n")
    assert world.talk(b"set fn/u 16 0 1\r\nx\r\n") == b"STORED\r\n"
    assert world.queued(b"fn") == 0 and world.scheduler.totals().running == 1  # already its worker's
    assert transport.take() == b""
    world.clock.advance(0)
    assert transport.take() == b"VALUE fn/t=300 16 1\r\nx\r\nEND\r\n"
    assert world.talk(b"get fn/u\r\n") == b"VALUE fn/u 16 0\r\n\r\nEND\r\n"
    world.clock.advance(1)  # the wait's timer fires disarmed
    assert transport.take() == b"" and world.scheduler.totals().running == 0


def test_a_job_handed_to_a_worker_that_goes_before_taking_it_goes_back_first() -> None:
    """Handed over, then the connection closes (or half-closes) in the same turn: the job goes back to the
    head of its queue as given back, not as a lost worker's, and runs elsewhere."""
    for end in ("connection_lost", "input_ended"):
        world = World()
        session, transport = world.connect()
        session.receive_data(b"get fn/open/t=300\r\n")
        world.talk(b"set fn 0 0 1\r\nx\r\nset fn 0 0 1\r\ny\r\n")
        getattr(session, end)()
        world.clock.advance(0)
        assert transport.take() == (b"END\r\n" if end == "input_ended" else b"")
        assert world.scheduler.totals().workers == 0
        assert all(job.deaths == 0 for job in world.scheduler.jobs_by_handle.values())
        assert [world.run_one(b"fn", b""), world.run_one(b"fn", b"")] == [b"x", b"y"]


def test_a_waiting_worker_gets_a_job_once_it_is_committed() -> None:
    store = FakeStore()
    world = World(store=store)
    session, transport = world.connect()
    session.receive_data(b"get fn/t=300\r\n")
    client, client_transport = world.connect()
    client.receive_data(b"set fn 3 0 1\r\nx\r\n")
    world.clock.advance(0)
    assert transport.take() == b"" and client_transport.take() == b""
    store.calls[0](None)
    world.clock.advance(0)
    assert client_transport.take() == b"STORED\r\n"
    assert transport.take() == b"VALUE fn/t=300 3 1\r\nx\r\nEND\r\n"
    world.clock.advance(1)
    assert transport.take() == b""


def test_a_one_key_gets_carries_the_cas_unique() -> None:
    """(A one-key ``gets`` once took the one-key ``get`` path, whose VALUE line has no cas.)"""
    world = World()
    world.talk(b"set fn/u 3 0 1\r\nx\r\n")
    world.run_one(b"fn", b"r")
    both = world.talk(b"gets fn/u fn/u\r\n")
    one = world.talk(b"gets fn/u\r\n")
    cas = both.split(b"\r\n")[0].split(b" ")[-1]
    assert int(cas) > 0
    assert one == b"VALUE fn/u 3 1 %b\r\nr\r\nEND\r\n" % cas


def test_noreply_sets_take_the_plain_path_and_answer_nothing() -> None:
    """pymemcache's default ``set ... noreply`` submits as a plain set does (its get after it reuses the key)
    and says nothing, errors included; a worker's ``set f/close ... noreply`` completes its job silently."""
    world = World()
    client, client_out = world.connect()
    worker, worker_out = world.connect()
    worker.receive_data(b"get fn/open\r\n")
    assert worker_out.take() == b"END\r\n"
    client.receive_data(b"set fn/u 16 0 2 noreply\r\nhi\r\nget fn/u/t=300\r\n")
    assert client_out.take() == b"" and world.queued(b"fn") == 1
    assert client._last_set == (b"fn/u", (b"fn", b"u"))  # the plain path, not the general one
    worker.receive_data(b"get fn/open\r\nset fn/close 0 0 2 noreply\r\nok\r\nset fn/close 0 0 1 noreply\r\nx\r\n")
    assert worker_out.take() == b"VALUE fn/open 16 2\r\nhi\r\nEND\r\n"  # no STORED, no NOT_FOUND
    assert client_out.take() == b"VALUE fn/u/t=300 16 2\r\nok\r\nEND\r\n"
    client.receive_data(b"set fn/" + b"u" * 300 + b" 0 0 1 noreply\r\nx\r\nset fn/v 0 0 1\r\ny\r\n")
    assert client_out.take() == b"STORED\r\n"  # the refused over-long unique said nothing


def test_the_get_of_a_result_after_its_set_on_one_connection() -> None:
    """A client's ``set f/u`` then ``get f/u/t=<ms>`` (the set's key reused, not parsed again): the result,
    a failure's miss, a timeout's miss; keys that only look alike are read by the full rules."""
    world = World()
    session, transport = world.connect()
    session.receive_data(b"set fn/u 16 0 1\r\nx\r\nget fn/u/t=300\r\n")
    assert transport.take() == b""  # the STORED leaves with the answer of the wait behind it
    world.run_one(b"fn", b"done")
    assert transport.take() == b"STORED\r\nVALUE fn/u/t=300 16 4\r\ndone\r\nEND\r\n"
    session.receive_data(b"get fn/u/t=300\r\nget fn/u/t=x\r\nget fn/u/t=0\r\n")  # a hit, no such key, no wait
    assert transport.take() == b"VALUE fn/u/t=300 16 4\r\ndone\r\nEND\r\nEND\r\nVALUE fn/u/t=0 16 4\r\ndone\r\nEND\r\n"
    session.receive_data(b"set fn/v 0 0 1\r\ny\r\nget fn/v/t=300\r\n")
    worker = world.scheduler.add_worker(Waker())
    world.scheduler.can_do(worker, b"fn")
    job = world.scheduler.grab(worker)
    world.scheduler.work_exception(worker, job.handle, b"boom")
    assert transport.take() == b"STORED\r\nEND\r\n"  # failed: a miss (its text under fn/v/error)
    session.receive_data(b"get fn/v/t=300\r\n")  # failed already: a miss at once
    assert transport.take() == b"END\r\n"
    assert world.talk(b"get fn/v/error\r\n") == b"VALUE fn/v/error 0 4\r\nboom\r\nEND\r\n"
    session.receive_data(b"set fn/w 0 0 1\r\nz\r\nget fn/w/t=50\r\nget fn/w/t=50/open\r\n")
    world.clock.advance(0.05)
    assert transport.take() == b"STORED\r\nEND\r\nCLIENT_ERROR " + (
        b"that key option does not go with this command\r\n"
    )


class CountingTransport(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def test_the_replies_to_one_read_leave_in_one_write() -> None:
    world = World()
    transport = CountingTransport()
    session = SESSION(world.scheduler, world.results, world.clock, world.options, world.shared, transport)
    session.receive_data(b"set fn 0 0 1\r\na\r\nset fn/u 0 0 1\r\nb\r\nversion\r\nget fn/u\r\nbogus\r\n")
    assert transport.writes == 1
    assert transport.take().startswith(b"STORED\r\nSTORED\r\nVERSION ")


def test_acknowledgements_ahead_of_a_wait_leave_with_its_answer() -> None:
    """A worker's ``set f/close`` pipelined with its next ``get f/open/t=``: the STORED waits for the next job
    and both leave in one write (a timeout's miss too); a value ahead of a wait goes at once."""
    world = World()
    worker_out = CountingTransport()
    worker = SESSION(world.scheduler, world.results, world.clock, world.options, world.shared, worker_out)
    client, client_out = world.connect()
    client.receive_data(b"set fn/a 0 0 1\r\nx\r\nset fn/b 0 0 1\r\ny\r\n")
    assert client_out.take() == b"STORED\r\nSTORED\r\n"
    worker.receive_data(b"get fn/open\r\n")
    assert worker_out.take() == b"VALUE fn/open 0 1\r\nx\r\nEND\r\n"
    worker.receive_data(b"set fn/close 0 0 2\r\nr1\r\nget fn/open/t=300\r\n")  # fn/b is queued: taken at once
    world.clock.advance(0)
    assert worker_out.writes == 2 and worker_out.take() == b"STORED\r\nVALUE fn/open/t=300 0 1\r\ny\r\nEND\r\n"
    worker.receive_data(b"set fn/close 0 0 2\r\nr2\r\nget fn/open/t=300\r\n")  # nothing queued: it waits
    assert worker_out.take() == b"" and worker_out.writes == 2
    client.receive_data(b"set fn/c 0 0 1\r\nz\r\n")
    assert client_out.take() == b"STORED\r\n"
    world.clock.advance(0)
    assert worker_out.writes == 3 and worker_out.take() == b"STORED\r\nVALUE fn/open/t=300 0 1\r\nz\r\nEND\r\n"
    worker.receive_data(b"set fn/close 0 0 2\r\nr3\r\nget fn/open/t=300\r\n")
    world.clock.advance(0.3)  # the wait times out: the STORED leaves with its miss
    assert worker_out.writes == 4 and worker_out.take() == b"STORED\r\nEND\r\n"
    assert world.talk(b"get fn/a fn/b fn/c\r\n") == (
        b"VALUE fn/a 0 2\r\nr1\r\nVALUE fn/b 0 2\r\nr2\r\nVALUE fn/c 0 2\r\nr3\r\nEND\r\n"
    )
    client.receive_data(b"get fn/open\r\nget fn/open/t=300\r\n")  # nothing queued: a miss, then a wait
    assert client_out.take() == b"END\r\n"  # the miss ahead of the wait went at once


_PLAIN_SOUP = [
    b"set fn/u 16 0 1\r\nx\r\n",
    b"set fn/v 0 0 2\r\nyy\r\n",
    b"set fn 3 0 1\r\nz\r\n",
    b"set fn/u 0 5 1\r\nx\r\n",
    b"set fn/u/t=10 0 0 1\r\nx\r\n",
    b"set fn/close 0 0 1\r\nr\r\n",
    b"set fn/open 0 0 1\r\nr\r\n",
    b"set /u 0 0 1\r\nx\r\n",
    b"set fn/ 0 0 1\r\nx\r\n",
    b"set fn/a/b 0 0 1\r\nx\r\n",
    b"get fn/u/t=10\r\n",
    b"get fn/u/t=0\r\n",
    b"get fn/u/t=x\r\n",
    b"get fn/u/t=10/open\r\n",
    b"get fn/uu/t=10\r\n",
    b"get fn/v/t=10\r\n",
    b"get fn/u\r\n",
    b"get fn/u/error\r\n",
    b"get fn/open/t=10\r\n",
    b"get fn/t=10\r\n",
    b"get fn\r\n",
    b"version\r\n",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PLAIN_SOUP), st.sampled_from([None, b"ok", b"", b"!fail"])), max_size=10))
def test_plain_requests_are_answered_as_their_events_are(steps: list[tuple[bytes, bytes | None]]) -> None:
    """The session's plain set and get (a plain decoder's values, a set's key reused by the get of its result,
    a worker's close) answer and count exactly as the events of the same bytes do through the general
    handlers (a decoder without its fast path), with a Gearman worker finishing jobs in between."""
    from protocols.memcached.codec import Decoder

    outputs = []
    for plain in (True, False):
        world = World()
        session, transport = world.connect()
        if not plain:
            session.decoder = Decoder(max_value_size=world.options.max_value_size, fast_path=False)
        out = []
        for command, outcome in steps:
            session.receive_data(command)
            if outcome is not None and world.queued(b"fn"):
                worker = world.scheduler.add_worker(Waker())
                world.scheduler.can_do(worker, b"fn")
                job = world.scheduler.grab(worker)
                if outcome == b"!fail":
                    world.scheduler.work_exception(worker, job.handle, b"boom")
                else:
                    world.scheduler.work_complete(worker, job.handle, outcome)
                world.scheduler.remove_worker(worker)
            world.clock.advance(0.004)
            out.append(transport.take())
        world.clock.advance(1)
        out.append(transport.take())
        session.connection_lost()
        outputs.append((out, world.shared.totals(), len(world.results), world.queued(b"fn")))
    assert outputs[0] == outputs[1]


# -- the session's core (C and Python): what a read leaves behind


def test_a_handler_that_raises_leaves_the_core_ready_for_the_next_read(core: str) -> None:
    world = World()
    failing = [True]

    class Broken(SESSION):  # type: ignore[misc,valid-type]
        __slots__ = ()

        def _get_plain(self, raw: bytes) -> bytes:
            if failing[0]:
                raise RuntimeError("handler bug")
            return super()._get_plain(raw)

    transport = Transport()
    session = Broken(world.scheduler, world.results, world.clock, world.options, world.shared, transport)
    with pytest.raises(RuntimeError, match="handler bug"):
        session.receive_data(b"set reverse/u1 0 0 2\r\nhi\r\nget reverse/u1\r\n")
    assert session._running is False and session._out is None and session._busy is False
    assert transport.take() == b""  # the STORED gathered before the failure is not half-written
    failing[0] = False
    session.receive_data(b"get reverse/u1\r\nversion\r\n")
    assert transport.take().startswith(b"END\r\nVERSION ")


def test_the_cores_attributes_are_the_sessions(core: str) -> None:
    world = World()
    session, transport = world.connect()
    assert type(session).__name__ == ("CSession" if core == "c" else "PythonSession")
    assert session.closed is False and session._ahead is None and len(session._events) == 0
    session.closed = True  # (what ``_close`` sets): nothing more is read
    assert session.receive_data(b"version\r\n") is False
    assert transport.take() == b""


def test_reads_hold_no_references_and_no_memory(core: str) -> None:
    """Many reads through the core (a submit, a wait for its result answered by a worker, misses, a general
    request): reference counts of what went through the C core, and the traced memory, come back."""
    import gc
    import sys
    import tracemalloc

    world = World()
    client, out = world.connect()
    worker, worker_out = world.connect()
    data = b"set rev/u 0 0 2\r\nhi\r\nget rev/u/t=100\r\n"
    work = b"get rev/open/t=100\r\n"
    done = b"set rev/close 0 0 2\r\nih\r\nget rev/open/t=100\r\n"

    def rounds(count: int) -> None:
        worker.receive_data(work)
        for _ in range(count):
            client.receive_data(data)
            world.clock.advance(0)  # (the end of the turn: the held grab hands the job over)
            worker.receive_data(done)
            client.receive_data(b"get rev/none\r\nversion\r\n")
        worker.receive_data(b"set rev/close 0 0 2\r\nih\r\n")
        assert out.take().count(b"VALUE rev/u/t=100 0 2\r\nih\r\nEND\r\n") == count
        worker_out.take()

    rounds(500)
    tracked = (data, done, client, worker, core_module.PENDING, text.STORED, replies.TEXT_MISS)
    before = [sys.getrefcount(thing) for thing in tracked]
    gc.collect()
    tracemalloc.start()
    rounds(2000)
    gc.collect()
    first, _ = tracemalloc.get_traced_memory()
    rounds(2000)
    gc.collect()
    second, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    if core == "c":  # (on the Python core the interpreter counts; its caches may hold one more for a while)
        assert [sys.getrefcount(thing) for thing in tracked] == before
    assert second - first < 64 * 1024, (first, second)
