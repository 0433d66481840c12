"""Admin text commands: exact reply bytes as in gearmand 1.1.20 (reference §3.2), without sockets.

The scheduler runs on ``twisted.internet.task.Clock``; connections are fakes that only ``describe()``.
"""

from __future__ import annotations

import json
import os

import pytest
from twisted.internet.task import Clock

from gearman_gateway.admin import Admin, AdminControls
from gearman_gateway.connections import ConnectionRegistry
from gearman_gateway.scheduler import JobListener, Priority, QueueFull, Scheduler
from gearman_gateway.version import SERVER_VERSION
from protocols.binary.codec import split_admin_words

OK = b"OK\r\n"


class FakeWaker:
    def __init__(self) -> None:
        self.wakes = 0

    def wake(self) -> None:
        self.wakes += 1


class Recorder(JobListener):
    """A JobListener that writes down what it hears."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []

    def job_created(self, job) -> None:
        self.events.append(("created", job.handle))

    def job_data(self, job, data) -> None:
        self.events.append(("data", job.handle))

    def job_warning(self, job, data) -> None:
        self.events.append(("warning", job.handle))

    def job_status(self, job, numerator, denominator) -> None:
        self.events.append(("status", job.handle))

    def job_complete(self, job, data) -> None:
        self.events.append(("complete", job.handle))

    def job_fail(self, job) -> None:
        self.events.append(("fail", job.handle))

    def job_exception(self, job, data) -> None:
        self.events.append(("exception", job.handle))


class FakeConnection:
    def __init__(self, fd: int, ip: str, client_id: bytes, names: list[bytes]) -> None:
        self._description = (fd, ip, client_id, names)

    def describe(self) -> tuple[int, str, bytes, list[bytes]]:
        return self._description


class Harness:
    def __init__(self, allow_remote_shutdown: bool = False) -> None:
        self.clock = Clock()
        self.scheduler = Scheduler(self.clock, handle_prefix=b"H:test")
        self.connections = ConnectionRegistry()
        self.shutdowns: list[bool] = []
        self.controls = AdminControls(
            shutdown=self.shutdowns.append,
            verbose_level=lambda: "INFO",
            allow_remote_shutdown=allow_remote_shutdown,
        )
        self.admin = Admin(self.scheduler, self.connections, self.controls)

    def __call__(self, line: bytes, local: bool = True) -> bytes:
        return self.admin.execute(split_admin_words(line), local)

    def worker(self, *names: bytes):
        worker = self.scheduler.add_worker(FakeWaker())
        for name in names:
            self.scheduler.can_do(worker, name)
        return worker


@pytest.fixture
def h() -> Harness:
    return Harness()


def list_lines(reply: bytes) -> list[bytes]:
    """The lines of a list reply, checking its shape: `\\n`-terminated lines, then `.\\n`."""
    assert reply.endswith(b".\n"), reply
    body = reply[:-2]
    assert body == b"" or body.endswith(b"\n"), reply
    return body.split(b"\n")[:-1]


# ---------------------------------------------------------------------------- status


def test_status_empty(h: Harness) -> None:
    assert h(b"status") == b".\n"


def test_status_counts_total_running_and_registrations(h: Harness) -> None:
    worker = h.worker(b"rev", b"rev")  # CAN_DO twice counts twice
    h.worker(b"slow")
    for i in range(3):
        h.scheduler.submit(b"rev", b"data%d" % i, background=True)
    assert h.scheduler.grab(worker) is not None
    assert h(b"create function idle") == OK
    assert sorted(list_lines(h(b"status"))) == [
        b"idle\t0\t0\t0",
        b"rev\t3\t1\t2",
        b"slow\t0\t0\t1",
    ]


def test_status_exact_bytes_for_one_function(h: Harness) -> None:
    h.scheduler.submit(b"rev", b"x", background=True)
    assert h(b"status") == b"rev\t1\t0\t0\n.\n"


# ---------------------------------------------------------------------------- prioritystatus


def test_prioritystatus_counts_queued_jobs_per_priority(h: Harness) -> None:
    s = h.scheduler
    s.submit(b"rev", b"h1", priority=Priority.HIGH, background=True)
    s.submit(b"rev", b"h2", priority=Priority.HIGH, background=True)
    for i in range(3):
        s.submit(b"rev", b"n%d" % i, priority=Priority.NORMAL, background=True)
    s.submit(b"rev", b"l1", priority=Priority.LOW, background=True)
    # a future epoch job is queued NORMAL (gearmand counts it)
    s.submit(b"rev", b"epoch", background=True, when=int(h.clock.seconds()) + 3600)
    worker = h.worker(b"rev")
    job = s.grab(worker)
    assert job is not None and job.priority == Priority.HIGH  # running: no longer counted
    h.worker(b"slow")
    assert sorted(list_lines(h(b"prioritystatus"))) == [
        b"rev\t1\t4\t1\t1",
        b"slow\t0\t0\t0\t1",
    ]


def test_prioritystatus_exact_bytes(h: Harness) -> None:
    h.scheduler.submit(b"pq", b"x", priority=Priority.LOW, background=True)
    assert h(b"prioritystatus") == b"pq\t0\t0\t1\t0\n.\n"
    assert h(b"PRIORITYSTATUS") == b"pq\t0\t0\t1\t0\n.\n"


# ---------------------------------------------------------------------------- workers


def test_workers_lists_every_connection(h: Harness) -> None:
    h.connections.admit(FakeConnection(27, "127.0.0.1", b"worker-1", [b"slow", b"rev", b"rev"]))
    h.connections.admit(FakeConnection(28, "127.0.0.1", b"-", []))
    h.connections.admit(FakeConnection(31, "10.1.2.3", b"", [b"fn"]))  # no id set: shown as "-"
    assert h(b"workers") == (b"27 127.0.0.1 worker-1 : slow rev rev\n28 127.0.0.1 - :\n31 10.1.2.3 - : fn\n.\n")


def test_workers_empty(h: Harness) -> None:
    assert h(b"workers") == b".\n"


# ---------------------------------------------------------------------------- show


def test_show_jobs(h: Harness) -> None:
    s = h.scheduler
    listener = Recorder()
    s.submit(b"rev", b"fg", unique=b"u1", listener=listener)  # H:test:1, foreground
    s.submit(b"rev", b"bg", unique=b"u2", background=True)  # H:test:2, background
    worker = h.worker(b"rev")
    job = s.grab(worker)
    assert job is not None and job.handle == b"H:test:1"
    s.remove_worker(worker)  # requeued: one retry
    assert sorted(list_lines(h(b"show jobs"))) == [
        b"H:test:1\t1\t0\t0",
        b"H:test:2\t0\t0\t1",
    ]


def test_show_jobs_marks_a_cancelled_running_job_ignored(h: Harness) -> None:
    s = h.scheduler
    s.submit(b"rev", b"bg", background=True)
    worker = h.worker(b"rev")
    assert s.grab(worker) is not None
    assert h(b"cancel job H:test:1") == OK
    assert h(b"show jobs") == b"H:test:1\t0\t1\t1\n.\n"


def test_show_jobs_empty(h: Harness) -> None:
    assert h(b"show jobs") == b".\n"


def test_show_unique_jobs(h: Harness) -> None:
    s = h.scheduler
    s.submit(b"rev", b"a", unique=b"u1", background=True)
    s.submit(b"rev", b"b", unique=b"", background=True)  # empty unique: an empty line
    s.submit(b"rev", b"c", unique=b"-", background=True)  # listed literally
    assert sorted(list_lines(h(b"show unique jobs"))) == [b"", b"-", b"u1"]


def test_show_unique_jobs_empty_unique_exact(h: Harness) -> None:
    h.scheduler.submit(b"rev", b"b", background=True)
    assert h(b"show unique jobs") == b"\n.\n"


def test_show_alone_and_unknown_show(h: Harness) -> None:
    assert h(b"show") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\r\n"
    assert h(b"show foo") == b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    assert h(b"show unique") == b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"
    assert h(b"show jobs now") == b"ERR UNKNOWN_SHOW_ARGUMENTS\r\n"


# ---------------------------------------------------------------------------- cancel job


def test_cancel_job_removes_the_job_and_fails_its_clients(h: Harness) -> None:
    s = h.scheduler
    listener = Recorder()
    s.submit(b"rev", b"x", listener=listener)
    s.submit(b"rev", b"y", background=True)
    assert h(b"status") == b"rev\t2\t0\t0\n.\n"
    assert h(b"cancel job H:test:1") == OK
    assert listener.events == [("created", b"H:test:1"), ("fail", b"H:test:1")]
    assert h(b"status") == b"rev\t1\t0\t0\n.\n"
    assert h(b"show jobs") == b"H:test:2\t0\t0\t1\n.\n"
    assert s.job(b"H:test:1") is None
    # the job is really gone: a worker gets the other one
    worker = h.worker(b"rev")
    job = s.grab(worker)
    assert job is not None and job.handle == b"H:test:2"


def test_cancel_job_of_a_future_epoch_job(h: Harness) -> None:
    h.scheduler.submit(b"ep", b"x", background=True, when=int(h.clock.seconds()) + 60)
    assert h(b"prioritystatus") == b"ep\t0\t1\t0\t0\n.\n"
    assert h(b"cancel job H:test:1") == OK
    assert h(b"prioritystatus") == b"ep\t0\t0\t0\t0\n.\n"
    assert h(b"status") == b"ep\t0\t0\t0\n.\n"
    h.clock.advance(120)
    assert h(b"show jobs") == b".\n"


def test_cancel_job_errors(h: Harness) -> None:
    h.scheduler.submit(b"rev", b"x", background=True)
    assert h(b"cancel job H:test:99") == b"ERR UNKNOWN_JOB\r\n"
    assert h(b"cancel job H:test:1 extra") == b"ERR UNKNOWN_ERROR\r\n"
    assert h(b"cancel job") == b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    assert h(b"cancel") == b"ERR UNKNOWN_COMMAND Unknown+server+commandcancel\r\n"
    assert h(b"status") == b"rev\t1\t0\t0\n.\n"  # none of these touched the job


def test_cancel_job_case_insensitive_words(h: Harness) -> None:
    h.scheduler.submit(b"rev", b"x", background=True)
    assert h(b"CANCEL JOB H:test:1") == OK
    assert h(b"status") == b"rev\t0\t0\t0\n.\n"


# ---------------------------------------------------------------------------- create function


def test_create_function_keeps_the_whole_name(h: Harness) -> None:
    # gearmand 1.1.20 drops the last character with LF endings; we do not.
    assert h(b"create function bar") == OK
    assert h(b"create function " + b"n" * 300) == OK
    assert sorted(list_lines(h(b"status"))) == [b"bar\t0\t0\t0", b"n" * 300 + b"\t0\t0\t0"]


def test_create_function_twice_is_ok(h: Harness) -> None:
    assert h(b"create function f") == OK
    assert h(b"create function f") == OK
    assert h(b"status") == b"f\t0\t0\t0\n.\n"


@pytest.mark.parametrize("line", [b"create", b"create x", b"create function", b"create function a b", b"create x y"])
def test_create_wrong_forms(h: Harness, line: bytes) -> None:
    assert h(line) == (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+create\r\n")


# ---------------------------------------------------------------------------- drop function


def test_drop_function(h: Harness) -> None:
    assert h(b"create function gone") == OK
    assert h(b"drop function gone") == OK
    assert h(b"status") == b".\n"
    assert h(b"drop function gone") == b"ERR function not found\r\n"


def test_drop_function_name_is_case_insensitive(h: Harness) -> None:
    assert h(b"create function Mixed") == OK
    assert h(b"DROP FUNCTION mIXED") == OK
    assert h(b"status") == b".\n"


def test_drop_function_refused_while_workers_are_registered(h: Harness) -> None:
    worker = h.worker(b"busy")
    refused = b"ERR there are still connected workers or executing clients\r\n"
    assert h(b"drop function busy") == refused
    h.scheduler.cant_do(worker, b"busy")
    assert h(b"drop function busy") == OK


def test_drop_function_removes_queued_jobs_and_fails_their_clients(h: Harness) -> None:
    s = h.scheduler
    first, second = Recorder(), Recorder()
    s.submit(b"q", b"a", unique=b"same", listener=first)
    s.submit(b"q", b"a", unique=b"same", listener=second)  # coalesced
    s.submit(b"q", b"b", background=True)
    s.submit(b"q", b"later", background=True, when=int(h.clock.seconds()) + 60)  # epoch, not yet due
    s.submit(b"other", b"c", background=True)
    assert h(b"drop function q") == OK
    assert first.events == [("created", b"H:test:1"), ("fail", b"H:test:1")]
    assert second.events == [("created", b"H:test:1"), ("fail", b"H:test:1")]
    assert h(b"status") == b"other\t1\t0\t0\n.\n"
    assert h(b"show jobs") == b"H:test:4\t0\t0\t1\n.\n"
    assert s.job(b"H:test:1") is None and s.job(b"H:test:2") is None and s.job(b"H:test:3") is None
    assert s.listener_count() == 0
    h.clock.advance(120)  # the epoch timer finds nothing left to run
    assert h(b"status") == b"other\t1\t0\t0\n.\n"


@pytest.mark.parametrize("line", [b"drop", b"drop function", b"drop fn x", b"drop function a b"])
def test_drop_wrong_forms(h: Harness, line: bytes) -> None:
    assert h(line) == (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+drop\r\n")


# ---------------------------------------------------------------------------- maxqueue


def test_maxqueue_without_arguments(h: Harness) -> None:
    assert h(b"maxqueue") == (
        b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments+was+sent+to+this+command+maxqueue\r\n"
    )


def test_maxqueue_one_limit_for_all_priorities(h: Harness) -> None:
    h(b"create function mq")
    assert h(b"maxqueue mq 2") == OK
    assert h.scheduler.functions[b"mq"].maxqueue == [2, 2, 2]
    h.scheduler.submit(b"mq", b"1", background=True)
    h.scheduler.submit(b"mq", b"2", priority=Priority.HIGH, background=True)
    for priority in Priority:
        with pytest.raises(QueueFull) as caught:
            h.scheduler.submit(b"mq", b"3", priority=priority, background=True)
        assert caught.value.code == "QUEUE_ERROR" and caught.value.text == "Job queue is full"
    assert h(b"status") == b"mq\t2\t0\t0\n.\n"


def test_maxqueue_function_alone_resets_to_unlimited(h: Harness) -> None:
    h(b"create function mq")
    assert h(b"maxqueue mq 1") == OK
    h.scheduler.submit(b"mq", b"1", background=True)
    with pytest.raises(QueueFull):
        h.scheduler.submit(b"mq", b"2", background=True)
    assert h(b"maxqueue mq") == OK
    assert h.scheduler.functions[b"mq"].maxqueue == [0, 0, 0]
    for i in range(5):
        h.scheduler.submit(b"mq", b"more%d" % i, background=True)


def test_maxqueue_negative_means_unlimited(h: Harness) -> None:
    h(b"create function mq")
    assert h(b"maxqueue mq -5") == OK
    assert h.scheduler.functions[b"mq"].maxqueue == [0, 0, 0]


def test_maxqueue_per_priority(h: Harness) -> None:
    s = h.scheduler
    h(b"create function mq")
    assert h(b"maxqueue mq 1 2 3") == OK
    assert s.functions[b"mq"].maxqueue == [1, 2, 3]
    s.submit(b"mq", b"n1", background=True)  # total 1
    with pytest.raises(QueueFull):
        s.submit(b"mq", b"h1", priority=Priority.HIGH, background=True)  # HIGH limit 1 counts all jobs
    s.submit(b"mq", b"n2", background=True)  # total 2
    with pytest.raises(QueueFull):
        s.submit(b"mq", b"n3", background=True)
    s.submit(b"mq", b"l1", priority=Priority.LOW, background=True)  # total 3
    with pytest.raises(QueueFull):
        s.submit(b"mq", b"l2", priority=Priority.LOW, background=True)


def test_maxqueue_two_numbers_leave_low_unlimited(h: Harness) -> None:
    h(b"create function mq")
    assert h(b"maxqueue mq 4 5") == OK
    assert h.scheduler.functions[b"mq"].maxqueue == [4, 5, 0]


def test_full_queue_still_accepts_a_coalesced_submit(h: Harness) -> None:
    s = h.scheduler
    h(b"create function mq")
    assert h(b"MAXQUEUE mq 1") == OK
    job = s.submit(b"mq", b"x", unique=b"same", background=True)
    assert s.submit(b"mq", b"y", unique=b"same", background=True) is job


# ---------------------------------------------------------------------------- one-line info commands


def test_version(h: Harness) -> None:
    reply = h(b"version")
    assert reply.startswith(b"OK ") and reply.endswith(b"\n") and not reply.endswith(b"\r\n")
    assert reply == b"OK " + SERVER_VERSION.encode() + b"\n"
    assert reply.startswith(b"OK 1.1.20")  # clients compare it (CAN_DO_TIMEOUT units)


def test_verbose(h: Harness) -> None:
    assert h(b"verbose") == b"OK INFO\n"


def test_getpid(h: Harness) -> None:
    assert h(b"getpid") == b"OK %d\n" % os.getpid()


def test_unknown_command(h: Harness) -> None:
    assert h(b"gladiator") == b"ERR UNKNOWN_COMMAND Unknown+server+commandgladiator\r\n"
    assert h(b"foo bar baz") == b"ERR UNKNOWN_COMMAND Unknown+server+commandfoo\r\n"


def test_empty_line(h: Harness) -> None:
    assert h(b"") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    assert h(b"    ") == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"
    assert h.admin.execute([], True) == b"ERR UNKNOWN_COMMAND Unknown+server+command\r\n"


def test_tab_is_not_a_separator(h: Harness) -> None:
    assert h(b"show\tjobs") == b"ERR UNKNOWN_COMMAND Unknown+server+commandshow\tjobs\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"STATUS", b".\n"),
        (b"Status", b".\n"),
        (b"WORKERS", b".\n"),
        (b"SHOW JOBS", b".\n"),
        (b"Show Unique Jobs", b".\n"),
        (b"GETPID", b"OK %d\n" % os.getpid()),
        (b"VeRbOsE", b"OK INFO\n"),
        (b"CREATE FUNCTION x", OK),
    ],
)
def test_command_words_are_case_insensitive(h: Harness, line: bytes, expected: bytes) -> None:
    assert h(line) == expected


def test_version_case_insensitive(h: Harness) -> None:
    assert h(b"VERSION") == h(b"version")


# ---------------------------------------------------------------------------- shutdown


def test_shutdown_from_loopback(h: Harness) -> None:
    assert h(b"shutdown", local=True) == OK
    assert h(b"shutdown graceful", local=True) == OK
    assert h(b"SHUTDOWN GRACEFUL", local=True) == OK
    assert h.shutdowns == [False, True, True]


def test_shutdown_from_remote_is_refused(h: Harness) -> None:
    for line in (b"shutdown", b"shutdown graceful"):
        reply = h(line, local=False)
        assert reply.startswith(b"ERR ") and reply.endswith(b"\r\n")
        assert reply.count(b"\n") == 1
    assert h.shutdowns == []


def test_shutdown_from_remote_when_allowed() -> None:
    h = Harness(allow_remote_shutdown=True)
    assert h(b"shutdown", local=False) == OK
    assert h(b"shutdown graceful", local=False) == OK
    assert h.shutdowns == [False, True]


def test_shutdown_with_bad_arguments(h: Harness) -> None:
    reply = h(b"shutdown now", local=True)
    assert reply.startswith(b"ERR INVALID_ARGUMENTS") and reply.endswith(b"\r\n")
    reply = h(b"shutdown graceful now", local=True)
    assert reply.startswith(b"ERR INVALID_ARGUMENTS")
    assert h.shutdowns == []


# ---------------------------------------------------------------------------- snapshot


def test_snapshot_structure(h: Harness) -> None:
    s = h.scheduler
    s.submit(b"rev", b"1", priority=Priority.HIGH, background=True)
    s.submit(b"rev", b"2", background=True)
    s.submit(b"rev", b"3", background=True)
    s.submit(b"rev", b"4", priority=Priority.LOW, background=True)
    worker = h.worker(b"rev", b"rev")
    done = s.grab(worker)
    assert done is not None
    s.work_complete(worker, done.handle, b"result")
    failed = s.grab(worker)
    assert failed is not None
    s.work_fail(worker, failed.handle)
    running = s.grab(worker)
    assert running is not None
    h.connections.admit(FakeConnection(7, "127.0.0.1", b"w-1", [b"rev", b"rev"]))
    h.connections.admit(FakeConnection(8, "::1", b"-", []))

    snap = h.admin.snapshot()
    assert snap == {
        "version": SERVER_VERSION,
        "functions": [
            {
                "name": "rev",
                "total": 2,
                "running": 1,
                "queued": {"high": 0, "normal": 0, "low": 1},
                "workers": 2,
                "submitted": 4,
                "completed": 1,
                "failed": 1,
                "worker_deaths": 0,
            }
        ],
        "connections": [
            {"fd": 7, "ip": "127.0.0.1", "id": "w-1", "functions": ["rev", "rev"]},
            {"fd": 8, "ip": "::1", "id": "-", "functions": []},
        ],
        "store": {"backend": "memory", "state": "up", "durable": False},
        "dead_letters": [],
        "poison_jobs": [],
    }
    json.dumps(snap)  # plain values only, ready for the HTTP JSON endpoints


def test_snapshot_empty(h: Harness) -> None:
    assert h.admin.snapshot() == {
        "version": SERVER_VERSION,
        "functions": [],
        "connections": [],
        "store": {"backend": "memory", "state": "up", "durable": False},
        "dead_letters": [],
        "poison_jobs": [],
    }


def test_dead_letter_commands(h: Harness) -> None:
    from gearman_gateway.scheduler.retry import RetryPolicies, RetryPolicy

    s = h.admin.scheduler
    s.retry_policies = RetryPolicies(default=RetryPolicy(dead_letter=True))
    job = s.submit(b"df", b"x", background=True)
    worker = s.add_worker(type("W", (), {"wake": lambda self: None})())
    s.can_do(worker, b"df")
    s.grab(worker)
    s.work_exception(worker, job.handle, b"bad")
    assert h.admin.execute([b"show", b"dead", b"jobs"], True) == job.handle + b"\tdf\t1\tWORK_EXCEPTION: bad\n.\n"
    assert h.admin.execute([b"requeue", b"dead", b"nope"], True) == b"ERR UNKNOWN_JOB\r\n"
    assert h.admin.execute([b"requeue", b"dead", job.handle], True) == b"OK 1\r\n"
    assert s.job(job.handle) is job
    s.grab(worker)
    s.work_fail(worker, job.handle)
    assert h.admin.execute([b"delete", b"dead", b"all"], True) == b"OK 1\r\n"
    assert h.admin.execute([b"show", b"dead", b"jobs"], True) == b".\n"
    assert h.admin.execute([b"requeue"], True).startswith(b"ERR INVALID_ARGUMENTS")
    assert h.admin.execute([b"show", b"store"], True) == b"backend\tmemory\nstate\tup\ndurable\tno\n.\n"
