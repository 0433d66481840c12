"""Packet-level behaviour over real sockets: every request type of gearmand 1.1.20 and its reply."""

from __future__ import annotations

import os
import time

import pytest

from protocols.binary.packets import ARG_COUNT, Packet
from tests.integration.rawclient import Raw, submit, worker

OURS = "GG_TEST_SERVER" not in os.environ
ours_only = pytest.mark.skipif(not OURS, reason="behaviour where we deliberately differ from gearmand 1.1.20")


def test_foreground_job_every_result_packet_in_order(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"rev") as w:
        handle = submit(client, b"rev", b"hello")
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN) == [handle, b"rev", b"hello"]
        w.send(Packet.WORK_DATA, handle, b"d\x00ata")
        w.send(Packet.WORK_WARNING, handle, b"warn")
        w.send(Packet.WORK_STATUS, handle, b"1", b"3")
        w.send(Packet.WORK_COMPLETE, handle, b"olleh")
        assert client.expect(Packet.WORK_DATA) == [handle, b"d\x00ata"]
        assert client.expect(Packet.WORK_WARNING) == [handle, b"warn"]
        assert client.expect(Packet.WORK_STATUS) == [handle, b"1", b"3"]
        assert client.expect(Packet.WORK_COMPLETE) == [handle, b"olleh"]
        # the job is gone: a second result for it is refused with gearmand's text
        w.send(Packet.WORK_COMPLETE, handle, b"again")
        assert w.expect(Packet.ERROR) == [b"JOB_NOT_FOUND", b"Job given in work result not found"]
        w.send(Packet.WORK_DATA, handle, b"x")
        assert w.expect(Packet.ERROR) == [b"JOB_NOT_FOUND", b"Job does not exist on server"]
        w.send(Packet.WORK_EXCEPTION, handle, b"x")
        assert w.expect(Packet.ERROR) == [
            b"JOB_NOT_FOUND",
            b"An exception was received for a job that does not exist",
        ]


def test_worker_cycle_noop_and_no_job(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"cyc") as w:
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.NO_JOB)
        w.send(Packet.PRE_SLEEP)
        assert w.nothing_within(0.1)
        handle = submit(client, b"cyc", b"x", ptype=Packet.SUBMIT_JOB_BG)
        w.expect(Packet.NOOP, timeout=5)
        w.send(Packet.GRAB_JOB_UNIQ)
        assert w.expect(Packet.JOB_ASSIGN_UNIQ) == [handle, b"cyc", b"", b"x"]
        w.send(Packet.WORK_COMPLETE, handle, b"")
        # PRE_SLEEP while work waits: an immediate NOOP
        submit(client, b"cyc", b"y", ptype=Packet.SUBMIT_JOB_BG)
        w.send(Packet.PRE_SLEEP)
        w.expect(Packet.NOOP, timeout=5)


def test_grab_job_all_reduce_jobs_and_uniq_fallback(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"map") as w:
        client.send(Packet.SUBMIT_REDUCE_JOB, b"map", b"ru", b"reducer", b"aggregator", b"payload")
        h1 = client.expect(Packet.JOB_CREATED)[0]
        plain = submit(client, b"map", b"plain", unique=b"pu")
        w.send(Packet.GRAB_JOB_ALL)
        assert w.expect(Packet.JOB_ASSIGN_ALL) == [h1, b"map", b"ru", b"reducer", b"payload"]
        w.send(Packet.GRAB_JOB_ALL)
        assert w.expect(Packet.JOB_ASSIGN_UNIQ) == [plain, b"map", b"pu", b"plain"]
        client.send(Packet.SUBMIT_REDUCE_JOB_BACKGROUND, b"map", b"rb", b"red", b"agg", b"bg")
        client.expect(Packet.JOB_CREATED)
        w.send(Packet.GRAB_JOB)  # a plain GRAB_JOB gets the job without its reducer
        assert w.expect(Packet.JOB_ASSIGN)[1:] == [b"map", b"bg"]


