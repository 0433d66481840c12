"""The client's sans-IO session, driven with plain bytes: what it sends, how it reads replies, fail-over."""

from __future__ import annotations

import zlib

import pytest

from gearman_gateway.clientlib.client_session import ClientSession, Priority, Task, TaskState
from gearman_gateway.clientlib.errors import GearmanConnectionError, JobException, JobFailed, ServerError
from gearman_gateway.clientlib.links import Address, Backoff, LinkState
from protocols.binary.codec import Decoder, encode
from protocols.binary.packets import REQ, Packet


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def sent(session: ClientSession) -> dict[int, list[tuple[int, list[bytes]]]]:
    """Packets each connected link would write now, decoded, by link index."""
    return {link.index: Decoder(expect=REQ).receive_data(data) for link, data in session.outputs()}


def make(servers: int = 1, **options: object) -> tuple[ClientSession, Clock]:
    session = ClientSession(backoff=Backoff(initial=1.0, maximum=8.0, jitter=0), **options)  # type: ignore[arg-type]
    clock = session.clock = Clock()  # type: ignore[assignment]
    for i in range(servers):
        session.add_server(Address("127.0.0.1", 4730 + i))
    return session, clock


def connect_all(session: ClientSession) -> None:
    for link in session.links_to_connect():
        session.connection_made(link)


def recorder(session: ClientSession) -> list[tuple[str, str, bytes]]:
    events: list[tuple[str, str, bytes]] = []
    for name in ("created", "data", "warning", "status", "complete", "exception", "fail"):
        session.callbacks[name] = lambda task, name=name: events.append((name, task.state.value, task.data))
    return events


def job(session: ClientSession, data: bytes = b"payload", unique: str | None = "u1", **kw: object) -> Task:
    return session.new_job("fn", data, unique, kw.get("priority", Priority.NORMAL), kw.get("bg", False))  # type: ignore[arg-type]


def running(*tasks: Task, session: ClientSession) -> None:
    """Submit ``tasks`` and connect, so their requests are on the wire."""
    for task in tasks:
        session.submit(task)
    connect_all(session)


def one_task(servers: int = 1, **kw: object) -> tuple[ClientSession, Task, list[tuple[str, str, bytes]]]:
    """A session with a recorder, and one submitted, connected task."""
    session, _ = make(servers)
    events = recorder(session)
    task = job(session, **kw)  # type: ignore[arg-type]
    running(task, session=session)
    return session, task, events


def reply(session: ClientSession, index: int, ptype: int, *args: bytes) -> None:
    assert session.data_received(session.links[index], encode(ptype, *args))


@pytest.mark.parametrize(
    ("priority", "background", "ptype"),
    [
        (Priority.NORMAL, False, Packet.SUBMIT_JOB),
        (Priority.HIGH, False, Packet.SUBMIT_JOB_HIGH),
        (Priority.LOW, False, Packet.SUBMIT_JOB_LOW),
        (Priority.NORMAL, True, Packet.SUBMIT_JOB_BG),
        (Priority.HIGH, True, Packet.SUBMIT_JOB_HIGH_BG),
        (Priority.LOW, True, Packet.SUBMIT_JOB_LOW_BG),
    ],
)
def test_submit_packets_go_out_once_connected(priority: Priority, background: bool, ptype: int) -> None:
    session, _ = make()
    session.submit(session.new_job("fn", b"a\x00b", "key", priority, background))
    assert sent(session) == {}  # nothing can be written before the connection exists
    [link] = session.links_to_connect()
    assert link.state is LinkState.CONNECTING and session.links_to_connect() == []
    session.connection_made(link)
    assert sent(session) == {0: [(ptype, [b"fn", b"key", b"a\x00b"])]}


def test_foreground_events_reach_callbacks_in_order() -> None:
    session, task, events = one_task()
    reply(session, 0, Packet.JOB_CREATED, b"H:x:1")
    assert task.handle == "H:x:1" and task.state is TaskState.CREATED and not task.done
    reply(session, 0, Packet.WORK_DATA, b"H:x:1", b"chunk\x001")
    reply(session, 0, Packet.WORK_WARNING, b"H:x:1", b"careful")
    reply(session, 0, Packet.WORK_STATUS, b"H:x:1", b"2", b"5")
    assert (task.numerator, task.denominator) == (2, 5)
    reply(session, 0, Packet.WORK_COMPLETE, b"H:x:1", b"result")
    assert events == [
        ("created", "created", b""),
        ("data", "created", b"chunk\x001"),
        ("warning", "created", b"careful"),
        ("status", "created", b"careful"),
        ("complete", "complete", b"result"),
    ]
    assert task.done and task.result == b"result" and task.chunks == [b"chunk\x001"] and task.warnings == [b"careful"]
    assert session.active == {}
    task.raise_for_state()  # nothing to raise


def test_background_task_is_done_at_job_created() -> None:
    session, task, events = one_task(bg=True)
    reply(session, 0, Packet.JOB_CREATED, b"H:x:9")
    assert task.done and task.state is TaskState.CREATED and task.handle == "H:x:9"
    assert [e[0] for e in events] == ["created"]
    assert session.links[0].running == {}  # later WORK_* for it would not be ours


