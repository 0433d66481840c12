"""A function's queues and the workers that can run it."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from gearman_gateway.scheduler.text import printable

if TYPE_CHECKING:
    from gearman_gateway.scheduler.job import Job
    from gearman_gateway.scheduler.worker import Worker


class Function:
    """Per-function state. Each priority queue is an OrderedDict used as an ordered set of jobs:
    O(1) append, pop from the front, removal from the middle (cancel, abandon) and move to the front
    (requeue), which a deque cannot all do.

    Jobs whose worker died (or timed out) while running them wait in ``died``, not in their priority's
    queue: behind every job that has not failed, whatever its priority or function (``Scheduler.grab``),
    so a job that kills its workers never blocks the others. They still count in their own priority
    (``queued``, hence `status`, `prioritystatus` and the snapshots)."""

    __slots__ = (
        "name",
        "queues",
        "future_counts",
        "died",
        "died_counts",
        "by_unique",
        "total",
        "running",
        "workers",
        "registrations",
        "sleepers",
        "noop_pending",
        "holders",
        "pending",
        "maxqueue",
        "submitted",
        "completed",
        "failed",
        "deaths",
    )

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.queues: tuple[OrderedDict[Job, None], ...] = (OrderedDict(), OrderedDict(), OrderedDict())
        self.future_counts = [0, 0, 0]  # epoch jobs not yet due, per priority
        self.died: OrderedDict[Job, None] = OrderedDict()  # jobs whose worker died, first died first
        self.died_counts = [0, 0, 0]  # jobs in ``died``, per their priority
        self.by_unique: dict[Any, Job] = {}
        self.total = 0  # jobs in memory: queued (due or not) and running
        self.running = 0
        # registrations of workers (a worker that sent CAN_DO twice counts twice, as in gearmand); the workers
        # themselves are not listed here: each worker's own table says what it registered
        self.registrations = 0
        self.sleepers: dict[Worker, None] = {}  # asleep and not yet sent a NOOP; oldest first
        self.noop_pending: set[Worker] = set()  # sent a NOOP, have not grabbed since
        self.holders: dict[Worker, None] = {}  # grabbing, held until a job comes or the turn ends
        self.pending = 0  # PENDING jobs in the queues: in their place, but not runnable before their commit
        self.maxqueue = [0, 0, 0]  # per priority; 0 = unlimited
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.deaths = 0  # jobs requeued because their worker died or timed out while running them

    def runnable(self) -> int:
        """Queued jobs a worker can run now (PENDING ones wait for their commit)."""
        q = self.queues
        return len(q[0]) + len(q[1]) + len(q[2]) + len(self.died) - self.pending

    def queued(self, priority: int) -> int:
        """Queued (not running) jobs of one priority, future epoch jobs included (gearmand counts them),
        background jobs whose commit is under way (``status`` counts them too) and jobs of this priority
        whose worker died (they wait in ``died``)."""
        return len(self.queues[priority]) + self.future_counts[priority] + self.died_counts[priority]

    def is_idle(self) -> bool:
        return not self.total and not self.registrations

    def __repr__(self) -> str:
        return f"<Function {printable(self.name)} total={self.total} running={self.running}>"