def test_status_by_handle_and_by_unique(server) -> None:
    with Raw(server.port) as client, Raw(server.port) as other, worker(server.port, b"st") as w:
        handle = submit(client, b"st", b"x", unique=b"uniq-1")
        assert other.call(Packet.GET_STATUS, handle) == (Packet.STATUS_RES, [handle, b"1", b"0", b"0", b"0"])
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        w.send(Packet.WORK_STATUS, handle, b"7", b"9")
        client.expect(Packet.WORK_STATUS)
        assert other.call(Packet.GET_STATUS, handle) == (Packet.STATUS_RES, [handle, b"1", b"1", b"7", b"9"])
        assert other.call(Packet.GET_STATUS_UNIQUE, b"uniq-1") == (
            Packet.STATUS_RES_UNIQUE,
            [b"uniq-1", b"1", b"1", b"7", b"9", b"1"],
        )
        w.send(Packet.WORK_COMPLETE, handle, b"")
        client.expect(Packet.WORK_COMPLETE)
        assert other.call(Packet.GET_STATUS, handle) == (Packet.STATUS_RES, [handle, b"0", b"0", b"0", b"0"])
        assert other.call(Packet.GET_STATUS_UNIQUE, b"nope") == (
            Packet.STATUS_RES_UNIQUE,
            [b"nope", b"0", b"0", b"0", b"0", b"0"],
        )


def test_echo_option_and_client_id(server) -> None:
    with Raw(server.port) as c:
        assert c.call(Packet.ECHO_REQ, b"a\x00b\xff") == (Packet.ECHO_RES, [b"a\x00b\xff"])
        assert c.call(Packet.OPTION_REQ, b"EXCEPTIONS") == (Packet.OPTION_RES, [b"EXCEPTIONS"])
        assert c.call(Packet.OPTION_REQ, b"bogus") == (
            Packet.ERROR,
            [b"UNKNOWN_OPTION", b"Server does not recognize given option"],
        )
        c.send(Packet.SET_CLIENT_ID, b"my worker 1")
        c.send(Packet.CAN_DO, b"fa")
        c.send(Packet.CAN_DO, b"fb")
        workers = c.admin("workers").decode()
        assert any(line.endswith(" my worker 1 : fb fa") for line in workers.splitlines()), workers


def test_workers_lists_every_registration_newest_first_as_gearmand(server) -> None:
    """gearmand keeps one entry per CAN_DO: a function registered again after another one is listed twice, in
    its places; CANT_DO drops every entry of its name, and `status` counts registrations."""

    def registered(c: Raw) -> str:
        line = next(line for line in c.admin("workers").decode().splitlines() if " repeat-test :" in line)
        return line.split(" : ", 1)[1] if " : " in line else ""

    def status_workers(c: Raw, name: str) -> int:
        lines = c.admin("status").decode().splitlines()
        return int(next(line for line in lines if line.startswith(name + "\t")).split("\t")[3])

    with Raw(server.port) as c:
        c.send(Packet.SET_CLIENT_ID, b"repeat-test")
        for name in (b"resize", b"thumb", b"resize"):
            c.send(Packet.CAN_DO, name)
        assert registered(c) == "resize thumb resize"
        assert status_workers(c, "resize") == 2
        c.send(Packet.CAN_DO_TIMEOUT, b"crop", b"5000")
        c.send(Packet.CAN_DO, b"thumb")
        assert registered(c) == "thumb crop resize thumb resize"
        c.send(Packet.CANT_DO, b"thumb")
        assert registered(c) == "crop resize resize"
        c.send(Packet.CANT_DO, b"resize")
        c.send(Packet.CAN_DO, b"resize")
        assert registered(c) == "resize crop"
        assert status_workers(c, "resize") == 1
        c.send(Packet.RESET_ABILITIES)
        assert registered(c) == ""


