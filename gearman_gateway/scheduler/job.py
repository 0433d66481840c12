"""A job and the small enums around it."""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any

from gearman_gateway.scheduler.text import printable

if TYPE_CHECKING:
    from gearman_gateway.scheduler.function import Function
    from gearman_gateway.scheduler.listener import JobListener
    from gearman_gateway.scheduler.worker import Worker


class Priority(IntEnum):
    """gearmand's numbering, which persistent stores also keep."""

    HIGH = 0
    NORMAL = 1
    LOW = 2


class JobState(IntEnum):
    QUEUED = 0  # waiting in a priority queue, or in the epoch heap until its time
    RUNNING = 1  # held by a worker
    DONE = 2  # finished, failed or dropped; nothing should refer to it any more
    PENDING = 3  # a background job whose store commit is under way: in its queue but not runnable, not acknowledged
    DEAD = 4  # failed for good and kept in the dead-letter list for an operator


_QUEUED = JobState.QUEUED  # a module global: an enum member's class lookup costs more, once per job


class Job:
    """One unit of work. ``key`` is its coalescing key within its function (None: never coalesced).

    Frontends get jobs in ``JobListener`` events and grab answers, and read from them only what a packet
    carries: ``handle``, ``function.name``, ``unique``, ``data``, ``reducer``, ``background``. Everything
    else is the scheduler's, and is shown through ``snapshots.JobSnapshot``."""

    __slots__ = (
        "handle",
        "function",
        "unique",
        "data",
        "priority",
        "background",
        "when",
        "reducer",
        "key",
        "seq",
        "state",
        "listeners",
        "worker",
        "numerator",
        "denominator",
        "retries",
        "timer",
        "cancelled",
        "stored",
        "acks",
        "failures",
        "deaths",
        "reason",
        # set only while the scheduler has job observers (scheduler/observing.py): the clock at submit
        # and at the latest assignment to a worker (0.0: never ran); unset, they cost the job path nothing
        "submitted_at",
        "started_at",
    )

    def __init__(
        self,
        handle: bytes,
        function: Function,
        unique: bytes,
        data: bytes,
        priority: int,
        background: bool,
        when: int,
        reducer: bytes | None,
        key: Any,
        seq: int,
    ) -> None:
        self.handle = handle
        self.function = function
        self.unique = unique
        self.data = data
        self.priority = priority
        self.background = background
        self.when = when
        self.reducer = reducer
        self.key = key
        self.seq = seq
        self.state = _QUEUED
        self.listeners: list[JobListener] | tuple[()] = ()  # a list once a foreground client attaches
        self.worker: Worker | None = None
        self.numerator = 0
        self.denominator = 0
        self.retries = 0
        self.timer: Any = None
        self.cancelled = False
        self.stored = False  # its row is committed in the durable store (deleted when the job ends)
        self.acks: list[JobListener] | None = None  # submitters waiting for the store commit
        self.failures = 0  # WORK_FAIL/WORK_EXCEPTION answers so far (the retry policy counts them)
        self.deaths = 0  # workers that died or timed out while running it (a poison job kills them all)
        self.reason = ""  # why a dead-letter job died

    @property
    def job_id(self) -> int:
        """The durable store's key: unique across restarts (replay continues the sequence)."""
        return self.seq

    @property
    def function_name(self) -> bytes:
        return self.function.name

    @property
    def running(self) -> bool:
        return self.state == JobState.RUNNING

    def __repr__(self) -> str:
        return f"<Job {printable(self.handle)} {printable(self.function.name)} {JobState(self.state).name}>"
