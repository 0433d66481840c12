"""The worker's sans-IO session, driven with plain bytes: registration, grab/sleep/wake, results, servers."""

from __future__ import annotations

import pytest

from gearman_gateway.clientlib.errors import WORK_FAIL, WorkFail
from gearman_gateway.clientlib.links import Address, Backoff, LinkState
from gearman_gateway.clientlib.worker_session import Job, Phase, WorkerSession
from protocols.binary.codec import Decoder, encode
from protocols.binary.packets import REQ, Packet

P = Packet


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def make(servers: int = 1, client_id: bytes | None = None) -> tuple[WorkerSession, Clock]:
    session = WorkerSession(client_id=client_id, backoff=Backoff(initial=0.5, maximum=2.0, jitter=0))
    clock = session.clock = Clock()  # type: ignore[assignment]
    for i in range(servers):
        session.add_server(Address("127.0.0.1", 5000 + i))
    return session, clock


def sent(session: WorkerSession) -> dict[int, list[tuple[int, list[bytes]]]]:
    return {link.index: Decoder(expect=REQ).receive_data(data) for link, data in session.outputs()}


def types(session: WorkerSession) -> dict[int, list[int]]:
    return {i: [p for p, _ in packets] for i, packets in sent(session).items()}


def connect_all(session: WorkerSession) -> None:
    for link in session.links_to_connect():
        session.connection_made(link)


def serving(servers: int = 1) -> tuple[WorkerSession, Clock]:
    """A session serving "fn", connected to every server, its registration and first grab already read."""
    session, clock = make(servers)
    session.add_function("fn", lambda job: b"")
    connect_all(session)
    sent(session)
    return session, clock


def feed(session: WorkerSession, index: int, ptype: int, *args: bytes) -> None:
    assert session.data_received(session.links[index], encode(ptype, *args))


def assign(session: WorkerSession, index: int, handle: bytes = b"H:1", data: bytes = b"work") -> Job:
    feed(session, index, P.JOB_ASSIGN_UNIQ, handle, b"fn", b"uniq", data)
    job = session.take_job()
    assert job is not None
    return job


def test_registration_then_one_grab() -> None:
    session, _ = make(client_id=b"w1")
    session.add_function("fn", lambda job: b"")
    session.add_function("slow", lambda job: b"", timeout=2.5)
    connect_all(session)
    assert sent(session) == {
        0: [
            (P.SET_CLIENT_ID, [b"w1"]),
            (P.CAN_DO, [b"fn"]),
            (P.CAN_DO_TIMEOUT, [b"slow", b"2500"]),
            (P.GRAB_JOB_UNIQ, []),
        ]
    }


def test_no_job_means_pre_sleep_and_silence_until_noop() -> None:
    session, _ = serving()
    feed(session, 0, P.NO_JOB)
    assert types(session) == {0: [P.PRE_SLEEP]}
    feed(session, 0, P.NO_JOB)  # a stray NO_JOB does not start a poll loop
    assert types(session) == {}
    assert session.links[0].phase is Phase.SLEEPING and session.next_wakeup() is None
    feed(session, 0, P.NOOP)
    assert types(session) == {0: [P.GRAB_JOB_UNIQ]}
    feed(session, 0, P.NOOP)  # a second NOOP while grabbing asks nothing more
    assert types(session) == {}


def test_assigned_job_and_its_methods() -> None:
    session, _ = make()
    session.add_function("fn", lambda job: b"")
    flushes = []
    session.flush_hook = lambda: flushes.append(1)
    connect_all(session)
    sent(session)
    job = assign(session, 0, b"H:7", b"\x00data")
    assert (job.handle, job.function_name, job.unique, job.workload) == ("H:7", "fn", "uniq", b"\x00data")
    assert session.take_job() is None  # handed out once
    job.send_data(b"d")
    job.send_warning("w")
    job.send_status(3, 10)
    assert len(flushes) == 3  # reported while the callback still runs
    assert sent(session) == {
        0: [(P.WORK_DATA, [b"H:7", b"d"]), (P.WORK_WARNING, [b"H:7", b"w"]), (P.WORK_STATUS, [b"H:7", b"3", b"10"])]
    }
    session.finish(job, "résumé")
    assert sent(session) == {0: [(P.WORK_COMPLETE, [b"H:7", "résumé".encode()]), (P.GRAB_JOB_UNIQ, [])]}
    with pytest.raises(RuntimeError):
        job.send_data(b"too late")


@pytest.mark.parametrize(
    ("outcome", "packet"),
    [
        (b"bytes", (P.WORK_COMPLETE, [b"H:1", b"bytes"])),
        (None, (P.WORK_COMPLETE, [b"H:1", b""])),
        (WORK_FAIL, (P.WORK_FAIL, [b"H:1"])),
        (42, (P.WORK_EXCEPTION, [b"H:1", b"TypeError: a worker callback must return bytes or str, not int"])),
    ],
)
def test_return_values(outcome: object, packet: tuple[int, list[bytes]]) -> None:
    session, _ = serving()
    session.finish(assign(session, 0), outcome)
    assert sent(session)[0][0] == packet