def test_connections_interleaving_partial_packets_and_a_fatal_one_do_not_disturb_each_other(server) -> None:
    """Connections share one decoder while they send whole packets; one that leaves part of a packet behind,
    or sends garbage, keeps that to itself (the server decodes every connection's stream on its own)."""
    from protocols.binary.codec import encode_request

    with Raw(server.port) as a, Raw(server.port) as b, Raw(server.port) as bad, Raw(server.port) as c:
        first, second = encode_request(Packet.ECHO_REQ, b"from a" * 100), encode_request(Packet.ECHO_REQ, b"b")
        a.send_raw(first[:7])  # a header cut short
        b.send_raw(second[:15])  # a header and part of a body
        assert c.call(Packet.ECHO_REQ, b"whole") == (Packet.ECHO_RES, [b"whole"])
        bad.send_raw(b"\x00XXX" + bytes(8))  # a fatal error for this stream only
        try:
            answer = bad.recv()[0]
        except EOFError:  # gearmand closes without a word
            answer = None
        assert answer == Packet.ERROR or not OURS
        a.send_raw(first[7:300])
        b.send_raw(second[15:])
        assert b.recv() == (Packet.ECHO_RES, [b"b"])
        a.send_raw(first[300:])
        assert a.recv() == (Packet.ECHO_RES, [b"from a" * 100])
        assert c.call(Packet.ECHO_REQ, b"still") == (Packet.ECHO_RES, [b"still"])


def test_text_and_binary_mix_on_one_connection(server) -> None:
    with Raw(server.port) as c:
        c.send_raw(b"version\r\n")
        assert c.sock.recv(100).startswith(b"OK ")
        assert c.call(Packet.ECHO_REQ, b"x") == (Packet.ECHO_RES, [b"x"])
        assert c.admin("status").endswith(b".\n")


def test_not_expected_packets_keep_the_connection(server) -> None:
    with Raw(server.port) as c:
        for ptype in (
            5,
            Packet.NOOP,
            Packet.JOB_CREATED,
            Packet.NO_JOB,
            Packet.ALL_YOURS,
            Packet.ECHO_RES,
            Packet.STATUS_RES,
            Packet.JOB_ASSIGN_ALL,
        ):
            args = [b""] * ARG_COUNT[ptype]  # well-formed (gearmand's parser waits for missing separators)
            assert c.call(ptype, *args) == (Packet.ERROR, [b"INVALID_COMMAND", b"Command not expected"]), ptype
        c.send(Packet.SUBMIT_JOB_SCHED, b"f", b"", b"1", b"2", b"3", b"4", b"5", b"data")
        assert c.expect(Packet.ERROR) == [b"INVALID_COMMAND", b"Command not expected"]
        assert c.call(Packet.ECHO_REQ, b"alive") == (Packet.ECHO_RES, [b"alive"])


def test_priority_submissions_and_global_order(server) -> None:
    with Raw(server.port) as client:
        handles = {}
        for ptype, data in [
            (Packet.SUBMIT_JOB_LOW_BG, b"low"),
            (Packet.SUBMIT_JOB_BG, b"normal"),
            (Packet.SUBMIT_JOB_HIGH_BG, b"high"),
        ]:
            handles[data] = submit(client, b"prio", data, ptype=ptype)
        assert server.admin("prioritystatus").splitlines()[0] == "prio\t1\t1\t1\t0" or "prio\t1\t1\t1\t0" in (
            server.admin("prioritystatus")
        )
        fg_low = submit(client, b"prio", b"fg-low", ptype=Packet.SUBMIT_JOB_LOW)
        fg_high = submit(client, b"prio", b"fg-high", ptype=Packet.SUBMIT_JOB_HIGH)
        with worker(server.port, b"prio") as w:
            got = []
            for _ in range(5):
                w.send(Packet.GRAB_JOB)
                handle, _, data = w.expect(Packet.JOB_ASSIGN)
                got.append(data)
                w.send(Packet.WORK_COMPLETE, handle, data)
            assert got == [b"high", b"fg-high", b"normal", b"low", b"fg-low"]
        assert client.expect(Packet.WORK_COMPLETE) == [fg_high, b"fg-high"]
        assert client.expect(Packet.WORK_COMPLETE) == [fg_low, b"fg-low"]


