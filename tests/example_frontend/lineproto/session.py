"""The line protocol, without I/O: each line in is a command, replies go out through ``write``.

    SUBMIT <function> <payload>   ->   RESULT <data>  |  FAILED  |  EXCEPTION <data>  |  ERROR <why>

Replies come in the order jobs finish. Each submit is its own listener: the scheduler tells it the job's
events (gearman_gateway/scheduler/listener.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gearman_gateway.scheduler import JobListener


class LineSession:
    def __init__(self, scheduler: Any, write: Callable[[bytes], None]) -> None:
        self.scheduler = scheduler
        self.write = write
        self.waiting: list[Reply] = []

    def line(self, line: bytes) -> None:
        command, _, rest = line.rstrip(b"\r\n").partition(b" ")
        function, _, payload = rest.partition(b" ")
        if command.upper() != b"SUBMIT" or not function:
            self.write(b"ERROR expected: SUBMIT <function> <payload>\n")
            return
        reply = Reply(self)
        try:
            self.scheduler.submit(function, payload, listener=reply)
        except Exception as error:  # the scheduler's refusals (queue full, too large) name themselves
            self.write(b"ERROR %s\n" % str(error).encode())
            return
        self.waiting.append(reply)

    def closed(self) -> None:
        """The peer went away: its jobs are not waited for any more."""
        for reply in self.waiting:
            self.scheduler.detach(reply)
        self.waiting.clear()
        self.write = lambda data: None


class Reply(JobListener):
    """One submitted job's listener: the end of the job becomes one line (the base ignores the other events)."""

    def __init__(self, session: LineSession) -> None:
        self.session = session

    def _done(self, line: bytes) -> None:
        if self in self.session.waiting:
            self.session.waiting.remove(self)
        self.session.write(line)

    def job_complete(self, job: Any, data: bytes) -> None:
        self._done(b"RESULT %s\n" % data)

    def job_fail(self, job: Any) -> None:
        self._done(b"FAILED\n")

    def job_exception(self, job: Any, data: bytes) -> None:
        self._done(b"EXCEPTION %s\n" % data)

    def job_rejected(self, job: Any, error: Exception) -> None:
        self._done(b"ERROR %s\n" % str(error).encode())