@pytest.mark.parametrize(
    ("error", "packet"),
    [
        (WorkFail("no"), (P.WORK_FAIL, [b"H:1"])),
        (ValueError("bad input"), (P.WORK_EXCEPTION, [b"H:1", b"ValueError: bad input"])),
    ],
)
def test_raised_errors(error: Exception, packet: tuple[int, list[bytes]]) -> None:
    session, _ = serving()
    session.fail(assign(session, 0), error)
    assert sent(session)[0][0] == packet


def test_a_job_finished_by_the_callback_ignores_its_return_value() -> None:
    session, _ = serving()
    job = assign(session, 0)
    job.send_complete(b"early")
    session.finish(job, b"ignored")
    assert sent(session) == {0: [(P.WORK_COMPLETE, [b"H:1", b"early"]), (P.GRAB_JOB_UNIQ, [])]}


def test_one_grab_at_a_time_across_servers_and_turns_after_a_job() -> None:
    session, _ = make(3)
    session.add_function("fn", lambda job: b"")
    connect_all(session)
    assert types(session) == {0: [P.CAN_DO, P.GRAB_JOB_UNIQ], 1: [P.CAN_DO], 2: [P.CAN_DO]}
    feed(session, 0, P.NO_JOB)
    assert types(session) == {0: [P.PRE_SLEEP], 1: [P.GRAB_JOB_UNIQ]}
    job = assign(session, 1)
    feed(session, 0, P.NOOP)  # server 0 has work now, but we hold a job: no second grab
    assert types(session) == {}
    session.finish(job, b"ok")
    # next: the other awake servers first (2 never asked, 0 woken), then 1 again
    assert types(session) == {1: [P.WORK_COMPLETE], 2: [P.GRAB_JOB_UNIQ]}
    feed(session, 2, P.NO_JOB)
    assert types(session) == {2: [P.PRE_SLEEP], 0: [P.GRAB_JOB_UNIQ]}
    feed(session, 0, P.NO_JOB)
    assert types(session) == {0: [P.PRE_SLEEP], 1: [P.GRAB_JOB_UNIQ]}
    feed(session, 1, P.NO_JOB)
    assert types(session) == {1: [P.PRE_SLEEP]}
    assert {link.phase for link in session.links} == {Phase.SLEEPING}


def test_unrequested_assignment_is_ignored() -> None:
    session, _ = serving()
    feed(session, 0, P.NO_JOB)
    feed(session, 0, P.JOB_ASSIGN_UNIQ, b"H:9", b"fn", b"", b"x")
    assert session.take_job() is None


def test_assign_all_and_plain_assign() -> None:
    session, _ = serving()
    feed(session, 0, P.JOB_ASSIGN_ALL, b"H:2", b"fn", b"u", b"reducer", b"data")
    job = session.take_job()
    assert job is not None and (job.unique, job.workload) == ("u", b"data")
    session.finish(job, b"")
    feed(session, 0, P.JOB_ASSIGN, b"H:3", b"fn", b"data2")
    job = session.take_job()
    assert job is not None and (job.unique, job.workload) == ("", b"data2")


def test_add_function_while_sleeping_registers_and_grabs_again() -> None:
    session, _ = serving()
    feed(session, 0, P.NO_JOB)
    sent(session)
    session.add_function("other", lambda job: b"")
    assert types(session) == {0: [P.CAN_DO, P.GRAB_JOB_UNIQ]}
    session.remove_function("other")
    assert sent(session) == {0: [(P.CANT_DO, [b"other"])]}


def test_lost_server_mid_job_drops_results_and_reconnects_with_backoff() -> None:
    session, clock = serving(2)
    job = assign(session, 0)
    session.connection_lost(session.links[0], ConnectionResetError())
    assert job.connection_lost and session.links[0].state is LinkState.DOWN
    assert session.next_wakeup() == clock.now + 0.5
    assert session.links_to_connect() == []  # resting
    job.send_status(1, 2)  # nowhere to go: dropped, no error for the callback
    session.finish(job, b"lost")
    assert types(session) == {1: [P.GRAB_JOB_UNIQ]}  # the other server is asked at once
    clock.now += 0.5
    [link] = session.links_to_connect()
    session.connection_made(link)
    assert types(session) == {0: [P.CAN_DO]}  # registered again; one grab is already out on server 1


def test_backoff_doubles_up_to_the_maximum_and_resets_on_connect() -> None:
    session, clock = make()
    session.add_function("fn", lambda job: b"")
    link = session.links[0]
    delays = []
    for _ in range(5):
        [due] = session.links_to_connect()
        session.connect_failed(due, ConnectionRefusedError())
        delays.append(link.retry_at - clock.now)
        clock.now = link.retry_at
    assert delays == [0.5, 1.0, 2.0, 2.0, 2.0]
    [due] = session.links_to_connect()
    session.connection_made(due)
    assert link.failures == 0


def test_ready_job_of_a_lost_server_is_never_handed_out() -> None:
    session, _ = serving()
    feed(session, 0, P.JOB_ASSIGN_UNIQ, b"H:1", b"fn", b"", b"x")
    session.connection_lost(session.links[0], None)
    assert session.take_job() is None and session.current is None