def test_maxqueue_gives_queue_error(server) -> None:
    with Raw(server.port) as c:
        assert c.admin("create function mq") == b"OK\r\n"
        assert c.admin("maxqueue mq 2") == b"OK\r\n"
        submit(c, b"mq", b"1", ptype=Packet.SUBMIT_JOB_BG)
        submit(c, b"mq", b"2", unique=b"k", ptype=Packet.SUBMIT_JOB_BG)
        c.send(Packet.SUBMIT_JOB_BG, b"mq", b"", b"3")
        assert c.expect(Packet.ERROR) == [b"QUEUE_ERROR", b"Job queue is full"]
        submit(c, b"mq", b"dup", unique=b"k", ptype=Packet.SUBMIT_JOB_BG)  # coalesced: no limit check


def test_unique_too_large_and_coalesced_handles(server) -> None:
    with Raw(server.port) as a, Raw(server.port) as b:
        a.send(Packet.SUBMIT_JOB, b"u", b"x" * 65, b"data")
        assert a.expect(Packet.ERROR) == [b"ARGUMENT_TOO_LARGE", b"Unique value too large"]
        h1 = submit(a, b"u", b"d1", unique=b"same")
        h2 = submit(b, b"u", b"d2", unique=b"same")
        assert h1 == h2
        bg = submit(b, b"u", b"d3", unique=b"same", ptype=Packet.SUBMIT_JOB_BG)
        assert bg == h1


def test_worker_disconnect_requeues_to_another_worker(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"dis") as w2:
        handle = submit(client, b"dis", b"payload")
        w1 = worker(server.port, b"dis")
        w1.send(Packet.GRAB_JOB)
        assert w1.expect(Packet.JOB_ASSIGN)[0] == handle
        w2.send(Packet.GRAB_JOB)
        w2.expect(Packet.NO_JOB)
        w2.send(Packet.PRE_SLEEP)
        w1.close()
        w2.expect(Packet.NOOP, timeout=5)
        w2.send(Packet.GRAB_JOB)
        assert w2.expect(Packet.JOB_ASSIGN) == [handle, b"dis", b"payload"]
        w2.send(Packet.WORK_COMPLETE, handle, b"done")
        assert client.expect(Packet.WORK_COMPLETE) == [handle, b"done"]
        assert "dis\t0\t0\t1" in server.admin("status")


@ours_only
def test_job_retries_limit_fails_the_client(gearmand) -> None:
    server = gearmand("-j", "2")
    with Raw(server.port) as client:
        handle = submit(client, b"crashy", b"x")
        for _ in range(2):
            w = worker(server.port, b"crashy")
            w.send(Packet.GRAB_JOB)
            assert w.expect(Packet.JOB_ASSIGN)[0] == handle
            w.close()
        assert client.expect(Packet.WORK_FAIL, timeout=5) == [handle]


@ours_only
def test_can_do_timeout_requeues_the_job(server) -> None:
    with Raw(server.port) as client, Raw(server.port) as slow:
        slow.send(Packet.CAN_DO_TIMEOUT, b"slowfn", b"300")
        handle = submit(client, b"slowfn", b"x")
        slow.send(Packet.GRAB_JOB)
        slow.expect(Packet.JOB_ASSIGN)
        with worker(server.port, b"slowfn") as fast:
            fast.send(Packet.PRE_SLEEP)
            fast.expect(Packet.NOOP, timeout=5)  # woken when the timeout requeues the job
            fast.send(Packet.GRAB_JOB)
            assert fast.expect(Packet.JOB_ASSIGN)[0] == handle
            slow.send(Packet.WORK_COMPLETE, handle, b"late")
            assert slow.expect(Packet.ERROR)[0] == b"JOB_NOT_FOUND"
            fast.send(Packet.WORK_COMPLETE, handle, b"ok")
            assert client.expect(Packet.WORK_COMPLETE) == [handle, b"ok"]


