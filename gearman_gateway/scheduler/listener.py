"""What the scheduler needs from the things it talks to: clients waiting on jobs, workers, a clock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gearman_gateway.scheduler.job import Job


class JobListener(Protocol):
    """A submitter: a binary client connection, an HTTP request, a memcached waiter, an XMPP chat.

    ``job_created`` is called once per submit, when the job is acknowledged (at once, or for a durable
    background job after its store commit). The other calls reach only foreground submitters attached
    to the job; several listeners on one coalesced job all get every event.
    """

    def job_created(self, job: Job) -> None: ...
    def job_data(self, job: Job, data: bytes) -> None: ...
    def job_warning(self, job: Job, data: bytes) -> None: ...
    def job_status(self, job: Job, numerator: int, denominator: int) -> None: ...
    def job_complete(self, job: Job, data: bytes) -> None: ...
    def job_fail(self, job: Job) -> None: ...
    def job_exception(self, job: Job, data: bytes) -> None: ...


class Waker(Protocol):
    """The worker side of a connection: the scheduler calls ``wake`` to send it a NOOP."""

    def wake(self) -> None: ...


class DelayedCall(Protocol):
    def cancel(self) -> None: ...
    def active(self) -> bool: ...


class Clock(Protocol):
    """Time and timers; Twisted's reactor (IReactorTime) is one, ``twisted.internet.task.Clock`` another."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, callable: Any, *args: Any) -> DelayedCall: ...  # noqa: N802