def test_fail_with_gearmands_trailing_nul_ends_the_task() -> None:
    session, task, events = one_task()
    reply(session, 0, Packet.JOB_CREATED, b"H:x:2")
    reply(session, 0, Packet.WORK_FAIL, b"H:x:2\x00")  # gearmand 1.1's WORK_FAIL for an exception
    assert task.state is TaskState.FAILED and task.done
    assert [e[0] for e in events] == ["created", "fail"]
    with pytest.raises(JobFailed):
        task.raise_for_state()


def test_exception_option_and_exception_then_fail_callbacks() -> None:
    session, _ = make(exceptions=True, client_id=b"me")
    events = recorder(session)
    task = job(session)
    session.submit(task)
    connect_all(session)
    assert [p for p, _ in sent(session)[0]] == [Packet.OPTION_REQ, Packet.SET_CLIENT_ID, Packet.SUBMIT_JOB]
    reply(session, 0, Packet.OPTION_RES, b"exceptions")  # answers the option, not the submit
    reply(session, 0, Packet.JOB_CREATED, b"H:x:3")
    reply(session, 0, Packet.WORK_EXCEPTION, b"H:x:3", b"ValueError: no")
    assert task.state is TaskState.EXCEPTION and task.exception == b"ValueError: no"
    assert [e[0] for e in events] == ["created", "exception", "fail"]
    with pytest.raises(JobException) as caught:
        task.raise_for_state()
    assert caught.value.data == b"ValueError: no"


def test_replies_are_matched_to_requests_in_order() -> None:
    session, _ = make()
    first, second = job(session, unique="a"), job(session, unique="b")
    running(first, second, session=session)
    reply(session, 0, Packet.ERROR, b"QUEUE_ERROR", b"Job queue is full")
    reply(session, 0, Packet.JOB_CREATED, b"H:x:4")
    assert first.state is TaskState.ERROR and isinstance(first.error, ServerError)
    assert first.error.code == "QUEUE_ERROR"
    assert second.handle == "H:x:4" and second.state is TaskState.CREATED


def test_input_split_at_every_byte_is_parsed_the_same() -> None:
    session, task, _ = one_task()
    stream = encode(Packet.JOB_CREATED, b"H:x:5") + encode(Packet.WORK_COMPLETE, b"H:x:5", b"\x00" * 3 + b"end")
    for i in range(len(stream)):
        assert session.data_received(session.links[0], stream[i : i + 1])
    assert task.result == b"\x00\x00\x00end"


def test_coalesced_submits_share_a_handle_and_all_finish() -> None:
    session, _ = make()
    a, b = job(session, b"one", unique="same"), job(session, b"two", unique="same")
    running(a, b, session=session)
    reply(session, 0, Packet.JOB_CREATED, b"H:x:6")
    reply(session, 0, Packet.JOB_CREATED, b"H:x:6")
    for _ in range(2):  # servers send each event once per attached submit, so twice on this connection
        reply(session, 0, Packet.WORK_DATA, b"H:x:6", b"chunk")
    for _ in range(2):
        reply(session, 0, Packet.WORK_STATUS, b"H:x:6", b"1", b"2")
    reply(session, 0, Packet.WORK_COMPLETE, b"H:x:6", b"shared")
    assert a.result == b.result == b"shared" and a.done and b.done
    assert a.chunks == b.chunks == [b"chunk"] and a.numerator == b.numerator == 1
    reply(session, 0, Packet.WORK_COMPLETE, b"H:x:6", b"shared")  # the second copy finds nothing to do


def test_server_is_chosen_by_hashing_the_unique() -> None:
    one, _ = make(3)
    two, _ = make(3)
    chosen = []
    for i in range(60):
        t1, t2 = job(one, unique=f"key-{i}"), job(two, unique=f"key-{i}")
        one.submit(t1)
        two.submit(t2)
        assert t1.server == t2.server  # every client sends a unique to the same server: coalescing works
        assert t1.server == one.links[zlib.crc32(f"key-{i}".encode()) % 3].address
        chosen.append(t1.server)
    assert len(set(chosen)) == 3


def test_connect_failure_moves_the_task_to_the_next_server() -> None:
    session, clock = make(2)
    task = job(session)
    session.submit(task)
    first = task._link
    assert first is not None
    [link] = session.links_to_connect()
    session.connect_failed(link, ConnectionRefusedError(111, "Connection refused"))
    assert task._link is not first and not task.done
    connect_all(session)
    assert sent(session) == {task._link.index: [(Packet.SUBMIT_JOB, [b"fn", b"u1", b"payload"])]}
    # the failed server rests: a new task hashing to it goes to the other one meanwhile
    assert first.retry_at == clock.now + 1.0