@ours_only
def test_epoch_job_wakes_a_sleeping_worker_at_its_time(server) -> None:
    with Raw(server.port) as client, worker(server.port, b"ep") as w:
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.NO_JOB)
        w.send(Packet.PRE_SLEEP)
        when = int(time.time()) + 2
        client.send(Packet.SUBMIT_JOB_EPOCH, b"ep", b"", str(when).encode(), b"later")
        handle = client.expect(Packet.JOB_CREATED)[0]
        assert "ep\t0\t1\t0\t1" in server.admin("prioritystatus")
        w.expect(Packet.NOOP, timeout=5)
        assert time.time() >= when
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN) == [handle, b"ep", b"later"]


@ours_only
def test_exception_without_option_is_a_bare_work_fail(server) -> None:
    with Raw(server.port) as plain, Raw(server.port) as opted, worker(server.port, b"exc") as w:
        assert opted.call(Packet.OPTION_REQ, b"exceptions")[0] == Packet.OPTION_RES
        handle = submit(plain, b"exc", b"x", unique=b"e1")
        assert submit(opted, b"exc", b"x", unique=b"e1") == handle
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        w.send(Packet.WORK_EXCEPTION, handle, b"boom")
        assert plain.expect(Packet.WORK_FAIL) == [handle]  # no trailing NUL (gearmand adds one)
        assert opted.expect(Packet.WORK_EXCEPTION) == [handle, b"boom"]


@ours_only
def test_abandoned_foreground_job_is_dropped(server) -> None:
    client = Raw(server.port)
    submit(client, b"nobody-serves", b"x")
    assert "nobody-serves\t1\t0\t0" in server.admin("status")
    client.close()
    deadline = time.monotonic() + 5
    while "nobody-serves\t0\t0\t0" not in server.admin("status"):
        assert time.monotonic() < deadline, server.admin("status")
        time.sleep(0.01)


@ours_only
def test_admin_cancel_really_removes_and_fails_clients(server) -> None:
    with Raw(server.port) as client:
        handle = submit(client, b"cx", b"x")
        assert server.admin(f"cancel job {handle.decode()}") == "OK\r\n"
        assert client.expect(Packet.WORK_FAIL) == [handle]
        assert handle.decode() not in server.admin("show jobs")
        assert "cx\t0\t0\t0" in server.admin("status")
        assert server.admin(f"cancel job {handle.decode()}") == "ERR UNKNOWN_JOB\r\n"


@ours_only
def test_drop_function_with_queued_jobs_leaves_nothing_dangling(server) -> None:
    with Raw(server.port) as client:
        submit(client, b"dropme", b"x", ptype=Packet.SUBMIT_JOB_BG)
        assert server.admin("drop function dropme") == "OK\r\n"
        assert "dropme" not in server.admin("status")
        assert server.admin("show jobs") == ".\n"
        with worker(server.port, b"dropme") as w:
            w.send(Packet.GRAB_JOB)
            w.expect(Packet.NO_JOB)


@ours_only
def test_cancelled_running_job_is_not_joined_by_new_submits(server) -> None:
    with Raw(server.port) as first, Raw(server.port) as again, worker(server.port, b"cj") as w:
        handle = submit(first, b"cj", b"x", unique=b"U")
        w.send(Packet.GRAB_JOB)
        w.expect(Packet.JOB_ASSIGN)
        assert server.admin(f"cancel job {handle.decode()}") == "OK\r\n"
        assert first.expect(Packet.WORK_FAIL) == [handle]
        fresh = submit(again, b"cj", b"y", unique=b"U")
        assert fresh != handle  # a new job, not the cancelled one
        w.send(Packet.WORK_COMPLETE, handle, b"discarded")
        w.send(Packet.GRAB_JOB)
        assert w.expect(Packet.JOB_ASSIGN)[:1] == [fresh]
        w.send(Packet.WORK_COMPLETE, fresh, b"done")
        assert again.expect(Packet.WORK_COMPLETE) == [fresh, b"done"]
