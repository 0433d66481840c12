"""What the server's per-turn batching may change on the wire, and what it must not: replies stay in
request order per connection, a grab that finds nothing can be answered with a job submitted in the same
read, and an acknowledgement waiting for its job's result is never held back for long."""

from __future__ import annotations

import os
import socket
import time

import pytest

from protocols.binary.codec import encode_request
from protocols.binary.packets import Packet
from tests.integration.rawclient import Raw, submit, worker

OURS = "GG_TEST_SERVER" not in os.environ


def ours_only(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not OURS, reason=reason)


def test_replies_behind_a_held_grab_keep_their_order(server) -> None:
    with worker(server.port, b"held") as w:
        w.send_raw(encode_request(Packet.GRAB_JOB) + encode_request(Packet.ECHO_REQ, b"after"))
        w.expect(Packet.NO_JOB)
        assert w.expect(Packet.ECHO_RES) == [b"after"]


@ours_only("gearmand answers every empty grab with NO_JOB at once")
def test_a_job_submitted_in_the_same_read_answers_the_grab(server) -> None:
    with Raw(server.port) as both:  # a worker and a client on one connection, as gearmand allows
        both.send(Packet.CAN_DO, b"same")
        both.send(Packet.ECHO_REQ, b"sync")
        both.expect(Packet.ECHO_RES)
        both.send_raw(encode_request(Packet.GRAB_JOB) + encode_request(Packet.SUBMIT_JOB, b"same", b"", b"x"))
        handle, name, data = both.expect(Packet.JOB_ASSIGN)  # the grab's answer, in its place
        assert (name, data) == (b"same", b"x")
        assert both.expect(Packet.JOB_CREATED) == [handle]
        both.send(Packet.WORK_COMPLETE, handle, b"done")
        assert both.expect(Packet.WORK_COMPLETE) == [handle, b"done"]


def test_an_acknowledgement_without_a_result_is_not_held_back(server) -> None:
    with Raw(server.port) as client:
        started = time.monotonic()
        client.send(Packet.SUBMIT_JOB, b"nobody_serves_this", b"", b"x")
        client.expect(Packet.JOB_CREATED, timeout=2)
        assert time.monotonic() - started < 0.5


def test_every_acknowledgement_comes_before_its_result(server) -> None:
    count = 200
    with Raw(server.port) as client, worker(server.port, b"order") as w:
        client.send_raw(b"".join(encode_request(Packet.SUBMIT_JOB, b"order", b"", b"%d" % i) for i in range(count)))
        done_by_worker = 0
        while done_by_worker < count:  # the standard worker cycle: the submits may not all be in yet
            w.send(Packet.GRAB_JOB)
            ptype, args = w.recv()
            if ptype == Packet.NO_JOB:
                w.send(Packet.PRE_SLEEP)
                w.expect(Packet.NOOP, timeout=5)
                continue
            assert ptype == Packet.JOB_ASSIGN, ptype
            handle, _name, data = args
            w.send(Packet.WORK_COMPLETE, handle, data)
            done_by_worker += 1
        created: set[bytes] = set()
        done = 0
        while done < count:
            ptype, args = client.recv()
            if ptype == Packet.JOB_CREATED:
                created.add(args[0])
            else:
                assert ptype == Packet.WORK_COMPLETE and args[0] in created, (ptype, args)
                done += 1


def test_sleeping_worker_is_woken_for_a_job_nobody_grabbed(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"wake") as w:
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.NO_JOB)
        w.send(Packet.PRE_SLEEP)
        assert w.nothing_within(0.05)
        handle = submit(client, b"wake", b"x")
        w.expect(Packet.NOOP, timeout=2)
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN)[0] == handle


@ours_only("gearmand 1.1.20 closes at once, without the NO_JOB or an ERROR")
def test_a_held_grab_is_answered_before_the_error_that_closes_its_connection(server) -> None:
    with worker(server.port, b"dying") as w:
        w.send(Packet.ECHO_REQ, b"sync")
        w.expect(Packet.ECHO_RES)
        w.send_raw(encode_request(Packet.GRAB_JOB) + b"\x00BAD" + b"\x00" * 8)
        w.expect(Packet.NO_JOB)
        assert w.expect(Packet.ERROR)[0] == b"INVALID_MAGIC"
        with pytest.raises(EOFError):
            w.recv(timeout=5)


@ours_only("gearmand 1.1.20 closes a half-closed connection without answering")
def test_a_client_that_half_closes_still_gets_its_acknowledgement(server) -> None:
    for _ in range(5):
        with Raw(server.port) as client:
            client.send(Packet.SUBMIT_JOB, b"half_closed", b"", b"x")
            client.sock.shutdown(socket.SHUT_WR)
            client.expect(Packet.JOB_CREATED, timeout=5)
            with pytest.raises(EOFError):
                client.recv(timeout=5)
    with Raw(server.port) as admin:  # the abandoned jobs were dropped with their connections
        assert b"half_closed\t0\t0\t0" in admin.admin("status")