def test_lost_connection_resubmits_a_running_job_elsewhere_with_the_same_unique() -> None:
    session, task, events = one_task(2, unique="keep-me")
    dead = task._link
    assert dead is not None
    reply(session, dead.index, Packet.JOB_CREATED, b"H:dead:1")
    sent(session)  # drain
    session.connection_lost(dead, ConnectionResetError())
    connect_all(session)
    alive = task._link
    assert alive is not None and alive is not dead
    assert sent(session) == {alive.index: [(Packet.SUBMIT_JOB, [b"fn", b"keep-me", b"payload"])]}
    reply(session, alive.index, Packet.JOB_CREATED, b"H:alive:1")
    reply(session, alive.index, Packet.WORK_COMPLETE, b"H:alive:1", b"ok")
    assert task.result == b"ok" and task.handle == "H:alive:1"
    assert [e[0] for e in events] == ["created", "created", "complete"]


def test_every_server_down_ends_the_task_with_a_connection_error() -> None:
    session, _ = make(2)
    events = recorder(session)
    task = job(session)
    session.submit(task)
    for _ in range(2):
        for link in session.links_to_connect():
            session.connect_failed(link, ConnectionRefusedError(111, "Connection refused"))
    assert task.state is TaskState.ERROR and isinstance(task.error, GearmanConnectionError)
    assert "Connection refused" in str(task.error)
    assert [e[0] for e in events] == ["fail"]


def test_a_resting_server_is_retried_when_it_is_the_only_one_left() -> None:
    session, clock = make(1)
    failed = job(session, unique="x")
    session.submit(failed)
    [link] = session.links_to_connect()
    session.connect_failed(link, OSError("down"))
    assert failed.state is TaskState.ERROR
    assert session.links_to_connect() == [] and session.next_wakeup() is None  # nothing wants it now
    retry = job(session, unique="y")
    session.submit(retry)  # the only server rests, but a new task tries it rather than failing at once
    assert session.links_to_connect() == [link]


def test_status_query_asks_the_origin_server_or_each_in_turn() -> None:
    session, task, _ = one_task(2, bg=True, unique="k")
    origin = task._link
    assert origin is not None
    reply(session, origin.index, Packet.JOB_CREATED, b"H:o:1")
    sent(session)  # drain
    known = session.new_status("H:o:1")
    session.submit(known)
    assert known._link is origin
    assert sent(session) == {origin.index: [(Packet.GET_STATUS, [b"H:o:1"])]}
    reply(session, origin.index, Packet.STATUS_RES, b"H:o:1", b"1", b"1", b"3", b"4")
    assert (known.known, known.running, known.numerator, known.denominator) == (True, True, 3, 4)

    stranger = session.new_status("H:elsewhere:7")
    session.submit(stranger)
    connect_all(session)
    first = stranger._link
    assert first is session.links[0]
    reply(session, 0, Packet.STATUS_RES, b"H:elsewhere:7", b"0", b"0", b"0", b"0")
    assert not stranger.done and stranger._link is session.links[1]
    reply(session, 1, Packet.STATUS_RES, b"H:elsewhere:7", b"1", b"0", b"0", b"0")
    assert stranger.done and stranger.known and not stranger.running


def test_cancelled_task_ignores_late_replies() -> None:
    session, task, events = one_task()
    session.cancel(task)
    reply(session, 0, Packet.JOB_CREATED, b"H:x:7")
    reply(session, 0, Packet.WORK_COMPLETE, b"H:x:7", b"late")
    assert task.state is TaskState.CANCELLED and task.result is None and events == []
    later = job(session, unique="next")
    session.submit(later)
    reply(session, 0, Packet.JOB_CREATED, b"H:x:8")  # the FIFO still lines up
    assert later.handle == "H:x:8"


def test_callback_errors_are_kept_for_the_caller() -> None:
    session, _ = make()
    session.callbacks["created"] = lambda task: 1 / 0
    task = job(session)
    running(task, session=session)
    reply(session, 0, Packet.JOB_CREATED, b"H:x:9")
    reply(session, 0, Packet.WORK_COMPLETE, b"H:x:9", b"fine")
    assert task.result == b"fine"  # the session went on
    assert isinstance(session.take_callback_error(), ZeroDivisionError)
    assert session.take_callback_error() is None


def test_workload_callback_supplies_the_workload() -> None:
    session, _ = make()
    session.callbacks["workload"] = lambda task: task.context * 2
    task = session.new_job("fn", b"", "u", Priority.NORMAL, False, context=b"ab")
    running(task, session=session)
    assert sent(session)[0] == [(Packet.SUBMIT_JOB, [b"fn", b"u", b"abab"])]


def test_bad_names_and_corrupt_streams() -> None:
    session, _ = make()
    with pytest.raises(ValueError):
        session.new_job("f\x00n", b"", None, Priority.NORMAL, False)
    with pytest.raises(ValueError):
        session.new_job("", b"", None, Priority.NORMAL, False)
    generated = session.new_job("fn", b"", None, Priority.NORMAL, False)
    assert len(generated.unique) == 36  # a UUID, as libgearman makes
    session.submit(job(session))
    connect_all(session)
    assert not session.data_received(session.links[0], b"\x00BAD" + bytes(8))
