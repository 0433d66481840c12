"""BinarySession without a reactor or sockets: bytes in, bytes out, a real Scheduler, fake reactor turns.

Each session's host is a few lines (``Host``): its writes go to a list, its end of turn is ``Turns.end``.
Replies are read back with the client side's own decoder, independent of the server's encoding path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet.task import Clock

from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.config import make_settings
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import Scheduler
from gearman_gateway.stores.base import StoreError
from protocols import FrontendContext
from protocols.binary.codec import JOIN_LIMIT, Decoder, encode_request
from protocols.binary.packets import REQ, RES, Packet
from protocols.binary.session import HELD_OUTPUT_LIMIT, LARGE_READ, READ_SIZE, BinarySession
from protocols.output import ACK_WAIT_TURNS, WriteBatch
from tests.unit.test_scheduler_store import FakeStore

P = Packet


class Turns:
    """The reactor's turns: ``__call__`` runs a callback at the end of this turn, ``next`` at the end of the
    next one; ``end`` ends the turn."""

    def __init__(self) -> None:
        self.now: list[Callable[[], None]] = []
        self.later: list[Callable[[], None]] = []

    def __call__(self, callback: Callable[[], None]) -> None:
        self.now.append(callback)

    def next(self, callback: Callable[[], None]) -> None:
        self.later.append(callback)

    def end(self, count: int = 1) -> None:
        for _ in range(count):
            while self.now:
                callbacks, self.now = self.now, []
                for callback in callbacks:
                    callback()
            self.now, self.later = self.later, []


class Host(BinarySession):
    """The session's hooks, on lists instead of a socket."""

    def __init__(self, server: Server, decoder: Decoder | None = None, exceptions: bool = False) -> None:
        decoder = decoder if decoder is not None else Decoder(REQ)
        super().__init__(server.batch, server.scheduler, decoder, exceptions)
        self.context = server.context
        self.peer = "127.0.0.1"
        self.peer_is_local = True
        self.writes: list[list[bytes]] = []  # each write_pieces call: one send
        self.closed = False
        self.reading = True
        self.read_size = READ_SIZE
        self._replies = Decoder(RES)

    def write_pieces(self, pieces: list[bytes]) -> None:
        assert not self.closed, "write after close"
        self.writes.append(list(pieces))

    def close(self) -> None:
        self.flush()
        self.closed = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_read_size(self, size: int) -> None:
        self.read_size = size

    # -- test helpers

    def request(self, ptype: int, *args: bytes) -> None:
        self.receive_data(encode_request(ptype, *args))

    def replies(self) -> list[tuple[Any, ...]]:
        """What was written since the last call, as (packet name, *arguments)."""
        data = b"".join(piece for write in self.writes for piece in write)
        self.writes = []
        return [(Packet(ptype).name, *args) for ptype, args in self._replies.receive_data(data)]


class Server:
    def __init__(self, **settings: Any) -> None:
        self.clock = Clock()
        self.turns = Turns()
        self.scheduler = Scheduler(self.clock, handle_prefix=b"H:t", turn_end=self.turns)
        self.batch = WriteBatch(self.turns, self.turns.next)
        connections = ConnectionRegistry()
        admin = Admin(self.scheduler, connections, AdminControls(shutdown=lambda graceful: None, verbose_level=str))
        self.context = FrontendContext(make_settings(settings), self.scheduler, admin, connections, self.clock)

    def session(self, **options: Any) -> Host:
        return Host(self, **options)

    def worker(self, *functions: bytes) -> Host:
        worker = self.session()
        for name in functions:
            worker.request(P.CAN_DO, name)
        return worker


@pytest.fixture
def server() -> Server:
    return Server()


# -- clients


def test_a_background_submit_is_acknowledged_at_the_end_of_the_turn(server: Server) -> None:
    client = server.session()
    client.request(P.SUBMIT_JOB_BG, b"f", b"", b"x")
    assert client.writes == []  # nothing before the end of the turn
    server.turns.end()
    assert client.writes == [[encode_request(P.JOB_CREATED, b"H:t:1").replace(REQ, RES, 1)]]


