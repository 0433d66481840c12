"""The limits of docs/security.md#limits, driven without sockets: the scheduler's memory bound on jobs, the
per-address connection cap and accept rate, the rate-limited log lines, and their settings."""

from __future__ import annotations

import logging

import pytest
from twisted.internet.task import Clock

from gearman_gateway.admission import PeerLimits
from gearman_gateway.config import ConfigError, parse_args
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.ratelog import RateLimitedLog
from gearman_gateway.scheduler import ObservedScheduler, QueueFull, Scheduler
from gearman_gateway.scheduler.bounded import BoundedScheduler
from gearman_gateway.scheduler.listener import JobObserver
from gearman_gateway.stores.base import StoredJob
from tests import accel_paths
from tests.unit.test_scheduler import Listener, new_worker


def bounded(max_jobs: int = 0, max_bytes: int = 0) -> Scheduler:
    return Scheduler(Clock(), handle_prefix=b"H:lim", max_jobs=max_jobs, max_bytes=max_bytes)


def test_max_jobs_refuses_new_submits_and_keeps_the_queued_ones() -> None:
    sched = bounded(max_jobs=3)
    jobs = [sched.submit(b"f", b"x", background=True) for _ in range(2)]
    jobs.append(sched.submit(b"g", b"y", listener=Listener()))  # across functions, foreground too
    with pytest.raises(QueueFull, match=r"3 jobs queued \(limit 3\)") as refused:
        sched.submit(b"h", b"z", background=True)
    assert refused.value.code == "QUEUE_ERROR"
    assert len(sched.jobs_by_handle) == 3 and sched.budget.refused_jobs == 1  # nothing dropped
    worker, _ = new_worker(sched, b"f")
    job = sched.grab(worker)
    sched.work_complete(worker, job.handle, b"")
    assert sched.submit(b"h", b"z", background=True).function.name == b"h"  # room again


def test_a_join_by_unique_is_never_refused() -> None:
    sched = bounded(max_jobs=1)
    first = sched.submit(b"f", b"x", unique=b"u", background=True)
    assert sched.submit(b"f", b"x", unique=b"u", listener=Listener()) is first
    assert sched.submit(b"f", b"x", b"u", 1, True) is first  # as the frontends pass it: positionally
    assert sched.budget.refused_jobs == 0 and sched.queued_bytes() == 1


def test_max_bytes_counts_payloads_across_functions_and_frees_them() -> None:
    sched = bounded(max_bytes=10)
    sched.submit(b"f", b"12345", background=True)
    sched.submit(b"g", b"1234", background=True)
    assert sched.queued_bytes() == 9
    with pytest.raises(QueueFull, match="9 bytes of jobs queued, 2 more would pass the limit of 10"):
        sched.submit(b"f", b"12", background=True)
    assert sched.budget.refused_bytes == 1 and len(sched.jobs_by_handle) == 2
    sched.submit(b"f", b"1", background=True)  # what fits still goes in
    worker, _ = new_worker(sched, b"f")
    while (job := sched.grab(worker)) is not None:
        sched.work_complete(worker, job.handle, b"")
    assert sched.queued_bytes() == 4
    sched.cancel(next(iter(sched.jobs_by_handle)))
    assert sched.queued_bytes() == 0


def test_replayed_jobs_count_but_are_never_refused() -> None:
    sched = bounded(max_jobs=1, max_bytes=4)
    rows = [StoredJob(n, b"", b"f", b"", 1, b"payload") for n in (1, 2)]
    assert sched.replay(rows) == 2
    assert len(sched.jobs_by_handle) == 2 and sched.queued_bytes() == 14
    with pytest.raises(QueueFull):
        sched.submit(b"f", b"", background=True)


def test_unlimited_by_default() -> None:
    sched = bounded()
    for _ in range(1000):
        sched.submit(b"f", b"x" * 1000, background=True)
    assert type(sched) is Scheduler  # the unbounded job path counts nothing ...
    assert sched.queued_bytes() == 1_000_000  # ... and the gauge sums the payloads when asked


def test_a_bounded_scheduler_stays_bounded_while_observed() -> None:
    sched = bounded(max_jobs=1)
    observer = JobObserverStub()
    sched.add_observer(observer)
    sched.submit(b"f", b"x", background=True)
    with pytest.raises(QueueFull):
        sched.submit(b"f", b"y", background=True)
    sched.remove_observer(observer)
    with pytest.raises(QueueFull):
        sched.submit(b"f", b"y", background=True)
    assert sched.budget.refused_jobs == 2


class JobObserverStub(JobObserver):
    def __init__(self) -> None:
        self.ends: list[object] = []

    def jobs_finished(self, ended: list[object]) -> None:  # type: ignore[override]
        self.ends.extend(ended)


def test_a_scheduler_made_observed_under_a_bound_keeps_both() -> None:
    """As the server makes it with monitoring on and a bound set: one class of its own over BoundedScheduler."""
    sched = ObservedScheduler(Clock(), handle_prefix=b"H:lim", max_jobs=1)
    assert isinstance(sched, BoundedScheduler)
    observer = JobObserverStub()
    sched.add_observer(observer)
    worker, _ = new_worker(sched, b"f")
    job = sched.submit(b"f", b"x", background=True)
    with pytest.raises(QueueFull):
        sched.submit(b"f", b"y", background=True)
    assert sched.grab(worker) is job
    sched.work_complete(worker, job.handle, b"done")
    sched.submit(b"f", b"z", background=True)  # room again: the finished job left the bound
    sched._observing.flush()
    assert [end[0] for end in observer.ends] == [job]
    assert sched.budget.refused_jobs == 1


@pytest.mark.parametrize("path", accel_paths.PATHS)
def test_an_observed_bounded_scheduler_gives_back_the_bytes_of_every_ended_job(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--max-queued-bytes with monitoring on: the payload of a job that failed, raised, completed or was
    cancelled is given back (it was not, for failed ones: the observers' ring dropped the payload before
    the bound counted it), and the ring keeps no payload, a dead letter's excepted."""
    from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy

    accel_paths.choose(path, monkeypatch)
    policies = RetryPolicies(functions={b"dl": RetryPolicy(dead_letter=True)})
    sched = ObservedScheduler(Clock(), handle_prefix=b"H:lim", max_bytes=100, retry_policies=policies)
    observer = JobObserverStub()
    sched.add_observer(observer)
    worker, _ = new_worker(sched, b"f")
    for end in ("fail", "exception", "complete", "cancel"):
        job = sched.submit(b"f", b"x" * 60)
        assert sched.queued_bytes() == 60
        if end == "cancel":
            sched.cancel(job.handle)
        else:
            assert sched.grab(worker) is job
            if end == "fail":
                sched.work_fail(worker, job.handle)
            elif end == "exception":
                sched.work_exception(worker, job.handle, b"boom")
            else:
                sched.work_complete(worker, job.handle, b"done")
        assert sched.queued_bytes() == 0, end
        assert job.data == b""
    dead_worker, _ = new_worker(sched, b"dl")
    dead = sched.submit(b"dl", b"y" * 60, background=True)
    sched.grab(dead_worker)
    sched.work_fail(dead_worker, dead.handle)
    assert sched.queued_bytes() == 0 and dead.data == b"y" * 60  # kept for a requeue, counted again then
    assert sched.requeue_dead(dead.handle) and sched.queued_bytes() == 60
    sched._observing.flush()
    assert [end[1] for end in observer.ends] == ["fail", "exception", "complete", "cancelled", "dead_letter"]


def test_a_refusal_is_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RateLimitedLog(logging.getLogger("test.limits"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.limits"):
        assert log.warning("submit", "refused %s", "a")
        assert not log.warning("submit", "refused %s", "b")
        assert not log.warning("submit", "refused %s", "c")
        assert log.warning("other", "closed %s", "d")  # each kind has its own interval
        now[0] = 10.5
        assert log.warning("submit", "refused %s", "e")
    assert caplog.messages == ["refused a", "closed d", "refused e (2 more like it in the last 10s not logged)"]


def test_accept_rate_is_a_token_bucket_per_address() -> None:
    now = [100.0]
    limits = PeerLimits(rate=2, burst=3, clock=lambda: now[0])
    assert [limits.admit("10.0.0.1") for _ in range(4)] == [None, None, None, "accept_rate_per_ip"]
    assert limits.admit("10.0.0.2") is None  # another address has its own bucket
    now[0] += 0.5  # one token back
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.1") == "accept_rate_per_ip"
    assert limits.refused["accept_rate_per_ip"] == 2


def test_accept_rate_buckets_that_filled_up_are_pruned() -> None:
    now = [0.0]
    limits = PeerLimits(rate=1, burst=1, clock=lambda: now[0])
    for n in range(5000):  # all empty: none can go (the next look is at twice the size)
        limits.admit(f"10.0.{n // 256}.{n % 256}")
    assert len(limits._buckets) == 5000
    now[0] += 5  # they have filled up: the same as no bucket
    for n in range(3500):
        limits.admit(f"10.1.{n // 256}.{n % 256}")
    assert len(limits._buckets) == 3500  # only the new ones are left


def test_max_connections_per_address_counts_open_ones() -> None:
    limits = PeerLimits(max_per_peer=2)
    assert [limits.admit("a"), limits.admit("a"), limits.admit("a"), limits.admit("b")] == [
        None,
        None,
        "max_connections_per_ip",
        None,
    ]
    limits.release("a")
    assert limits.admit("a") is None
    for _ in range(3):
        limits.release("a")
    limits.release("b")
    assert limits.open == {}


class Peer:
    label = "test connection"

    def __init__(self, peer: str) -> None:
        self.peer = peer


def test_registry_counts_each_limit_and_releases_only_admitted_connections() -> None:
    registry = ConnectionRegistry(limit=3, peers=PeerLimits(max_per_peer=2))
    a1, a2, a3, b1, c1 = Peer("a"), Peer("a"), Peer("a"), Peer("b"), Peer("c")
    assert [registry.admit(c) for c in (a1, a2, a3, b1, c1)] == [True, True, False, True, False]
    registry.remove(a3)  # never admitted: must not free a slot of "a"
    assert registry.peers.open == {"a": 2, "b": 1}
    registry.remove(a1)
    assert registry.peers.open == {"a": 1, "b": 1}
    assert registry.refusals() == {
        "max_connections": 1,
        "max_connections_per_ip": 1,
        "accept_rate_per_ip": 0,
        "first_byte_timeout": 0,
        "max_output_buffer": 0,
    }


def test_settings_from_flags_and_yaml(tmp_path) -> None:
    argv = ["--config-file", "", "--max-queued-jobs", "5", "--max-queued-bytes", "1000"]
    argv += ["--max-connections-per-ip", "7", "--accept-rate-per-ip", "2.5", "--accept-burst-per-ip", "9"]
    argv += ["--first-byte-timeout", "3"]
    s = parse_args(argv)
    assert (s.max_queued_jobs, s.max_queued_bytes, s.max_connections_per_ip) == (5, 1000, 7)
    assert (s.accept_rate_per_ip, s.accept_burst_per_ip, s.first_byte_timeout) == (2.5, 9, 3.0)
    path = tmp_path / "g.yaml"
    path.write_text(
        "limits:\n  max_queued_jobs: 6\n  max_queued_bytes: 2000\n  max_connections_per_ip: 8\n"
        "  accept_rate_per_ip: 1\n  accept_burst_per_ip: 4\n  first_byte_timeout: 0.5\n"
    )
    s = parse_args(["--config-file", "", "--config", str(path)])
    assert (s.max_queued_jobs, s.max_queued_bytes, s.max_connections_per_ip) == (6, 2000, 8)
    assert (s.accept_rate_per_ip, s.accept_burst_per_ip, s.first_byte_timeout) == (1, 4, 0.5)
    defaults = parse_args(["--config-file", ""])
    assert (defaults.max_queued_jobs, defaults.max_queued_bytes, defaults.first_byte_timeout) == (0, 0, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-queued-jobs", "-1"], "--max-queued-jobs"),
        (["--accept-rate-per-ip", "-2"], "--accept-rate-per-ip must be >= 0"),
        (["--first-byte-timeout", "-1"], "--first-byte-timeout must be >= 0"),
    ],
)
def test_bad_limits_are_refused_by_name(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_args(["--config-file", "", *argv])


def test_bytes_received_is_the_kernels_count_of_what_the_peer_sent() -> None:
    import socket

    from protocols.first_byte import bytes_received

    class Transport:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def getHandle(self) -> socket.socket:  # noqa: N802 - Twisted's name
            return self.sock

    listener = socket.create_server(("127.0.0.1", 0))
    with listener, socket.create_connection(listener.getsockname()) as peer:
        accepted, _ = listener.accept()
        with accepted:
            assert bytes_received(Transport(accepted)) == 0
            peer.sendall(b"hello")
            assert accepted.recv(2, socket.MSG_PEEK) == b"he"  # it has come in (peeked at: left unread)
            assert bytes_received(Transport(accepted)) == 5  # counted whether or not it was read