def test_every_reply_of_a_read_leaves_in_one_write(server: Server) -> None:
    client = server.session()
    client.receive_data(
        encode_request(P.SUBMIT_JOB_BG, b"f", b"", b"1")
        + encode_request(P.ECHO_REQ, b"hi")
        + encode_request(P.SUBMIT_JOB_HIGH_BG, b"f", b"", b"2")
    )
    server.turns.end()
    assert len(client.writes) == 1
    assert client.replies() == [("JOB_CREATED", b"H:t:1"), ("ECHO_RES", b"hi"), ("JOB_CREATED", b"H:t:2")]


def test_a_foreground_acknowledgement_waits_for_its_result(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    client.request(P.SUBMIT_JOB, b"f", b"", b"x")
    server.turns.end()
    assert client.writes == []  # JOB_CREATED alone is not worth a send yet
    worker.request(P.GRAB_JOB)
    server.turns.end()
    worker.replies()
    worker.request(P.WORK_COMPLETE, b"H:t:1", b"done")
    server.turns.end()
    assert len(client.writes) == 1  # acknowledgement and result in one send
    assert client.replies() == [("JOB_CREATED", b"H:t:1"), ("WORK_COMPLETE", b"H:t:1", b"done")]


def test_a_foreground_acknowledgement_waits_a_few_turns_at_most(server: Server) -> None:
    client = server.session()
    client.request(P.SUBMIT_JOB, b"f", b"", b"x")
    server.turns.end(ACK_WAIT_TURNS)
    assert client.writes == []
    server.turns.end()
    assert client.replies() == [("JOB_CREATED", b"H:t:1")]


def test_status_of_a_running_job_and_of_a_unique(server: Server) -> None:
    client = server.session()
    other = server.session()
    worker = server.worker(b"f")
    client.request(P.SUBMIT_JOB, b"f", b"u", b"x")
    other.request(P.SUBMIT_JOB, b"f", b"u", b"x")  # joins it: two clients wait
    worker.request(P.GRAB_JOB)
    worker.request(P.WORK_STATUS, b"H:t:1", b"3", b"10")
    client.request(P.GET_STATUS, b"H:t:1")
    client.request(P.GET_STATUS, b"H:t:9")
    client.request(P.GET_STATUS_UNIQUE, b"u")
    server.turns.end(ACK_WAIT_TURNS + 1)
    assert client.replies() == [
        ("JOB_CREATED", b"H:t:1"),
        ("WORK_STATUS", b"H:t:1", b"3", b"10"),
        ("STATUS_RES", b"H:t:1", b"1", b"1", b"3", b"10"),
        ("STATUS_RES", b"H:t:9", b"0", b"0", b"0", b"0"),
        ("STATUS_RES_UNIQUE", b"u", b"1", b"1", b"3", b"10", b"2"),
    ]


def test_scheduler_errors_are_error_packets(server: Server) -> None:
    client = server.session()
    client.request(P.SUBMIT_JOB, b"f", b"u" * 65, b"x")
    client.request(P.SUBMIT_JOB_EPOCH, b"f", b"", b"-1", b"x")
    server.turns.end()
    assert client.replies() == [
        ("ERROR", b"ARGUMENT_TOO_LARGE", b"Unique value too large"),
        ("ERROR", b"INVALID_ARGUMENT", b"Epoch time out of range"),
    ]


def test_exceptions_reach_only_clients_that_asked(server: Server) -> None:
    plain = server.session()
    asking = server.session()
    worker = server.worker(b"f")
    asking.request(P.OPTION_REQ, b"exceptions")
    plain.request(P.SUBMIT_JOB, b"f", b"u", b"x")
    asking.request(P.SUBMIT_JOB, b"f", b"u", b"x")
    worker.request(P.GRAB_JOB)
    worker.request(P.WORK_EXCEPTION, b"H:t:1", b"boom")
    server.turns.end()
    assert plain.replies() == [("JOB_CREATED", b"H:t:1"), ("WORK_FAIL", b"H:t:1")]
    assert asking.replies() == [
        ("OPTION_RES", b"exceptions"),
        ("JOB_CREATED", b"H:t:1"),
        ("WORK_EXCEPTION", b"H:t:1", b"boom"),
    ]


# -- workers


def test_grab_gets_the_job_or_is_held_until_the_end_of_the_turn(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    client.request(P.SUBMIT_JOB_BG, b"f", b"", b"x")
    worker.request(P.GRAB_JOB)
    worker.request(P.GRAB_JOB)  # nothing left: held
    server.turns.end()
    assert worker.replies() == [("JOB_ASSIGN", b"H:t:1", b"f", b"x"), ("NO_JOB",)]


def test_a_held_grab_gets_a_job_submitted_in_the_same_turn(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    worker.request(P.GRAB_JOB_UNIQ)
    client.request(P.SUBMIT_JOB_BG, b"f", b"u", b"x")
    server.turns.end()
    assert worker.replies() == [("JOB_ASSIGN_UNIQ", b"H:t:1", b"f", b"u", b"x")]  # no NO_JOB, no NOOP


def test_replies_after_a_held_grab_wait_behind_its_answer(server: Server) -> None:
    worker = server.worker(b"f")
    worker.receive_data(encode_request(P.GRAB_JOB) + encode_request(P.ECHO_REQ, b"after"))
    assert worker.writes == []
    server.turns.end()
    assert worker.replies() == [("NO_JOB",), ("ECHO_RES", b"after")]


def test_a_sleeping_worker_is_woken_with_noop(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    worker.request(P.PRE_SLEEP)
    client.request(P.SUBMIT_JOB_BG, b"f", b"", b"x")
    server.turns.end()
    assert worker.replies() == [("NOOP",)]


def test_a_reduce_job_is_assigned_with_all_its_fields(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    client.request(P.SUBMIT_REDUCE_JOB_BACKGROUND, b"f", b"u", b"r", b"", b"x")
    worker.request(P.GRAB_JOB_ALL)
    server.turns.end()
    assert worker.replies() == [("JOB_ASSIGN_ALL", b"H:t:1", b"f", b"u", b"r", b"x")]


def test_a_large_payload_is_written_as_a_piece_of_its_own(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    payload = b"p" * JOIN_LIMIT
    client.request(P.SUBMIT_JOB_BG, b"f", b"", payload)
    worker.request(P.GRAB_JOB)
    server.turns.end()
    (write,) = worker.writes
    assert len(write) == 2 and write[1] == payload  # header and leading arguments, then the payload
    assert worker.replies() == [("JOB_ASSIGN", b"H:t:1", b"f", payload)]


def test_a_large_packet_is_read_in_larger_pieces(server: Server) -> None:
    worker = server.worker(b"f")
    packet = encode_request(P.WORK_DATA, b"H:t:1", b"d" * (3 * LARGE_READ))
    worker.receive_data(packet[:100])
    assert worker.read_size == LARGE_READ
    worker.receive_data(packet[100:])
    assert worker.read_size == READ_SIZE


def test_a_result_for_a_job_the_worker_does_not_hold(server: Server) -> None:
    worker = server.worker(b"f")
    worker.request(P.WORK_COMPLETE, b"H:t:7", b"r")
    worker.request(P.WORK_FAIL, b"H:t:" + b"9" * 70)
    server.turns.end()
    too_large = b"Error occurred due to GEARMAND_JOB_HANDLE_SIZE being too small from snprintf"
    assert worker.replies() == [
        ("ERROR", b"JOB_NOT_FOUND", b"Job given in work result not found"),
        ("ERROR", b"ARGUMENT_TOO_LARGE", too_large),
    ]


# -- durable background jobs: acknowledged after the store's commit, in request order


@pytest.fixture
def durable() -> tuple[Server, FakeStore]:
    server = Server()
    store = FakeStore()
    server.scheduler.store = store
    return server, store


def test_an_acknowledgement_after_the_commit_keeps_its_place(durable: tuple[Server, FakeStore]) -> None:
    server, store = durable
    client = server.session()
    client.receive_data(encode_request(P.SUBMIT_JOB_BG, b"f", b"", b"x") + encode_request(P.ECHO_REQ, b"after"))
    server.turns.end()
    assert client.writes == []  # the echo waits behind the acknowledgement
    store.commit()
    server.turns.end()
    assert client.replies() == [("JOB_CREATED", b"H:t:1"), ("ECHO_RES", b"after")]


def test_a_refused_job_is_answered_with_error_in_its_place(durable: tuple[Server, FakeStore]) -> None:
    server, store = durable
    client = server.session()
    client.receive_data(encode_request(P.SUBMIT_JOB_BG, b"f", b"", b"x") + encode_request(P.ECHO_REQ, b"after"))
    store.commit(StoreError("disk full"))
    server.turns.end()
    assert client.replies() == [
        ("ERROR", b"QUEUE_ERROR", b"Job could not be stored: disk full"),
        ("ECHO_RES", b"after"),
    ]


def test_output_held_behind_a_late_reply_is_bounded(durable: tuple[Server, FakeStore]) -> None:
    server, store = durable
    client = server.session()
    client.request(P.SUBMIT_JOB_BG, b"f", b"", b"x")
    echo = encode_request(P.ECHO_REQ, b"e" * 65536)
    while client.reading:
        client.receive_data(echo)
    assert client._held_bytes > HELD_OUTPUT_LIMIT  # stopped reading just past the limit
    store.commit()
    assert client.reading
    server.turns.end()
    assert client.replies()[0] == ("JOB_CREATED", b"H:t:1")


def test_a_worker_waits_for_the_commit_of_the_job_it_grabbed(durable: tuple[Server, FakeStore]) -> None:
    server, store = durable
    client = server.session()
    worker = server.worker(b"f")
    client.request(P.SUBMIT_JOB_BG, b"f", b"", b"x")
    worker.receive_data(encode_request(P.GRAB_JOB) + encode_request(P.ECHO_REQ, b"after"))
    server.turns.end()
    assert worker.writes == []  # the job is not acknowledged yet: nor is it handed out
    store.commit()
    server.turns.end()
    assert worker.replies() == [("JOB_ASSIGN", b"H:t:1", b"f", b"x"), ("ECHO_RES", b"after")]


# -- the admin lines, bad input, the end of a connection


def test_admin_lines_share_the_port(server: Server) -> None:
    worker = server.worker(b"f")
    admin = server.session()
    admin.receive_data(b"status\r\n")
    admin.request(P.ECHO_REQ, b"binary")
    admin.receive_data(b"prioritystatus\n")
    server.turns.end()
    text = b"".join(piece for write in admin.writes for piece in write)
    echo = encode_request(P.ECHO_RES, b"binary").replace(REQ, RES, 1)
    assert text == b"f\t0\t0\t1\n.\n" + echo + b"f\t0\t0\t0\t1\n.\n"
    assert worker.registered_functions() == (b"f",)  # what admin `workers` lists for its connection


def test_a_stream_that_cannot_be_parsed_is_answered_and_closed(server: Server) -> None:
    client = server.session()
    client.receive_data(b"\x00XYZ" + bytes(8))
    assert client.closed
    assert client.replies() == [("ERROR", b"INVALID_MAGIC", b"Invalid magic in packet header")]


def test_the_other_sides_magic_is_refused_and_the_stream_goes_on(server: Server) -> None:
    client = server.session()
    client.receive_data(encode_request(P.ECHO_REQ, b"x").replace(REQ, RES, 1) + encode_request(P.ECHO_REQ, b"y"))
    server.turns.end()
    assert client.replies() == [("ERROR", b"INVALID_MAGIC", b"Request magic expected"), ("ECHO_RES", b"y")]


def test_a_shared_decoder_is_left_behind_with_a_partial_packet(server: Server) -> None:
    shared = Decoder(REQ)
    shared.shared = True
    one = server.session(decoder=shared)
    two = server.session(decoder=shared)
    packet = encode_request(P.ECHO_REQ, b"split")
    one.receive_data(packet[:5])
    assert one.decoder is not shared and two.decoder is shared and not shared.pending
    two.request(P.ECHO_REQ, b"two")
    one.receive_data(packet[5:])
    server.turns.end()
    assert one.replies() == [("ECHO_RES", b"split")]
    assert two.replies() == [("ECHO_RES", b"two")]


def test_nothing_is_written_after_the_connection_is_lost(server: Server) -> None:
    client = server.session()
    worker = server.worker(b"f")
    client.request(P.SUBMIT_JOB, b"f", b"", b"x")
    worker.request(P.GRAB_JOB)
    client.connection_lost()
    worker.connection_lost()
    server.turns.end(ACK_WAIT_TURNS + 1)
    assert client.writes == [] and worker.writes == []
    assert server.scheduler.totals() == (0, 0, 0, 0, 0)  # the job nobody waits for is gone


def test_a_half_closed_worker_hears_no_job_before_the_close(server: Server) -> None:
    worker = server.worker(b"f")
    worker.request(P.GRAB_JOB)  # held
    worker.drop_worker()  # what the Twisted adapter does at a half-close, then close()
    worker.close()
    assert worker.replies() == [("NO_JOB",)]
    assert server.scheduler.totals().workers == 0
